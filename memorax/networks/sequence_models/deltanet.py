"""DeltaNet and Gated DeltaNet: linear attention whose matrix state is edited by the delta rule.

DeltaNet (Schlag et al. 2021, "Linear Transformers are secretly fast weight programmers"; Yang et
al. 2024, "Parallelizing linear transformers with the delta rule over sequence length") and Gated
DeltaNet (Yang et al. 2025, "Gated Delta Networks: improving Mamba2 with delta rule"), per head:

    q_t = l2norm(SiLU(W_q x_t)),  k_t = l2norm(SiLU(W_k x_t)),  v_t = SiLU(W_v x_t)
    beta_t = sigmoid(W_beta x_t)                                          (one per head)
    S_t = S_{t-1} alpha_t (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,      o_t = S_t q_t

S: [V, K] per head. DeltaNet has alpha_t = 1 and reads out out_proj(o); Gated DeltaNet has Mamba-2's
decay alpha_t = exp(-exp(A_log) softplus(W_a x_t + dt_bias)) and reads out out_proj(RMSNorm(o) *
SiLU(W_g x_t)), the norm per head. The feature map is Yang et al.'s (Schlag et al. used DPFP and a
sum normalisation): SiLU, then q and k divided by their L2 norm (sqrt(|.|^2 + 1e-6)), so beta_t in
(0, 1) keeps every I - beta_t k_t k_t^T a contraction.

Chunked form (Yang et al. 2024, section 3; the decay as in Yang et al. 2025). The delta rule is
S_t = alpha_t S_{t-1} + u_t k_t^T with u_t = beta_t (v_t - alpha_t S_{t-1} k_t). Within a chunk
of L steps entered with state S_0, with decay(i, j) = alpha_{j+1} ... alpha_i (1 on the diagonal)
and gamma_i = alpha_0 ... alpha_i, the u_t solve a unit lower-triangular system (the UT
transform of the WY representation): with A_ij = beta_i decay(i, j) (k_i . k_j) for j < i,

    (I + A) U' = diag(beta) V,  (I + A) W = diag(beta gamma) K,   U = U' - W S_0^T
    O     = (diag(gamma) Q - P W) S_0^T + P U',                   P = decay o (Q K^T), j <= i
    S_end = S_0 (gamma_{L-1} I - W^T diag(m) K) + U'^T diag(m) K,  m_j = decay(L - 1, j)

Everything but the state passed between chunks is batched over all chunks at once; a
``lax.scan`` over chunks carries S through the [K, K] transition of each. A reset at step r is
alpha_r = 0, done with masks rather than a logarithm of 0: decay(i, j) is 0 across a reset (in A,
P and m) and gamma_i is 0 from the reset on, so the chunk drops its incoming state exactly.

``mode="scan"`` steps the recurrence itself with a ``lax.scan`` over time; a one-step call (acting)
always does. The two agree to float32 rounding (tested). The default is the chunked form in chunks
of 32, by measurement: batch 32, T = 2048, width 128 (4 heads of 32), one layer forward and backward
on this repository's 2-core CPU (shared, about one core free; CPU seconds, best of 5 interleaved):

                       chunks of 32    chunks of 64    scan
    DeltaNet           3.4 s, 0.9 GiB  5.4 s, 0.9 GiB  4.0 s, 2.9 GiB
    Gated DeltaNet     4.4 s, 1.1 GiB  6.0 s, 1.2 GiB  8.6 s, 4.1 GiB     (XLA's temporaries)

The scan keeps a [V, K] state per step and head for the backward pass; the chunks keep one per
chunk. Half of the chunked time here is the triangular solve. Chunks of 16 were 15% faster still
on this CPU but double the sequential steps between chunks, which a GPU would pay for in
kernel launches; at 32 the L x L work per step and head (~L K) matches the state work (K V).

The papers' short causal convolution before the feature map is an option (``conv_kernel``, 0 by
default; the papers use 4): q, k and v are then read from SiLU(causal depthwise conv(W x_t)) with
no bias, each channel its own filter. The convolution is Mamba's (``mamba.causal_conv``: no input
from an earlier episode) and the carry is then (S, the last K - 1 projected inputs). Without it q
and k are functions of the current input alone, so a layer can find an earlier step only by its
content and the decay; with it the key and value of step t - 1 also carry the inputs just before
it, and a query at t that sees the same inputs can fetch the one 4 steps back (RepeatPrevious:
benchmarks/results/popgym/gated_deltanet_repeat_previous_easy.md). Where this differs from the
papers' architecture otherwise: the stack is the library's pre-norm residual layers with no
feed-forward block between them (as ``Mamba2``).
"""

from typing import Literal

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
from memorax.networks.sequence_models.mamba2 import segment_sums
from memorax.networks.sequence_models.memoroid import MemoroidTorso

Mode = Literal["chunked", "scan"]


def l2_normalize(a: jax.Array) -> jax.Array:
    return a * jax.lax.rsqrt(jnp.sum(a * a, axis=-1, keepdims=True) + 1e-6)


def delta_rule_scan(query, key, value, beta, log_decay, reset, state):
    """S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T, o_t = S_t q_t, one step
    at a time, S zeroed before each reset step.

    query, key: [B, T, H, K], value: [B, T, H, V], beta: [B, T, H], log_decay: log alpha
    [B, T, H] or None for alpha = 1, reset: [B, T], state: [B, H, V, K]. Returns the outputs o:
    [B, T, H, V] and the last state."""
    if log_decay is None:
        log_decay = jnp.zeros_like(beta)

    def step(state, inputs):
        q, k, v, b, log_a, r = inputs  # [B, H, K], [B, H, K], [B, H, V], [B, H], [B, H], [B]
        state = jnp.where(r[:, None, None, None], 0.0, jnp.exp(log_a)[..., None, None] * state)
        delta = b[..., None] * (v - jnp.einsum("bhvk,bhk->bhv", state, k))  # u_t
        state = state + delta[..., None] * k[..., None, :]
        return state, jnp.einsum("bhvk,bhk->bhv", state, q)

    sequences = (query, key, value, beta, log_decay, reset)
    state, outputs = jax.lax.scan(step, state, [jnp.swapaxes(a, 0, 1) for a in sequences])
    return jnp.swapaxes(outputs, 0, 1), state


def chunked_delta_rule(query, key, value, beta, log_decay, reset, state, chunk_size: int):
    """``delta_rule_scan`` in chunks of ``chunk_size`` steps (the module docstring's form); same
    arguments and results."""
    batch, length = reset.shape
    size = min(chunk_size, length)
    pad = -length % size

    def chunks(a: jax.Array) -> jax.Array:  # [B, T, ...] -> [B, T / L, L, ...]
        # Padded steps have beta 0, log decay 0 and no reset: S passes unchanged.
        a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
        return a.reshape((batch, -1, size) + a.shape[2:])

    def heads_first(a: jax.Array) -> jax.Array:  # [B, C, L, H, ...] -> [B, C, H, L, ...]
        return jnp.moveaxis(a, 3, 2)

    query, key, value, beta = (
        heads_first(chunks(a)) for a in (query, key, value, beta)
    )  # [B, C, H, L, K or V], beta: [B, C, H, L]
    reset = chunks(reset)  # [B, C, L]
    # Step j reaches step i >= j of its chunk when no reset lies in (j, i]: same count of resets.
    episode = jnp.cumsum(reset, axis=2, dtype=jnp.int32)
    same = (episode[..., :, None] == episode[..., None, :]) & jnp.tri(size, dtype=bool)
    # decay(i, j) [B, C, H or 1, L, L]; gamma_i [B, C, H or 1, L], where the incoming state
    # reaches step i when no reset lies in [0, i].
    if log_decay is None:
        decay = same[:, :, None].astype(key.dtype)
        gamma = (episode == 0)[:, :, None].astype(key.dtype)
    else:
        log_decay = heads_first(chunks(log_decay))  # [B, C, H, L]
        decay = jnp.where(same[:, :, None], jnp.exp(segment_sums(log_decay)), 0.0)
        gamma = jnp.where((episode == 0)[:, :, None], jnp.exp(jnp.cumsum(log_decay, axis=-1)), 0.0)

    strictly_lower = jnp.tri(size, k=-1, dtype=bool)
    key_gram = jnp.einsum("bchik,bchjk->bchij", key, key)
    lower = jnp.where(strictly_lower, beta[..., None] * decay * key_gram, 0.0)  # A
    right = jnp.concatenate(
        [beta[..., None] * value, (beta * gamma)[..., None] * key], axis=-1
    )  # [B, C, H, L, V + K]
    solved = jax.scipy.linalg.solve_triangular(
        jnp.eye(size) + lower, right, lower=True, unit_diagonal=True
    )
    pseudo_values, weights = jnp.split(solved, [value.shape[-1]], axis=-1)  # U', W

    end_keys = decay[..., -1, :, None] * key  # diag(m) K: [B, C, H, L, K]
    transition = gamma[..., -1, None, None] * jnp.eye(key.shape[-1]) - jnp.einsum(
        "bchlk,bchlj->bchkj", weights, end_keys
    )  # [B, C, H, K, K]
    chunk_states = jnp.einsum("bchlv,bchlk->bchvk", pseudo_values, end_keys)  # [B, C, H, V, K]

    def pass_state(entering: jax.Array, chunk: tuple[jax.Array, jax.Array]):
        chunk_transition, chunk_state = chunk
        return entering @ chunk_transition + chunk_state, entering

    state, entering = jax.lax.scan(
        pass_state, state, (jnp.swapaxes(transition, 0, 1), jnp.swapaxes(chunk_states, 0, 1))
    )
    entering = jnp.swapaxes(entering, 0, 1)  # [B, C, H, V, K]

    scores = decay * jnp.einsum("bchik,bchjk->bchij", query, key)  # P
    reads = gamma[..., None] * query - scores @ weights  # diag(gamma) Q - P W: [B, C, H, L, K]
    outputs = jnp.einsum("bchlk,bchvk->bchlv", reads, entering) + scores @ pseudo_values
    outputs = jnp.moveaxis(outputs, 2, 3)  # [B, C, L, H, V]
    return outputs.reshape((batch, -1) + outputs.shape[3:])[:, :length], state


class DeltaNetLayer(SequenceModel):
    """A DeltaNet layer: x: [B, T, F] -> y: [B, T, features], ``num_heads`` heads of
    features / num_heads for keys and values. The carry is S: [B, H, V, K], and with
    ``conv_kernel`` > 0 also the convolution's window [B, conv_kernel - 1, 3 features]."""

    features: int
    num_heads: int = 4
    chunk_size: int = 32
    mode: Mode = "chunked"
    conv_kernel: int = 0  # 0: q, k, v from x_t alone; 4: the papers' short convolution

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
        if self.mode not in ("chunked", "scan"):
            raise ValueError(f"mode ({self.mode!r}) must be 'chunked' or 'scan'")
        if self.conv_kernel < 0:
            raise ValueError(f"conv_kernel ({self.conv_kernel}) must be 0 (none) or more")
        self.qkv_proj = nn.Dense(3 * self.features, use_bias=False)
        if self.conv_kernel:
            self.conv_weight = self.param(
                "conv_weight",
                symmetric_uniform(1.0 / np.sqrt(self.conv_kernel)),  # Mamba's start
                (self.conv_kernel, 3 * self.features),
            )
        self.beta_proj = nn.Dense(self.num_heads, use_bias=False)
        self.out_proj = nn.Dense(self.features, use_bias=False)

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        state = jnp.zeros((batch_size, self.num_heads, self.head_dim, self.head_dim))
        if not self.conv_kernel:
            return state
        return state, jnp.zeros((batch_size, self.conv_kernel - 1, 3 * self.features))

    def log_decay(self, x: jax.Array) -> jax.Array | None:
        """log alpha_t: [B, T, H]; None for DeltaNet, which keeps the state whole (alpha = 1)."""
        return None

    def read_out(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        """o: [B, T, H, V] -> y: [B, T, features]."""
        return self.out_proj(outputs.reshape(x.shape[:2] + (self.features,)))

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        heads = x.shape[:2] + (self.num_heads, self.head_dim)
        projected, state = self.qkv_proj(x), carry
        if self.conv_kernel:
            state, window = carry
            projected, window = causal_conv(projected, reset, window, self.conv_weight, 0.0)
        query, key, value = (a.reshape(heads) for a in jnp.split(nn.silu(projected), 3, axis=-1))
        query, key = l2_normalize(query), l2_normalize(key)
        beta = nn.sigmoid(self.beta_proj(x))  # [B, T, H]
        sequences = (query, key, value, beta, self.log_decay(x), reset)
        if self.mode == "scan" or x.shape[1] == 1:
            outputs, state = delta_rule_scan(*sequences, state)
        else:
            outputs, state = chunked_delta_rule(*sequences, state, self.chunk_size)
        return (state, window) if self.conv_kernel else state, self.read_out(outputs, x)


class GatedDeltaNetLayer(DeltaNetLayer):
    """A Gated DeltaNet layer: DeltaNet with Mamba-2's decay per head and the gated per-head
    RMSNorm read-out. softplus(dt_bias) starts log-uniform in [dt_min, dt_max] and A in
    [1, 16], as in Mamba-2."""

    dt_min: float = 0.001
    dt_max: float = 0.1

    def setup(self) -> None:
        super().setup()

        self.decay_proj = nn.Dense(self.num_heads, use_bias=False)
        self.dt_bias = self.param(
            "dt_bias", softplus_log_uniform(self.dt_min, self.dt_max), (self.num_heads,)
        )
        self.A_log = self.param(
            "A_log",
            log_of_uniform(1.0, 16.0),
            (self.num_heads,),
        )
        self.gate_proj = nn.Dense(self.features, use_bias=False)
        self.norm = nn.RMSNorm(epsilon=1e-5)

    def log_decay(self, x: jax.Array) -> jax.Array:
        return -jnp.exp(self.A_log) * nn.softplus(self.decay_proj(x) + self.dt_bias)

    def read_out(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        normed = self.norm(outputs).reshape(x.shape[:2] + (self.features,))
        return self.out_proj(normed * nn.silu(self.gate_proj(x)))


class DeltaNet(MemoroidTorso):
    """Pre-norm residual DeltaNet layers of width ``hidden_dim``."""

    num_heads: int = 4
    chunk_size: int = 32
    mode: Mode = "chunked"
    conv_kernel: int = 0  # see DeltaNetLayer; --torso builds none

    @nn.nowrap
    def make_layer(self) -> DeltaNetLayer:
        return DeltaNetLayer(
            features=self.hidden_dim,
            num_heads=self.num_heads,
            chunk_size=self.chunk_size,
            mode=self.mode,
            conv_kernel=self.conv_kernel,
        )

    @nn.nowrap
    def make_stack(self) -> Stack:
        layers = [self.make_layer() for _ in range(self.num_layers)]
        return Stack(blocks=[Residual(PreNorm(layer)) for layer in layers])


class GatedDeltaNet(DeltaNet):
    """Pre-norm residual Gated DeltaNet layers of width ``hidden_dim``."""

    @nn.nowrap
    def make_layer(self) -> GatedDeltaNetLayer:
        return GatedDeltaNetLayer(
            features=self.hidden_dim,
            num_heads=self.num_heads,
            chunk_size=self.chunk_size,
            mode=self.mode,
            conv_kernel=self.conv_kernel,
        )
