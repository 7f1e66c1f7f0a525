"""Mamba (Gu and Dao 2023): a selective state-space layer, its step size, B and C set by the input.

    u, z = in_proj(x);  u = SiLU(causal depthwise conv(u))
    dt = softplus(dt_proj(.)), B_t, C_t from u;  A = -exp(A_log)
    h_t = exp(dt A) * h_{t-1} + dt B_t u_t,      y_t = out_proj((C_t h_t + D u_t) * SiLU(z))

The convolution reads the last (kernel - 1) inputs of u; they live in the carry so that acting
(T = 1) sees the same window as training. An input from before a reset is never read: the
window is cleared at episode boundaries, inside a sequence and across calls alike.
"""

import math

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


class MambaCell(LinearRecurrenceCell):
    """A Mamba layer: x: [B, T, F] -> y: [B, T, features], with ``expand * features`` channels
    of ``state_dim`` states each. The carry is (h: [B, E, N], conv window: [B, kernel - 1, E])."""

    features: int
    state_dim: int = 16
    expand: int = 2
    conv_kernel: int = 4
    dt_rank: int | None = None
    dt_min: float = 0.001
    dt_max: float = 0.1

    @property
    def channels(self) -> int:
        return self.expand * self.features

    @property
    def rank(self) -> int:
        return self.dt_rank or math.ceil(self.features / 16)

    def setup(self) -> None:
        def dt_bias_init(key: jax.Array, shape: tuple[int], dtype=jnp.float32) -> jax.Array:
            # softplus(bias) starts log-uniform in [dt_min, dt_max]: the inverse softplus of it.
            log_dt = jax.random.uniform(key, shape, dtype, np.log(self.dt_min), np.log(self.dt_max))
            dt = jnp.exp(log_dt)
            return dt + jnp.log(-jnp.expm1(-dt))

        def symmetric_uniform(bound: float):
            return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                key, shape, dtype, -bound, bound
            )

        self.in_proj = nn.Dense(2 * self.channels)
        self.conv_weight = self.param(
            "conv_weight",
            symmetric_uniform(1.0 / np.sqrt(self.conv_kernel)),
            (self.conv_kernel, self.channels),
        )
        self.conv_bias = self.param("conv_bias", nn.initializers.zeros, (self.channels,))
        self.x_proj = nn.Dense(self.rank + 2 * self.state_dim, use_bias=False)
        self.dt_proj = nn.Dense(
            self.channels,
            kernel_init=symmetric_uniform(1.0 / np.sqrt(self.rank)),
            bias_init=dt_bias_init,
        )
        self.A_log = self.param(
            "A_log",
            lambda _: jnp.log(jnp.tile(jnp.arange(1.0, self.state_dim + 1), (self.channels, 1))),
        )  # [E, N]: A = -1, -2, ..., -N in every channel
        self.D = self.param("D", nn.initializers.ones, (self.channels,))
        self.out_proj = nn.Dense(self.features)

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        state = jnp.zeros((batch_size, self.channels, self.state_dim))
        window = jnp.zeros((batch_size, self.conv_kernel - 1, self.channels))
        return state, window

    @nn.nowrap
    def carry_element(self, carry: Carry) -> Element:
        return super().carry_element(carry[0])

    @nn.nowrap
    def next_carry(self, states: Element, context: Context) -> Carry:
        return super().next_carry(states, context), context[-1]

    def causal_conv(
        self, u: jax.Array, reset: jax.Array, window: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Depthwise causal convolution of u: [B, T, E] that reads no input from an earlier
        episode; also returns the window the next call starts from."""
        length, width = u.shape[1], self.conv_kernel - 1
        padded = jnp.concatenate([window, u], axis=1)  # [B, K - 1 + T, E]
        # The window's inputs share episode 0 with the steps before the first reset.
        episode = jnp.concatenate(
            [jnp.zeros((u.shape[0], width), jnp.int32), jnp.cumsum(reset, axis=1, dtype=jnp.int32)],
            axis=1,
        )  # [B, K - 1 + T]
        output = self.conv_bias
        for tap in range(self.conv_kernel):  # tap k reads the input (K - 1 - k) steps back
            same = episode[:, tap : tap + length] == episode[:, width:]  # [B, T]
            output = output + self.conv_weight[tap] * jnp.where(
                same[..., None], padded[:, tap : tap + length], 0.0
            )
        # Inputs before the last reset leave the window, as T one-step calls would clear them.
        tail = padded.shape[1] - width
        current = episode[:, tail:] == episode[:, -1:]  # [B, K - 1]
        return output, jnp.where(current[..., None], padded[:, tail:], 0.0)

    def elements(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Element, Context]:
        u, z = jnp.split(self.in_proj(x), 2, axis=-1)  # [B, T, E] each
        u, window = self.causal_conv(u, reset, carry[1])
        u = nn.silu(u)
        dt_low, input_b, output_c = jnp.split(
            self.x_proj(u), [self.rank, self.rank + self.state_dim], axis=-1
        )  # [B, T, R], [B, T, N], [B, T, N]
        dt = nn.softplus(self.dt_proj(dt_low))  # [B, T, E]
        a = jnp.exp(dt[..., None] * -jnp.exp(self.A_log))  # [B, T, E, N]
        b = (dt * u)[..., None] * input_b[:, :, None, :]  # [B, T, E, N]
        return (a, b), (u, z, output_c, window)

    def read(self, states: Element, context: Context) -> jax.Array:
        u, z, output_c, _ = context
        y = jnp.einsum("bten,btn->bte", states[1], output_c) + self.D * u  # [B, T, E]
        return self.out_proj(y * nn.silu(z))


class Mamba(MemoroidTorso):
    """Pre-norm residual Mamba layers of width ``hidden_dim``."""

    state_dim: int = 16
    expand: int = 2
    conv_kernel: int = 4

    @nn.nowrap
    def make_cell(self) -> MemoroidCell:
        return MambaCell(
            features=self.hidden_dim,
            state_dim=self.state_dim,
            expand=self.expand,
            conv_kernel=self.conv_kernel,
        )
