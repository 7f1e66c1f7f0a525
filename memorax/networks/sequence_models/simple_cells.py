"""ElmanCell and MGUCell: flax's ``nn.SimpleCell`` and ``nn.MGUCell`` with a hoistable input
projection.

flax's two cells project the input inside every step of the time loop. These compute the same
functions from the same parameters (same names, shapes and initialisers, so one key initialises
both to the same values and a checkpoint of either loads into the other) and expose the input half
as ``project``, so ``RNN`` computes it for the whole sequence at once, before the loop, as it does
for ``FusedGRUCell``. Only the recurrent matmuls stay in the loop, where recurrent PPO spends its
time on a CPU (benchmarks/results/rnn_layout_cpu.md, before_after_ppo_rnn_elman_cpu.md and
before_after_ppo_rnn_mgu_cpu.md).
"""

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.sequence_models.base import HoistedCell

# flax's default for the kernels that read the input.
INPUT_KERNEL_INIT = nn.initializers.lecun_normal()
RECURRENT_KERNEL_INIT = nn.initializers.orthogonal()


class ElmanCell(HoistedCell):
    """Elman's simple recurrent cell as ``nn.SimpleCell`` computes it (tanh, no residual):

    h' = tanh(W_i x + b_i + W_h h)
    """

    def setup(self) -> None:
        self.i = nn.Dense(self.features, kernel_init=INPUT_KERNEL_INIT)
        self.h = nn.Dense(self.features, use_bias=False, kernel_init=RECURRENT_KERNEL_INIT)

    def project(self, inputs: jax.Array) -> jax.Array:
        """W_i x + b_i: [..., F] -> [..., H]. Position-wise, so it can run over a whole sequence."""
        return self.i(inputs)

    def recur(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step from an already projected input."""
        new_carry = jnp.tanh(projected + self.h(carry))
        return new_carry, new_carry


class MGUCell(HoistedCell):
    """The minimal gated unit (Zhou et al. 2016) as ``nn.MGUCell`` computes it (with its reset
    gate, flax's default):

    f = sigmoid(W_if x + b_if + W_hf h),  n = tanh(W_in x + b_in + f * (W_hn h + b_hn))
    h' = (1 - f) * n + f * h

    The forget gate's input bias b_if starts at ``forget_gate_bias``, one as flax's does, the other
    biases at zero: the fraction of the carry a step keeps starts near sigmoid(forget_gate_bias).
    """

    forget_gate_bias: float = 1.0

    def setup(self) -> None:
        dense_i = partial(nn.Dense, self.features, kernel_init=INPUT_KERNEL_INIT)
        dense_h = partial(nn.Dense, self.features, kernel_init=RECURRENT_KERNEL_INIT)
        # flax names the input kernels "if" and "in", Python keywords: set by name.
        setattr(self, "if", dense_i(bias_init=nn.initializers.constant(self.forget_gate_bias)))
        self.hf = dense_h(use_bias=False)
        self.hn = dense_h()
        setattr(self, "in", dense_i())

    def project(self, inputs: jax.Array) -> jax.Array:
        """[W_if x + b_if, W_in x + b_in]: [..., F] -> [..., 2H]. Position-wise, so it can run
        over a whole sequence."""
        return jnp.concatenate([getattr(self, "if")(inputs), getattr(self, "in")(inputs)], -1)

    def recur(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step from an already projected input."""
        input_f, input_n = jnp.split(projected, 2, axis=-1)
        forget = jax.nn.sigmoid(input_f + self.hf(carry))
        candidate = jnp.tanh(input_n + forget * self.hn(carry))
        new_carry = (1.0 - forget) * candidate + forget * carry
        return new_carry, new_carry
