"""IndRNN (Li et al. 2018, "Independently Recurrent Neural Network"): each unit recurs only on
itself, through one scalar weight.

    h_t = relu(W x_t + b + u * h_{t-1}),    u: [H], elementwise

Deviation: the paper bounds |u| by clipping it after every optimiser step. A module cannot reach
the optimiser, so the step uses clip(u, -1, 1) with the gradient of u itself (straight-through):
the forward pass never sees |u| > 1, where a ReLU recurrence can grow without bound over a long
episode, and a gradient that points back inside still moves u, as projected gradient descent
would. u starts uniform on [recurrent_weight_min, 1] ([0, 1] by default, as the paper's), W as
flax's Dense, b at zero.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.sequence_models.base import HoistedCell


class IndRNNCell(HoistedCell):
    """An IndRNN layer as a flax cell, run over time by ``RNN``, which computes ``project`` for
    the whole sequence before the time loop."""

    recurrent_weight_min: float = 0.0

    def setup(self) -> None:
        low = self.recurrent_weight_min

        def uniform_to_one(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
            return low + (1.0 - low) * jax.random.uniform(key, shape)

        self.input_projection = nn.Dense(self.features)
        self.recurrent_weight = self.param("recurrent_weight", uniform_to_one, (self.features,))

    def project(self, inputs: jax.Array) -> jax.Array:
        """W x + b: [..., F] -> [..., H]. Position-wise, so it can run over a whole sequence."""
        return self.input_projection(inputs)

    def recur(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step from an already projected input."""
        u = self.recurrent_weight
        u = u + jax.lax.stop_gradient(jnp.clip(u, -1.0, 1.0) - u)  # straight-through clip
        new_carry = jax.nn.relu(projected + u * carry)
        return new_carry, new_carry
