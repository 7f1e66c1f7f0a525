"""FrameStack: the last k inputs side by side, the cheap memory baseline that POPGym reports.

    e_t = W_e x_t + b_e                                   (each input projected to ``features``)
    s_t = [e_{t-k+1}, ..., e_{t-1}, e_t]                  (k * features, oldest first)
    y_t = MLP(s_t)                                        (``num_layers`` Dense + ReLU layers)

An e from before the first step of t's episode is zero (not the projection of a zero input, which
would be b_e). The carry is the k - 1 previous projected inputs, [B, k - 1, features], zero where
they precede an episode start. Each input is projected before it is stacked because the carry's
size must be known before the input width is (``initialize_carry`` gets only the batch size);
since the MLP's first layer is dense, y_t is still an MLP of the concatenation of the raw inputs,
its first layer factored through the shared W_e. ``num_layers`` is the depth of that MLP, so the
memory is exactly the last k steps at any depth, and ``framestack`` differs from the ``mlp``
torso only by its window. No scan: the window is k shifted slices of one array.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.mlp import MLP
from memorax.networks.sequence_models.base import Carry, SequenceModel


class FrameStack(SequenceModel):
    """x: [B, T, F] -> y: [B, T, features] from the last ``num_frames`` inputs (default 4)."""

    features: int
    num_frames: int = 4
    num_layers: int = 1

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.num_frames - 1, self.features))

    @nn.compact
    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        if self.num_frames < 1:
            raise ValueError(f"FrameStack needs num_frames >= 1, got {self.num_frames}")
        lags = self.num_frames - 1
        length = x.shape[1]
        frames = nn.Dense(self.features, name="embed")(x)  # [B, T, H]
        history = jnp.concatenate([carry, frames], axis=1)  # [B, lags + T, H]; step s at lags + s
        steps = jnp.arange(length)
        # The first step of each step's episode; -num_frames (before every carried frame) where
        # no reset happened in this call, as the carry was masked when it was made.
        episode_start = jax.lax.cummax(jnp.where(reset, steps, -self.num_frames), axis=1)  # [B, T]

        window = []
        for lag in range(lags, -1, -1):  # oldest first
            shifted = history[:, lags - lag : lags - lag + length]  # e_{t - lag}: [B, T, H]
            valid = (steps - lag >= episode_start)[..., None]
            window.append(jnp.where(valid, shifted, 0.0))
        y = MLP(features=(self.features,) * self.num_layers)(jnp.concatenate(window, axis=-1))

        kept_steps = jnp.arange(length - lags, length)  # the steps of the next carry: [lags]
        kept = (kept_steps >= episode_start[:, -1:])[..., None]  # [B, lags, 1]
        return jnp.where(kept, history[:, length:], 0.0), y
