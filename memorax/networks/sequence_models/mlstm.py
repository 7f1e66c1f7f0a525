"""mLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", Section 2.3): an LSTM whose
memory is a matrix per head, written with a covariance rule and read with a query, so that its
training pass runs parallel in time. Equation numbers are those of arXiv:2405.04517v2.

    C_t = f_t C_{t-1} + i_t v_t k_t^T                  (19)   C: [H, d, d] (value x key)
    n_t = f_t n_{t-1} + i_t k_t                        (20)   n: [H, d]
    h_t = o_t * C_t q_t / max(|n_t . q_t|, 1)          (21)
    q_t = W_q x_t + b_q,   k_t = (W_k x_t + b_k) / sqrt(d),   v_t = W_v x_t + b_v     (22-24)
    i_t = exp(i~_t),   f_t = sigmoid(f~_t) or exp(f~_t),   o_t = sigmoid(W_o x_t + b_o)  (25-27)

with i~_t and f~_t = w^T x_t + b one scalar per head. Stabilised as the paper stabilises the
sLSTM (15-17): the carry holds C'_t = exp(-m_t) C_t, n'_t = exp(-m_t) n_t and m_t itself,

    m_t  = max(log f_t + m_{t-1}, log i_t)
    C'_t = exp(log f_t + m_{t-1} - m_t) C'_{t-1} + exp(log i_t - m_t) v_t k_t^T     (n' alike)
    h_t  = o_t * C'_t q_t / max(|n'_t . q_t|, exp(-m_t)),

which is (21) exactly, since the floor 1 is scaled by exp(-m_t) like C and n. Every gate exp
sees a number <= 0. The empty memory (the initial carry, and the carry after a reset) has C' = 0,
n' = 0 and m = EMPTY_STABILISER, a finite stand-in for minus infinity, so an episode's first
step sets m = log i and m_t is the paper's parallel stabiliser (the row maximum of log D).

Chunked parallel form. With s(i, j) = log f_{j+1} + ... + log f_i, a chunk of L steps entered
with (C', n', m)_in gives, for every step i and the steps j <= i of its episode in the chunk,

    m_i      = max(s(i, -1) + m_in,  max_j s(i, j) + log i_j)
    C'_i q_i = sum_j exp(s(i, j) + log i_j - m_i) (q_i . k_j) v_j
               + exp(s(i, -1) + m_in - m_i) C'_in q_i

and n'_i . q_i alike; the chunk's L x L terms are computed first with their own row maxima, a
``lax.scan`` over chunks passes (C', n', m) from chunk to chunk, and each step's terms are then
rescaled to m_i. A reset at step r drops every term from before r (the chunk's incoming state
included) from r on. This is the recurrence above as one function: the contract checks one call
over T steps against T one-step calls, and tests/test_xlstm.py both against a float64 loop.

Deviations from the paper: the layer is the cell with full (not head-wise) q, k, v projections and
an output projection, stacked with the library's residual pre-norm blocks; the paper's block
(up-projection, learnable skip, GroupNorm, gated down-projection) is left out. Its causal
convolution is an option (``conv_kernel``, 0 by default; the paper's block uses 4): q and k are then
read from SiLU(causal depthwise conv(W_u x_t + b_u)), as the block reads them from its convolved
up-projection, so each key sees the last few inputs, not x_t alone; v and the gates stay on x_t. The
convolution is Mamba's (``mamba.causal_conv``: no input from an earlier episode) and its last
(kernel - 1) inputs join the carry. The floor exp(-m_t) is capped at exp(80) (float32 overflows at
exp(88.7), and its gradient would be inf * 0): this changes h only where i~_t < -80, by less than
1e-34 |C'_t q_t|. With exponential forget gates m_t grows with the sum of the positive f~ of the
episode, and float32 holds m, and so the scale of C' and n', to about 1e-7 times that sum. Sigmoid
forget gates (the default, as in the paper's code) keep m_t between the least and the greatest
log i of the episode.
"""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from memorax.networks.blocks.blocks import PreNorm, Residual, Stack
from memorax.networks.sequence_models.base import Carry, SequenceModel
from memorax.networks.sequence_models.mamba import causal_conv, symmetric_uniform
from memorax.networks.sequence_models.mamba2 import segment_sums
from memorax.networks.sequence_models.memoroid import MemoroidTorso

ForgetGate = Literal["sigmoid", "exponential"]
EMPTY_STABILISER = -1e30  # m of an empty memory: exp(anything + m) is 0, and no inf - inf arises
MAX_LOG_FLOOR = 80.0  # exp(-m_t) is capped at exp(80) below float32's exp(88.7)


def log_forget_gate(preactivation: jax.Array, forget_gate: ForgetGate) -> jax.Array:
    """log f_t: logsigmoid(f~) for a sigmoid forget gate, f~ itself for an exponential one."""
    if forget_gate == "sigmoid":
        return jax.nn.log_sigmoid(preactivation)
    if forget_gate == "exponential":
        return preactivation
    raise ValueError(f"forget_gate {forget_gate!r} is unknown; choose sigmoid or exponential")


def chunked_mlstm(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    log_input: jax.Array,
    log_forget: jax.Array,
    reset: jax.Array,
    state: tuple[jax.Array, jax.Array, jax.Array],
    chunk_size: int,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """C_t q_t / max(|n_t . q_t|, 1) for every step, stabilised as in the module docstring.

    query, key, value: [B, T, H, d]; log_input, log_forget: [B, T, H]; reset: [B, T]; state:
    (C' [B, H, d, d], n' [B, H, d], m [B, H]). Returns h~ [B, T, H, d] and the last state."""
    batch, length = reset.shape
    size = min(chunk_size, length)
    pad = -length % size

    def chunks(a: jax.Array, fill: float = 0.0) -> jax.Array:  # [B, T, ...] -> [B, C, L, ...]
        # Padded steps have log f = 0 and log i = -inf: they leave (C', n', m) as they find it.
        a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2), constant_values=fill)
        return a.reshape((batch, -1, size) + a.shape[2:])

    query, key, value, reset = map(chunks, (query, key, value, reset))
    log_input = jnp.moveaxis(chunks(log_input, -jnp.inf), -1, -2)  # [B, C, H, L]
    log_forget = jnp.moveaxis(chunks(log_forget), -1, -2)  # [B, C, H, L]

    # Step j reaches step i >= j of its chunk when no reset lies in (j, i]: same count of resets;
    # the incoming state reaches step i when no reset lies in [0, i].
    episode = jnp.cumsum(reset, axis=2, dtype=jnp.int32)  # [B, C, L]
    same = (episode[..., :, None] == episode[..., None, :]) & jnp.tri(size, dtype=bool)
    fresh = (episode == 0)[:, :, None, :]  # [B, C, 1, L]
    log_gates = jnp.where(
        same[:, :, None], segment_sums(log_forget) + log_input[..., None, :], -jnp.inf
    )  # [B, C, H, L, L]: s(i, j) + log i_j, -inf where j cannot reach i
    local_max = jnp.max(log_gates, axis=-1)  # [B, C, H, L], finite: the diagonal is in it
    weights = jnp.exp(log_gates - local_max[..., None])  # [B, C, H, L, L], <= 1
    from_start = jnp.where(fresh, jnp.cumsum(log_forget, axis=-1), -jnp.inf)  # s(i, -1)

    weighted = weights * jnp.einsum("bcihd,bcjhd->bchij", query, key)
    local_read = jnp.einsum("bchij,bcjhd->bcihd", weighted, value)  # [B, C, L, H, d]
    local_dot = jnp.sum(weighted, axis=-1)  # [B, C, H, L]
    last = weights[..., -1, :]  # [B, C, H, L]: how each step enters the chunk's last state
    chunk_memory = jnp.einsum("bchj,bcjhv,bcjhk->bchvk", last, value, key)
    chunk_normaliser = jnp.einsum("bchj,bcjhk->bchk", last, key)

    def pass_state(entering, chunk):
        memory, normaliser, stabiliser = entering  # [B, H, d, d], [B, H, d], [B, H]
        decay, own_memory, own_normaliser, own_stabiliser = chunk
        carried = decay + stabiliser
        new_stabiliser = jnp.maximum(carried, own_stabiliser)
        old, new = jnp.exp(carried - new_stabiliser), jnp.exp(own_stabiliser - new_stabiliser)
        memory = old[..., None, None] * memory + new[..., None, None] * own_memory
        normaliser = old[..., None] * normaliser + new[..., None] * own_normaliser
        return (memory, normaliser, new_stabiliser), entering

    state, entering = jax.lax.scan(
        pass_state,
        state,
        jax.tree.map(
            lambda a: jnp.swapaxes(a, 0, 1),
            (from_start[..., -1], chunk_memory, chunk_normaliser, local_max[..., -1]),
        ),
    )
    memory, normaliser, stabiliser = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), entering)

    carried = from_start + stabiliser[..., None]  # [B, C, H, L]
    m = jnp.maximum(carried, local_max)
    local_scale, carried_scale = jnp.exp(local_max - m), jnp.exp(carried - m)
    read = jnp.einsum("bchvk,bcihk->bcihv", memory, query)
    read = jnp.moveaxis(local_scale, -1, -2)[..., None] * local_read + (
        jnp.moveaxis(carried_scale, -1, -2)[..., None] * read
    )  # [B, C, L, H, d]: C'_i q_i
    dot = local_scale * local_dot + carried_scale * jnp.einsum(
        "bchk,bcihk->bchi", normaliser, query
    )
    floor = jnp.exp(jnp.minimum(-m, MAX_LOG_FLOOR))
    denominator = jnp.moveaxis(jnp.maximum(jnp.abs(dot), floor), -1, -2)[..., None]
    outputs = (read / denominator).reshape((batch, -1) + read.shape[3:])
    return outputs[:, :length], state


class MLSTMLayer(SequenceModel):
    """An mLSTM layer: x: [B, T, F] -> y: [B, T, features], in ``num_heads`` heads of
    ``features / num_heads``. The carry is (C' [B, H, d, d], n' [B, H, d], m [B, H]), followed
    by the convolution's window [B, conv_kernel - 1, features] when ``conv_kernel`` > 0."""

    features: int
    num_heads: int = 4
    chunk_size: int = 64
    forget_gate: ForgetGate = "sigmoid"
    conv_kernel: int = 0  # 0: q and k from x_t (the cell); 4: the xLSTM block's convolution

    @property
    def head_dim(self) -> int:
        return self.features // self.num_heads

    def setup(self) -> None:
        if self.features % self.num_heads:
            raise ValueError(
                f"features ({self.features}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size ({self.chunk_size}) must be at least 1")
        if self.conv_kernel < 0:
            raise ValueError(f"conv_kernel ({self.conv_kernel}) must be 0 (none) or more")
        log_forget_gate(jnp.zeros(()), self.forget_gate)  # refuses an unknown gate
        width, heads = self.features, self.num_heads
        gates_at = self.direct_vectors * width + heads  # where f~ starts in the projection

        def bias_init(key: jax.Array, shape: tuple[int], dtype=jnp.float32) -> jax.Array:
            # Forget gates start at sigmoid(3) ... sigmoid(6) across heads (the paper's code).
            return jnp.zeros(shape, dtype).at[gates_at:].set(jnp.linspace(3.0, 6.0, heads))

        # q, k (unless convolved), v, the output gate (F each), then i~ and f~ (H each).
        self.projection = nn.Dense(self.direct_vectors * width + 2 * heads, bias_init=bias_init)
        self.out_proj = nn.Dense(width)
        if self.conv_kernel:
            self.conv_input = nn.Dense(width)  # W_u, b_u
            self.conv_weight = self.param(
                "conv_weight",
                symmetric_uniform(1.0 / np.sqrt(self.conv_kernel)),  # Mamba's start
                (self.conv_kernel, width),
            )
            self.conv_bias = self.param("conv_bias", nn.initializers.zeros, (width,))
            self.query_key = nn.Dense(2 * width)  # q, k from the convolved inputs

    @property
    def direct_vectors(self) -> int:
        """How many F-wide vectors the projection of x_t holds: q, k, v, o, or v, o."""
        return 2 if self.conv_kernel else 4

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        heads, dim = self.num_heads, self.features // self.num_heads
        carry = (
            jnp.zeros((batch_size, heads, dim, dim)),
            jnp.zeros((batch_size, heads, dim)),
            jnp.full((batch_size, heads), EMPTY_STABILISER),
        )
        if self.conv_kernel:
            carry += (jnp.zeros((batch_size, self.conv_kernel - 1, self.features)),)
        return carry

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        batch, length = reset.shape
        width, heads = self.features, self.num_heads
        *vectors, log_input, forget = jnp.split(
            self.projection(x), np.cumsum([width] * self.direct_vectors + [heads]), axis=-1
        )
        window = ()
        if self.conv_kernel:
            convolved, next_window = causal_conv(
                self.conv_input(x), reset, carry[3], self.conv_weight, self.conv_bias
            )
            vectors = [*jnp.split(self.query_key(nn.silu(convolved)), 2, axis=-1), *vectors]
            carry, window = carry[:3], (next_window,)
        query, key, value, output_gate = vectors
        query, key, value = (
            a.reshape(batch, length, heads, self.head_dim) for a in (query, key, value)
        )
        h, carry = chunked_mlstm(
            query,
            key / np.sqrt(self.head_dim),
            value,
            log_input,
            log_forget_gate(forget, self.forget_gate),
            reset,
            carry,
            self.chunk_size,
        )
        h = nn.sigmoid(output_gate) * h.reshape(batch, length, width)
        return carry + window, self.out_proj(h)


class MLSTM(MemoroidTorso):
    """Pre-norm residual mLSTM layers of width ``hidden_dim`` in ``num_heads`` heads.

    Chunks of 64 as Mamba-2's: the L x L work per step and head (64 * d) is the order of the
    state work (d * d) at d = 32, the head size of width 128 in 4 heads. At that width, batch 32,
    T = 256, one forward and backward pass took 390, 230 and 320 ms in chunks of 32, 64 and 128
    (2 CPU cores shared with other jobs; Mamba-2 500 ms, sLSTM 250 ms, GRU 130 ms)."""

    num_heads: int = 4
    chunk_size: int = 64
    conv_kernel: int = 0  # see MLSTMLayer

    @nn.nowrap
    def make_stack(self) -> Stack:
        layers = [
            MLSTMLayer(
                features=self.hidden_dim,
                num_heads=self.num_heads,
                chunk_size=self.chunk_size,
                conv_kernel=self.conv_kernel,
            )
            for _ in range(self.num_layers)
        ]
        return Stack(blocks=[Residual(PreNorm(layer)) for layer in layers])
