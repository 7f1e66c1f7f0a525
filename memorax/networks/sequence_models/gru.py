"""FusedGRUCell: flax's GRU equations with fused gate matmuls and a hoistable input projection.

``nn.GRUCell`` runs six small matmuls per step. This cell computes the same function (same gate
equations, same initialisation per gate) with one input and one recurrent matmul, and exposes the
input half as ``project`` so ``RNN`` computes it for the whole sequence at once, outside the time
loop. That is where recurrent PPO spends its time on a CPU: the backward pass through the scan.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.sequence_models.base import HoistedCell


def per_gate(init: nn.initializers.Initializer, gates: int) -> nn.initializers.Initializer:
    """Initialise a [in, gates * H] kernel as ``gates`` independent [in, H] blocks."""

    def init_fn(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        rows, cols = shape
        keys = jax.random.split(key, gates)
        return jnp.concatenate([init(k, (rows, cols // gates), dtype) for k in keys], axis=1)

    return init_fn


def one_gate_bias(gates: int, gate: int, value: float) -> nn.initializers.Initializer:
    """Initialise a [gates * H] bias at zero but for block ``gate``, which starts at ``value``."""

    def init_fn(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        size = shape[0] // gates
        return jnp.zeros(shape, dtype).at[gate * size : (gate + 1) * size].set(value)

    return init_fn


class FusedGRUCell(HoistedCell):
    """GRU with flax's equations:

    r = sigmoid(W_ir x + b_ir + W_hr h),  z = sigmoid(W_iz x + b_iz + W_hz h)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h

    Biases start at zero, as flax's do, but for b_iz at ``update_gate_bias``: the fraction of the
    carry a step keeps starts near sigmoid(update_gate_bias), a half at flax's 0.
    """

    update_gate_bias: float = 0.0

    def setup(self) -> None:
        self.input_projection = nn.Dense(
            3 * self.features,
            kernel_init=per_gate(nn.initializers.lecun_normal(), 3),
            bias_init=one_gate_bias(3, 1, self.update_gate_bias),
        )
        self.recurrent_projection = nn.Dense(
            3 * self.features,
            use_bias=False,
            kernel_init=per_gate(nn.initializers.orthogonal(), 3),
        )
        self.recurrent_bias = self.param("recurrent_bias", nn.initializers.zeros, (self.features,))

    def project(self, inputs: jax.Array) -> jax.Array:
        """The input half of every gate: [..., F] -> [..., 3H]. Position-wise, so it can run over
        a whole sequence before the recurrence."""
        return self.input_projection(inputs)

    def recur(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step from an already projected input."""
        input_r, input_z, input_n = jnp.split(projected, 3, axis=-1)
        hidden_r, hidden_z, hidden_n = jnp.split(self.recurrent_projection(carry), 3, axis=-1)
        reset_gate = jax.nn.sigmoid(input_r + hidden_r)
        update_gate = jax.nn.sigmoid(input_z + hidden_z)
        candidate = jnp.tanh(input_n + reset_gate * (hidden_n + self.recurrent_bias))
        new_carry = (1.0 - update_gate) * candidate + update_gate * carry
        return new_carry, new_carry
