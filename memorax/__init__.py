"""memorax: reinforcement learning with memory in JAX."""
