"""SelfAttention: causal multi-head attention over a sliding window that never crosses a reset.

Each query sees itself and the ``context_length`` steps before it, as long as they belong to its
episode. The carry is a cache of the last ``context_length`` keys and values with a validity
mask, so T one-step calls see exactly the keys one call over T steps sees.

``position`` says how the order of the steps enters:

- ``"alibi"`` (Press et al. 2022): a bias -slope_h * distance on each logit.
- ``"rope"`` (Su et al. 2021, RoFormer): queries and keys are rotated, pair of channels
  (2i, 2i + 1) by the angle m * base^(-2i / head_dim) at position m, so q_m . k_n depends on
  m - n only. The logits are those of RoPE with positions counted from the start of the episode
  (or from any origin: only the distance matters). We rotate by the position in the window this
  call sees (the cache, then the new steps), not by a counter: the cache holds unrotated keys, the
  rotation tables are float64 constants cast once, and a one-step call and a T-step call see the
  same distances, so they agree to float32 rounding, at any episode length, with no counter in
  the carry that could lose precision.
- ``"none"`` (NoPE, Kazemnejad et al. 2023): no positions; the causal window alone orders steps.

Queries are processed in blocks of min(T, context_length); a block only gathers the keys it can
see, so time and memory grow as T * context_length, not T^2.
"""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from memorax.networks.sequence_models.base import Carry, SequenceModel

PositionScheme = Literal["alibi", "rope", "none"]
POSITION_SCHEMES: tuple[str, ...] = PositionScheme.__args__
ROPE_BASE = 10_000.0  # Su et al.'s base of the rotation frequencies


def rope_rotate(x: jax.Array, positions: np.ndarray) -> jax.Array:
    """Rotates channel pairs (2i, 2i + 1) of x [B, N, H, D] by positions [N] * ROPE_BASE^(-2i/D)."""
    head_dim = x.shape[-1]
    frequencies = ROPE_BASE ** (-np.arange(0, head_dim, 2) / head_dim)  # [D / 2]
    angles = positions.astype(np.float64)[:, None, None] * frequencies  # [N, 1, D / 2]
    cos, sin = np.cos(angles).astype(x.dtype), np.sin(angles).astype(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return rotated.reshape(x.shape)


class SelfAttention(SequenceModel):
    """x: [B, T, F] -> y: [B, T, F] (projected back to the input width, so Residual works).

    The carry is (keys, values: [B, context_length, num_heads, head_dim], valid: [B,
    context_length] float, 1 for cached steps of the current episode); with RoPE the keys are
    cached unrotated."""

    num_heads: int
    head_dim: int
    context_length: int = 64
    position: PositionScheme = "alibi"

    def __post_init__(self) -> None:
        if self.position not in POSITION_SCHEMES:
            raise ValueError(
                f"SelfAttention position {self.position!r} is unknown; choose one of "
                f"{', '.join(POSITION_SCHEMES)}"
            )
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(
                f"RoPE rotates pairs of channels: head_dim ({self.head_dim}) must be even"
            )
        super().__post_init__()

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        shape = (batch_size, self.context_length, self.num_heads, self.head_dim)
        return jnp.zeros(shape), jnp.zeros(shape), jnp.zeros((batch_size, self.context_length))

    @nn.nowrap
    def slopes(self) -> np.ndarray:
        """ALiBi slopes, a geometric sequence over heads: [H]."""
        return 2.0 ** (-8.0 * np.arange(1, self.num_heads + 1) / self.num_heads)

    @nn.compact
    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        batch, length, features = x.shape
        context = self.context_length
        cached_keys, cached_values, cached_valid = carry
        projected = nn.DenseGeneral((3, self.num_heads, self.head_dim), name="qkv")(x)
        query, key, value = (projected[:, :, i] for i in range(3))  # [B, T, H, D] each

        keys = jnp.concatenate([cached_keys, key], axis=1)  # [B, L + T, H, D]
        values = jnp.concatenate([cached_values, value], axis=1)
        # Episode ids: the cache's current episode is 0, its stale entries -1; a reset starts
        # the next id. A query sees a key only with the same id.
        episode = jnp.concatenate(
            [
                jnp.where(cached_valid > 0.5, 0, -1).astype(jnp.int32),
                jnp.cumsum(reset, axis=1, dtype=jnp.int32),
            ],
            axis=1,
        )  # [B, L + T]
        attended_keys = keys
        if self.position == "rope":
            # Positions in the concatenation: the query at step t sits at L + t.
            attended_keys = rope_rotate(keys, np.arange(context + length))
            query = rope_rotate(query, context + np.arange(length))

        block = min(length, context)
        num_blocks = -(-length // block)
        padding = num_blocks * block - length

        def pad(array: jax.Array) -> jax.Array:
            return jnp.pad(array, [(0, 0), (0, padding)] + [(0, 0)] * (array.ndim - 2))

        padded_keys, values, episode, query = (
            pad(attended_keys),
            pad(values),
            pad(episode),
            pad(query),
        )
        # Block c holds the queries at c * block + i; the keys it may see lie at c * block + j in
        # the concatenation with the cache, j < block + L.
        index = np.arange(num_blocks)[:, None] * block + np.arange(block + context)  # [C, K]
        block_keys, block_values = padded_keys[:, index], values[:, index]
        key_episode = episode[:, index]
        query = query.reshape(batch, num_blocks, block, self.num_heads, self.head_dim)
        query_episode = episode[:, context:].reshape(batch, num_blocks, block)
        distance = context + np.arange(block)[:, None] - np.arange(block + context)  # [Q, K]
        visible = ((distance >= 0) & (distance <= context)) & (
            query_episode[..., :, None] == key_episode[..., None, :]
        )  # [B, C, Q, K]

        logits = jnp.einsum("bcqhd,bckhd->bchqk", query, block_keys) / np.sqrt(self.head_dim)
        if self.position == "alibi":
            logits = logits - (self.slopes()[:, None, None] * distance).astype(logits.dtype)
        logits = jnp.where(visible[:, :, None], logits, -1e30)  # every query sees itself
        weights = jax.nn.softmax(logits, axis=-1)  # [B, C, H, Q, K]
        attended = jnp.einsum("bchqk,bckhd->bcqhd", weights, block_values)
        attended = attended.reshape(batch, num_blocks * block, -1)[:, :length]  # [B, T, H * D]
        y = nn.Dense(features, name="out")(attended)

        last = slice(length, length + context)  # the newest L steps of the unpadded concat
        valid = episode[:, last] == episode[:, length + context - 1 : length + context]
        return (keys[:, last], values[:, last], valid.astype(x.dtype)), y
