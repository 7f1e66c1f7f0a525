"""sLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", Section 2.2): an LSTM with
exponential gates, a normaliser state and recurrent connections that mix memory within a head.
Equation numbers are those of arXiv:2405.04517v2.

    c_t = f_t c_{t-1} + i_t z_t                         (8)
    n_t = f_t n_{t-1} + i_t                             (9)
    h_t = o_t * c_t / n_t                               (10)
    z_t = tanh(z~_t),   i_t = exp(i~_t),   f_t = sigmoid(f~_t) or exp(f~_t),   o_t = sigmoid(o~_t)
    g~_t = W_g x_t + R_g h_{t-1} + b_g   for g in z, i, f, o                  (11-14)

R is block-diagonal: head h's units see only head h's units of h_{t-1} (the paper's heads, with
memory mixing inside a head and none across), as one [d, 4 d] matrix per head. Stabilised as
(15-17): the carry holds c'_t = exp(-m_t) c_t, n'_t = exp(-m_t) n_t, m_t and h_t, with

    m_t = max(log f_t + m_{t-1}, log i_t),   i'_t = exp(log i_t - m_t),
    f'_t = exp(log f_t + m_{t-1} - m_t),     c'_t = f'_t c'_{t-1} + i'_t z_t  (n' alike),

and h_t = o_t c'_t / n'_t is (10) exactly. The empty memory (the initial carry, and the carry
after a reset) has c' = n' = h = 0 and m = EMPTY_STABILISER, a finite minus infinity, so an
episode's first step sets m = log i and n' = 1; from then on either i' = 1 or f' = 1, so n' >= 1
and h never divides by an underflowed normaliser (the paper's code takes m = log i on a first
step too). Sequential: a ``lax.scan`` over the cell, with W x + b for the whole sequence before
it, as ``RNN`` does for ``IndRNNCell``.

Deviations from the paper: the layer is the cell alone, stacked with the library's residual
pre-norm blocks; the paper's block (causal convolution before i and f, GroupNorm, gated
feed-forward up- and down-projection) is left out. Forget gate biases start spread evenly over
3 ... 6 across units, as the mLSTM's across heads (the paper's code offers a power-law spread);
R starts LeCun-normal per head.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.blocks.blocks import PreNorm, Residual, Stack
from memorax.networks.sequence_models.base import Carry, SequenceModel, reset_carry
from memorax.networks.sequence_models.memoroid import MemoroidTorso
from memorax.networks.sequence_models.mlstm import EMPTY_STABILISER, ForgetGate, log_forget_gate


def slstm_step(
    recurrent_kernel: jax.Array, forget_gate: ForgetGate, carry: Carry, projected: jax.Array
) -> Carry:
    """One stabilised sLSTM step. recurrent_kernel: [H, d, 4, d]; carry: (c', n', m, h), each
    [B, H * d]; projected: W x_t + b, [B, 4, H * d] in the order z, i, f, o."""
    cell, normaliser, stabiliser, hidden = carry
    heads, head_dim = recurrent_kernel.shape[:2]
    by_head = hidden.reshape(hidden.shape[0], heads, head_dim)
    recurrent = jnp.einsum("bhd,hdge->bghe", by_head, recurrent_kernel)  # [B, 4, H, d]
    z, log_input, forget, output = jnp.unstack(
        projected + recurrent.reshape(projected.shape), axis=1
    )
    log_forget = log_forget_gate(forget, forget_gate)
    new_stabiliser = jnp.maximum(log_forget + stabiliser, log_input)
    input_scale = jnp.exp(log_input - new_stabiliser)  # i'_t
    forget_scale = jnp.exp(log_forget + stabiliser - new_stabiliser)  # f'_t
    cell = forget_scale * cell + input_scale * jnp.tanh(z)
    normaliser = forget_scale * normaliser + input_scale
    hidden = nn.sigmoid(output) * cell / normaliser
    return cell, normaliser, new_stabiliser, hidden


class SLSTMLayer(SequenceModel):
    """An sLSTM layer: x: [B, T, F] -> h: [B, T, features], in ``num_heads`` heads of
    ``features / num_heads`` units. The carry is (c', n', m, h), each [B, features]."""

    features: int
    num_heads: int = 4
    forget_gate: ForgetGate = "sigmoid"

    def setup(self) -> None:
        if self.features % self.num_heads:
            raise ValueError(
                f"features ({self.features}) must be divisible by num_heads ({self.num_heads})"
            )
        log_forget_gate(jnp.zeros(()), self.forget_gate)  # refuses an unknown gate
        width, head_dim = self.features, self.features // self.num_heads

        def bias_init(key: jax.Array, shape: tuple[int], dtype=jnp.float32) -> jax.Array:
            return jnp.zeros(shape, dtype).at[2 * width : 3 * width].set(jnp.linspace(3, 6, width))

        self.input_projection = nn.Dense(4 * width, bias_init=bias_init)  # W x + b: z, i, f, o
        self.recurrent_kernel = self.param(
            "recurrent_kernel",
            nn.initializers.lecun_normal(in_axis=1, out_axis=(2, 3), batch_axis=(0,)),
            (self.num_heads, head_dim, 4, head_dim),
        )

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        zeros = jnp.zeros((batch_size, self.features))
        return zeros, zeros, jnp.full((batch_size, self.features), EMPTY_STABILISER), zeros

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        batch, length = reset.shape
        projected = self.input_projection(x).reshape(batch, length, 4, self.features)
        initial_carry = self.initialize_carry(batch)
        recurrent_kernel = self.recurrent_kernel  # fetched outside the scan's trace

        def step(carry: Carry, inputs: tuple[jax.Array, jax.Array]) -> tuple[Carry, jax.Array]:
            projected_t, reset_t = inputs  # [B, 4, F], [B]
            carry = reset_carry(reset_t, carry, initial_carry)
            carry = slstm_step(recurrent_kernel, self.forget_gate, carry, projected_t)
            return carry, carry[-1]

        carry, hidden = jax.lax.scan(
            step, carry, (jnp.swapaxes(projected, 0, 1), jnp.swapaxes(reset, 0, 1))
        )
        return carry, jnp.swapaxes(hidden, 0, 1)


class SLSTM(MemoroidTorso):
    """Pre-norm residual sLSTM layers of width ``hidden_dim`` in ``num_heads`` heads."""

    num_heads: int = 4

    @nn.nowrap
    def make_stack(self) -> Stack:
        layers = [
            SLSTMLayer(features=self.hidden_dim, num_heads=self.num_heads)
            for _ in range(self.num_layers)
        ]
        return Stack(blocks=[Residual(PreNorm(layer)) for layer in layers])
