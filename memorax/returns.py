"""Return and advantage estimators shared by the algorithms, over time-major arrays [T, ...]."""

import jax
import jax.numpy as jnp


def generalized_advantage_estimate(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """GAE (Schulman et al. 2016) with gymnax 1.0 episode ends. All inputs are [T, ...].

    ``next_values[t]`` is the value of the observation that followed step t: the next step's
    observation inside an episode, the final (pre-reset) observation where the episode was
    truncated. Bootstrapping stops only at ``terminated``; the advantage recursion stops at any
    episode end, so nothing flows back from the next episode. Returns (advantages, targets).
    """
    bootstrap = 1.0 - terminated.astype(rewards.dtype)
    continues = 1.0 - jnp.logical_or(terminated, truncated).astype(rewards.dtype)
    deltas = rewards + gamma * bootstrap * next_values - values

    def backward(advantage, step):
        delta, cont = step
        advantage = delta + gamma * gae_lambda * cont * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, continues), reverse=True
    )
    return advantages, advantages + values
