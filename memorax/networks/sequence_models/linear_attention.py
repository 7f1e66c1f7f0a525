"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"; POPGym's FART), multi-head,
with an optional learned decay per head.

    q_t, k_t, v_t = W_q x_t, W_k x_t, W_v x_t                  one [D] each per head, no bias
    S_t = lambda S_{t-1} + phi(k_t) v_t^T,    z_t = lambda z_{t-1} + phi(k_t)
    y_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + eps),    phi(u) = elu(u) + 1 > 0
    out_t = W_o [y_t of every head]

lambda = 1 is the paper's attention (every past key weighs the same); ``decay=True`` learns
lambda = sigmoid(p) in (0, 1) per head, which discounts old keys in the numerator and the
normaliser alike, so y_t stays a weighted mean of the episode's values. The initial p gives
horizons 1 / (1 - lambda) spread geometrically from 16 to 1024 steps over the heads.

The time axis runs in the chunked form of ``mamba2.chunked_ssd``: the heads fold into the batch,
the state is [S^T; z^T] ([D + 1, D]: a value vector with a constant 1 appended carries z), and a
chunk of L steps is an L x L masked matrix product plus the state entering it, passed from chunk
to chunk by a scan over T / L chunks; a reset zeroes every decay across it. Chosen by a
measurement on 2 CPU cores at batch 32, T = 2048, width 128 (4 heads of 32), loss and gradient
together: chunks of 64 took 1.0 s with 0.9 GB of temporaries (32: the same time; 128: 1.3 s), a
resettable associative scan over the per-step [D + 1, D] states 3.3 s with 4.1 GB, since that scan
writes a whole state per step at each of its levels while the chunked form writes one per chunk
and does most of its work as matrix products, which a GPU runs best.

Where this differs from the paper and POPGym: the output projection W_o (the library's residual
blocks need the input width back; POPGym's single head has a linear map after it too), several
heads, eps = 1e-6 (POPGym: 1e-5), and the decay, which neither has. The carry holds S and z, so
one call over T steps equals T one-step calls.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from memorax.networks.sequence_models.base import Carry, SequenceModel
from memorax.networks.sequence_models.mamba2 import chunked_ssd

EPSILON = 1e-6


def phi(u: jax.Array) -> jax.Array:
    """The feature map elu(u) + 1: positive, so every normaliser phi(q)^T z is."""
    return nn.elu(u) + 1.0


class LinearAttention(SequenceModel):
    """x: [B, T, F] -> y: [B, T, F] (projected back to the input width, so Residual works).

    The carry is (S: [B, num_heads, head_dim, head_dim], z: [B, num_heads, head_dim]), key
    dimension first in S."""

    num_heads: int
    head_dim: int
    decay: bool = False
    chunk_size: int = 64
    min_horizon: float = 16.0
    max_horizon: float = 1024.0

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        shape = (batch_size, self.num_heads, self.head_dim)
        return jnp.zeros(shape + (self.head_dim,)), jnp.zeros(shape)

    def log_decay(self) -> jax.Array:
        """log lambda per head: [H] (0 without decay)."""
        if not self.decay:
            return jnp.zeros((self.num_heads,))

        def init(key: jax.Array, shape: tuple[int]) -> jax.Array:
            horizon = np.geomspace(self.min_horizon, self.max_horizon, shape[0])
            return jnp.asarray(np.log(horizon - 1.0))  # sigmoid(p) = 1 - 1 / horizon

        return jax.nn.log_sigmoid(self.param("decay_logit", init, (self.num_heads,)))

    @nn.compact
    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size ({self.chunk_size}) must be at least 1")
        batch, length, features = x.shape
        heads, dim = self.num_heads, self.head_dim
        projected = nn.DenseGeneral((3, heads, dim), use_bias=False, name="qkv")(x)
        query, key, value = (projected[:, :, i] for i in range(3))  # [B, T, H, D] each

        def fold(a: jax.Array) -> jax.Array:  # [B, T, H, ...] -> [B * H, T, ...]
            return jnp.swapaxes(a, 1, 2).reshape((batch * heads, length) + a.shape[3:])

        # One head of chunked_ssd per (row, head): value 1 appended so that z rides along.
        values = jnp.concatenate([value, jnp.ones_like(value[..., :1])], axis=-1)  # [B, T, H, D+1]
        log_decay = jnp.broadcast_to(self.log_decay(), (batch, length, heads))
        state_s, state_z = carry
        state = jnp.concatenate([state_s, state_z[..., None]], axis=-1)  # [B, H, D, D + 1]
        state = jnp.swapaxes(state, -1, -2).reshape(batch * heads, 1, dim + 1, dim)
        out, state = chunked_ssd(
            fold(values)[:, :, None],
            fold(log_decay)[..., None],
            fold(phi(key)),
            fold(phi(query)),
            jnp.repeat(reset, heads, axis=0),
            state,
            self.chunk_size,
        )  # [B * H, T, 1, D + 1], [B * H, 1, D + 1, D]
        out = jnp.swapaxes(out.reshape(batch, heads, length, dim + 1), 1, 2)  # [B, T, H, D + 1]
        y = out[..., :dim] / (out[..., dim:] + EPSILON)  # [B, T, H, D]
        state = jnp.swapaxes(state.reshape(batch, heads, dim + 1, dim), -1, -2)
        new_carry = state[..., :dim], state[..., dim]
        return new_carry, nn.Dense(features, name="out")(y.reshape(batch, length, heads * dim))
