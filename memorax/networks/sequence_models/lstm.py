"""FusedLSTMCell: flax's LSTM equations with a hoistable input projection.

``nn.OptimizedLSTMCell`` fuses its gates into one input and one recurrent matmul, but keeps the
eight per-gate kernels as parameters (concatenated again at every step) and runs both matmuls
inside the time loop. This cell computes the same function (same gate equations, same
initialisation per gate, the bias on the recurrent side as flax has it), stores the fused kernels,
and exposes the input half as ``project``, so ``RNN`` computes it for the whole sequence at once,
outside the loop, as it does for ``FusedGRUCell``. At ppo_rnn's shapes that is the faster layout
on a CPU; at batch 32 and T = 1024 the loop is (benchmarks/results/rnn_layout_cpu.md).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.sequence_models.base import HoistedCell
from memorax.networks.sequence_models.gru import one_gate_bias, per_gate

LSTMCarry = tuple[jax.Array, jax.Array]  # (c, h), flax's order


class FusedLSTMCell(HoistedCell):
    """LSTM with flax's equations:

    i = sigmoid(W_ii x + W_hi h + b_hi),  f = sigmoid(W_if x + W_hf h + b_hf)
    g = tanh(W_ig x + W_hg h + b_hg),     o = sigmoid(W_io x + W_ho h + b_ho)
    c' = f * c + i * g,  h' = o * tanh(c')

    Biases start at zero, as flax's do, but for b_hf at ``forget_gate_bias``: the fraction of c a
    step keeps starts near sigmoid(forget_gate_bias), a half at flax's 0 (Keras starts it at 1).
    """

    forget_gate_bias: float = 0.0

    def setup(self) -> None:
        self.input_projection = nn.Dense(
            4 * self.features,
            use_bias=False,
            kernel_init=per_gate(nn.initializers.lecun_normal(), 4),
        )
        self.recurrent_projection = nn.Dense(
            4 * self.features,
            kernel_init=per_gate(nn.initializers.orthogonal(), 4),
            bias_init=one_gate_bias(4, 1, self.forget_gate_bias),
        )

    def project(self, inputs: jax.Array) -> jax.Array:
        """The input half of every gate: [..., F] -> [..., 4H] in (i, f, g, o) order.
        Position-wise, so it can run over a whole sequence before the recurrence."""
        return self.input_projection(inputs)

    def recur(self, carry: LSTMCarry, projected: jax.Array) -> tuple[LSTMCarry, jax.Array]:
        """One step from an already projected input."""
        c, h = carry
        gates = projected + self.recurrent_projection(h)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        new_c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
        return (new_c, new_h), new_h

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> LSTMCarry:
        zeros = jnp.zeros(input_shape[:-1] + (self.features,))
        return zeros, zeros
