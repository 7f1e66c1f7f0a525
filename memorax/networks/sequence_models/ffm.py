"""FFM: Fast and Forgetful Memory (Morad et al., NeurIPS 2023, "Reinforcement Learning with Fast
and Forgetful Memory"), a gated cell around a diagonal complex linear recurrence.

    x~_t = l1(x_t) * sigmoid(l2(x_t))                      input map and gate: [m]
    S_t  = gamma * S_{t-1} + x~_t 1_c^T                    the aggregator: S_t [m, c] complex
    gamma_ij = exp(-|alpha_i|) exp(i omega_j)              a decay per memory channel i and a
                                                           frequency per context channel j
    z_t  = l3([Re S_t, Im S_t])                            the read-out over both parts: [H]
    g_t  = sigmoid(l4(x_t))
    y_t  = LN(z_t) * g_t + l5(x_t) * (1 - g_t)             LN without scale or offset

Every l is a dense layer with a bias. The aggregator is a ``LinearRecurrenceCell`` (a_t = gamma,
b_t = x~_t 1_c^T), so ``Memoroid`` runs it with its resettable associative scan.

Where this differs from the paper and its code (``proroklab/ffm``): the paper computes S_t in
closed form as gamma^t * (S_0 + sum_j gamma^-j x~_j), which overflows unless |log gamma| * T stays
below log(float max), so its code caps |alpha| and splits long sequences into blocks; the scan
multiplies only factors |gamma| <= 1 and needs neither (tested at T = 2048). The fastest
channel's initial alpha is ln 2 (half its memory gone per step) rather than the code's 0.67,
which that cap sets just below ln 2; the slowest is the code's ln(1 / forgotten_at) / max_period,
and the frequencies are the code's 2 pi / linspace(min_period, max_period, c). The sign of omega
and the order of the read-out's inputs are conventions that l3 absorbs. The paper's code takes
l1, l2, l4 and l5 as slices of one dense layer: the same maps.

Those frequencies start the first context channel at 2 pi rad a step, which is no rotation at
all, and the others below 0.02 rad: at initialisation every context channel of a memory channel
holds nearly the same sum, and lags differ only by decay. FFM then learns to recall an input a
fixed few steps back (RepeatPrevious) far more slowly than a GRU or an LRU
(benchmarks/ffm_frequencies.py). ``frequencies="spread"`` starts them at linspace(0, pi, c)
instead (still one channel that does not turn, which keeps a sum that does not depend on when
its inputs came); the default stays the authors' so that ``--torso ffm`` is their model.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from memorax.networks.sequence_models.base import Carry
from memorax.networks.sequence_models.memoroid import (
    Context,
    Element,
    LinearRecurrenceCell,
    MemoroidCell,
    MemoroidTorso,
)


class FFMCell(LinearRecurrenceCell):
    """One FFM layer: x: [B, T, F] -> y: [B, T, features]; the carry is S: [B, m, c] complex64."""

    features: int
    memory_size: int  # m: memory channels, each with its decay rate alpha
    context_size: int  # c: context channels, each with its frequency omega
    min_period: float = 1.0
    max_period: float = 1024.0
    forgotten_at: float = 0.01  # the slowest channel keeps this fraction after max_period steps
    frequencies: str = "periods"  # omega's start: "periods" (the authors') or "spread" (0..pi)

    def setup(self) -> None:
        def alpha_init(key: jax.Array, shape: tuple[int]) -> jax.Array:
            slowest = np.log(1.0 / self.forgotten_at) / self.max_period
            return jnp.linspace(slowest, np.log(2.0), shape[0])

        def omega_init(key: jax.Array, shape: tuple[int]) -> jax.Array:
            if self.frequencies == "spread":
                return jnp.linspace(0.0, np.pi, shape[0])
            return 2.0 * np.pi / jnp.linspace(self.min_period, self.max_period, shape[0])

        if self.frequencies not in ("periods", "spread"):
            raise ValueError(f'frequencies ({self.frequencies!r}) must be "periods" or "spread"')

        self.alpha = self.param("alpha", alpha_init, (self.memory_size,))
        self.omega = self.param("omega", omega_init, (self.context_size,))
        self.input = nn.Dense(self.memory_size)  # l1
        self.input_gate = nn.Dense(self.memory_size)  # l2
        self.mix = nn.Dense(self.features)  # l3
        self.output_gate = nn.Dense(self.features)  # l4
        self.skip = nn.Dense(self.features)  # l5
        self.norm = nn.LayerNorm(use_scale=False, use_bias=False)

    def gamma(self) -> jax.Array:
        """gamma: [m, c] complex, |gamma| = exp(-|alpha|) <= 1."""
        return jnp.exp(jax.lax.complex(-jnp.abs(self.alpha)[:, None], self.omega[None, :]))

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.memory_size, self.context_size), jnp.complex64)

    def elements(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Element, Context]:
        gated = self.input(x) * nn.sigmoid(self.input_gate(x))  # x~: [B, T, m]
        shape = gated.shape + (self.context_size,)
        b = jnp.broadcast_to(gated[..., None], shape).astype(jnp.complex64)  # [B, T, m, c]
        a = jnp.broadcast_to(self.gamma(), shape)
        return (a, b), x

    def read(self, states: Element, context: Context) -> jax.Array:
        state = states[1]  # S_t: [B, T, m, c]
        parts = jnp.concatenate([state.real, state.imag], axis=-1)  # [B, T, m, 2c]
        z = self.mix(parts.reshape(parts.shape[:2] + (-1,)))  # [B, T, features]
        gate = nn.sigmoid(self.output_gate(context))
        return self.norm(z) * gate + self.skip(context) * (1.0 - gate)


class FFM(MemoroidTorso):
    """Pre-norm residual FFM layers of width ``hidden_dim``. ``memory_size`` None gives
    ceil(hidden_dim / context_size) memory channels, so that the state holds about ``hidden_dim``
    complex values like --torso lru and s5 (m = 32, c = 4 at width 128), at any width."""

    memory_size: int | None = None
    context_size: int = 4
    frequencies: str = "periods"  # FFMCell's: the authors' start for omega, or "spread"

    @nn.nowrap
    def make_cell(self) -> MemoroidCell:
        memory_size = self.memory_size or -(-self.hidden_dim // self.context_size)
        return FFMCell(
            features=self.hidden_dim,
            memory_size=memory_size,
            context_size=self.context_size,
            frequencies=self.frequencies,
        )
