"""Mamba-2 (Dao and Gu 2024, "Transformers are SSMs"): a selective state-space layer whose
transition is one scalar per head, so that a chunk of steps is a few matrix products (state-space
duality, SSD).

    z, xBC, dt = in_proj(u);   x, B, C = SiLU(causal depthwise conv(xBC))
    dt_t = softplus(dt + dt_bias),  a_t = exp(dt_t A),  A = -exp(A_log)       (one each per head)
    h_t = a_t h_{t-1} + dt_t x_t B_t^T          h: [H, P, N], x_t: [H, P], B_t, C_t: [N]
    y_t = h_t C_t + D x_t,                      out = out_proj(RMSNorm(y * SiLU(z)))

Chunked SSD. With s(i, j) = log a_{j+1} + ... + log a_i, a segment sum of log decays (<= 0, so
exp never sees a positive number), a chunk of L steps entered with state h_in gives

    y_i   = sum_{j <= i} exp(s(i, j)) (C_i . B_j) dt_j x_j  +  exp(s(i, -1)) h_in C_i
    h_out = sum_j exp(s(L - 1, j)) dt_j x_j B_j^T           +  exp(s(L - 1, -1)) h_in

The first terms are a masked L x L matrix times the chunk's inputs; a ``lax.scan`` over chunks
carries h from one to the next. A reset at step r zeroes every decay across it (nothing before r
reaches r or later), in the L x L mask and in what h_in and h_out keep; the initial state is zero.

The convolution is Mamba's (``mamba.causal_conv``): its last (kernel - 1) inputs live in the
carry and it reads no input from before a reset. Where this differs from the paper's code
(``mamba_ssm.Mamba2``): the library's pre-norm (LayerNorm in ``PreNorm``) rather than RMSNorm,
the conv bias starts at zero, and chunk states pass along sequentially rather than as a
segment-sum matrix product across chunks (T / L steps of a few matrix products each).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from memorax.networks.blocks.blocks import PreNorm, Residual, Stack
from memorax.networks.sequence_models.base import Carry, SequenceModel
from memorax.networks.sequence_models.mamba import (
    causal_conv,
    log_of_uniform,
    softplus_log_uniform,
    symmetric_uniform,
)
from memorax.networks.sequence_models.memoroid import MemoroidTorso


def segment_sums(log_decay: jax.Array) -> jax.Array:
    """[..., L] -> [..., L, L]: entry (i, j) is log_decay[j + 1] + ... + log_decay[i] for j <= i
    (0 on the diagonal), summed term by term rather than as a difference of two running sums,
    which would cancel catastrophically; 0 above the diagonal."""
    length = log_decay.shape[-1]
    strictly_lower = jnp.tril(jnp.ones((length, length), bool), -1)
    terms = jnp.where(strictly_lower, log_decay[..., :, None], 0.0)  # (i, j): log a_i if j < i
    return jnp.cumsum(terms, axis=-2)


def chunked_ssd(
    inputs: jax.Array,
    log_decay: jax.Array,
    input_b: jax.Array,
    output_c: jax.Array,
    reset: jax.Array,
    state: jax.Array,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
    """h_t = a_t h_{t-1} + inputs_t B_t^T, y_t = h_t C_t, with h zeroed before each reset step.

    inputs: [B, T, H, P] (dt x), log_decay: [B, T, H] (dt A), input_b and output_c: [B, T, N],
    reset: [B, T], state: [B, H, P, N]. Returns the outputs [B, T, H, P] and the last state."""
    batch, length = reset.shape
    size = min(chunk_size, length)
    pad = -length % size

    def chunks(a: jax.Array) -> jax.Array:  # [B, T, ...] -> [B, T / L, L, ...]
        # Padded steps have zero input, log decay 0 (a = 1) and no reset: h passes unchanged.
        a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
        return a.reshape((batch, -1, size) + a.shape[2:])

    inputs, log_decay, input_b, output_c, reset = map(
        chunks, (inputs, log_decay, input_b, output_c, reset)
    )
    # Step j reaches step i >= j of its chunk when no reset lies in (j, i]: same count of resets.
    episode = jnp.cumsum(reset, axis=2, dtype=jnp.int32)  # [B, C, L]
    same = (episode[..., :, None] == episode[..., None, :]) & jnp.tri(size, dtype=bool)
    decay = jnp.where(
        same[:, :, None], jnp.exp(segment_sums(jnp.moveaxis(log_decay, -1, -2))), 0.0
    )  # [B, C, H, L, L]
    scores = jnp.einsum("bcin,bcjn->bcij", output_c, input_b)  # [B, C, L, L], shared by heads
    within = jnp.einsum("bchij,bcij,bcjhp->bcihp", decay, scores, inputs)

    # The state entering a chunk reaches step i when no reset lies in [0, i].
    from_start = jnp.where(
        (episode == 0)[..., None], jnp.exp(jnp.cumsum(log_decay, axis=2)), 0.0
    )  # [B, C, L, H]
    to_end = decay[..., -1, :]  # [B, C, H, L]
    chunk_states = jnp.einsum("bchj,bcjhp,bcjn->bchpn", to_end, inputs, input_b)

    def pass_state(entering: jax.Array, chunk: tuple[jax.Array, jax.Array]):
        chunk_decay, chunk_state = chunk  # [B, H], [B, H, P, N]
        return chunk_decay[..., None, None] * entering + chunk_state, entering

    state, entering = jax.lax.scan(
        pass_state,
        state,
        (jnp.swapaxes(from_start[:, :, -1], 0, 1), jnp.swapaxes(chunk_states, 0, 1)),
    )
    entering = jnp.swapaxes(entering, 0, 1)  # [B, C, H, P, N]
    carried = jnp.einsum("bcin,bchpn,bcih->bcihp", output_c, entering, from_start)
    outputs = (within + carried).reshape((batch, -1) + within.shape[3:])
    return outputs[:, :length], state


class Mamba2Layer(SequenceModel):
    """A Mamba-2 layer: x: [B, T, F] -> y: [B, T, features], with ``expand * features`` channels
    in heads of ``head_dim``, each head a [head_dim, state_dim] state with one decay rate. The
    carry is (h: [B, H, P, N], conv window: [B, conv_kernel - 1, channels + 2 * state_dim])."""

    features: int
    state_dim: int = 64
    head_dim: int = 32
    expand: int = 2
    conv_kernel: int = 4
    chunk_size: int = 64
    dt_min: float = 0.001
    dt_max: float = 0.1

    @property
    def channels(self) -> int:
        return self.expand * self.features

    @property
    def num_heads(self) -> int:
        return self.channels // self.head_dim

    @property
    def conv_channels(self) -> int:
        return self.channels + 2 * self.state_dim  # x, B and C

    def setup(self) -> None:
        if self.channels % self.head_dim:
            raise ValueError(
                f"expand * features ({self.expand} * {self.features}) must be divisible by "
                f"head_dim ({self.head_dim}); choose features a multiple of "
                f"{self.head_dim // np.gcd(self.head_dim, self.expand)}"
            )
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size ({self.chunk_size}) must be at least 1")

        self.in_proj = nn.Dense(self.channels + self.conv_channels + self.num_heads, use_bias=False)
        self.conv_weight = self.param(
            "conv_weight",
            symmetric_uniform(1.0 / np.sqrt(self.conv_kernel)),
            (self.conv_kernel, self.conv_channels),
        )
        self.conv_bias = self.param("conv_bias", nn.initializers.zeros, (self.conv_channels,))
        self.dt_bias = self.param(
            "dt_bias", softplus_log_uniform(self.dt_min, self.dt_max), (self.num_heads,)
        )
        self.A_log = self.param(
            "A_log",
            log_of_uniform(1.0, 16.0),
            (self.num_heads,),
        )  # A = -1 ... -16, one rate per head as in the paper's code
        self.D = self.param("D", nn.initializers.ones, (self.num_heads,))
        self.norm = nn.RMSNorm(epsilon=1e-5)
        self.out_proj = nn.Dense(self.features, use_bias=False)

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        state = jnp.zeros((batch_size, self.num_heads, self.head_dim, self.state_dim))
        window = jnp.zeros((batch_size, self.conv_kernel - 1, self.conv_channels))
        return state, window

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        batch, length = reset.shape
        state, window = carry
        z, xbc, dt = jnp.split(
            self.in_proj(x), [self.channels, self.channels + self.conv_channels], axis=-1
        )  # [B, T, E], [B, T, E + 2N], [B, T, H]
        xbc, window = causal_conv(xbc, reset, window, self.conv_weight, self.conv_bias)
        u, input_b, output_c = jnp.split(
            nn.silu(xbc), [self.channels, self.channels + self.state_dim], axis=-1
        )  # [B, T, E], [B, T, N], [B, T, N]
        u = u.reshape(batch, length, self.num_heads, self.head_dim)  # [B, T, H, P]
        dt = nn.softplus(dt + self.dt_bias)  # [B, T, H]
        y, state = chunked_ssd(
            dt[..., None] * u,
            dt * -jnp.exp(self.A_log),
            input_b,
            output_c,
            reset,
            state,
            self.chunk_size,
        )
        y = (y + self.D[:, None] * u).reshape(batch, length, self.channels)
        return (state, window), self.out_proj(self.norm(y * nn.silu(z)))


class Mamba2(MemoroidTorso):
    """Pre-norm residual Mamba-2 layers of width ``hidden_dim``.

    Defaults for ``hidden_dim`` 128: 256 channels in 8 heads of 32, so 8 decay rates (heads of
    64 would leave 4); ``state_dim`` 64 because SSD turns a larger state into matrix-product
    work rather than a wider scan (the paper grows N from Mamba's 16 to 64 and more and finds it
    helps), at a carry of 256 * 64 floats per layer and environment; chunks of 64 steps, where
    the L x L work per step and head (64 * 32) stays below the state work (2 * 32 * 64). At batch
    32, T = 2048 on 2 CPU cores, chunks of 32 and 64 took the same time within 5% and 128 took
    15% longer and 20% more memory; 64 halves the sequential steps across chunks of 32."""

    state_dim: int = 64
    head_dim: int = 32
    expand: int = 2
    conv_kernel: int = 4
    chunk_size: int = 64

    @nn.nowrap
    def make_stack(self) -> Stack:
        layers = [
            Mamba2Layer(
                features=self.hidden_dim,
                state_dim=self.state_dim,
                head_dim=self.head_dim,
                expand=self.expand,
                conv_kernel=self.conv_kernel,
                chunk_size=self.chunk_size,
            )
            for _ in range(self.num_layers)
        ]
        return Stack(blocks=[Residual(PreNorm(layer)) for layer in layers])
