"""Mamba (Gu and Dao 2023): a selective state-space layer, its step size, B and C set by the input.

    u, z = in_proj(x);  u = SiLU(causal depthwise conv(u))
    dt = softplus(dt_proj(.)), B_t, C_t from u;  A = -exp(A_log)
    h_t = exp(dt A) * h_{t-1} + dt B_t u_t,      y_t = out_proj((C_t h_t + D u_t) * SiLU(z))

The convolution reads the last (kernel - 1) inputs of u; they live in the carry so that acting
(T = 1) sees the same window as training. An input from before a reset is never read: the
window is cleared at episode boundaries, inside a sequence and across calls alike.
"""

import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from memorax.networks.blocks.blocks import PreNorm, Residual, Stack
from memorax.networks.sequence_models.base import Carry
from memorax.networks.sequence_models.memoroid import (
    Context,
    Element,
    LinearRecurrenceCell,
    Memoroid,
    MemoroidCell,
    MemoroidTorso,
)


def symmetric_uniform(bound: float):
    """An initializer uniform on [-bound, bound]; 1 / sqrt(kernel) is torch's Conv1d default and
    the conv weights' start in Mamba, Mamba-2 and the mLSTM's optional convolution."""
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound
    )


def softplus_log_uniform(low: float, high: float):
    """An initializer whose softplus is log-uniform in [low, high] (the inverse softplus of a
    log-uniform draw): the step-size bias dt of Mamba, Mamba-2 and Gated DeltaNet's decay."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        dt = jnp.exp(jax.random.uniform(key, shape, dtype, np.log(low), np.log(high)))
        return dt + jnp.log(-jnp.expm1(-dt))

    return init


def log_of_uniform(low: float, high: float):
    """An initializer whose exp is uniform on [low, high]: A_log of Mamba-2 and Gated DeltaNet,
    so that the decay rates A = -exp(A_log) start spread over -low ... -high, one per head."""
    return lambda key, shape, dtype=jnp.float32: jnp.log(
        jax.random.uniform(key, shape, dtype, low, high)
    )


def causal_conv(
    u: jax.Array, reset: jax.Array, window: jax.Array, weight: jax.Array, bias: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Depthwise causal convolution of u: [B, T, E] with weight [K, E] that reads no input from
    an earlier episode; ``window`` [B, K - 1, E] holds the inputs before u. Also returns the
    window the next call starts from."""
    kernel = weight.shape[0]
    length, width = u.shape[1], kernel - 1
    padded = jnp.concatenate([window, u], axis=1)  # [B, K - 1 + T, E]
    # The window's inputs share episode 0 with the steps before the first reset.
    episode = jnp.concatenate(
        [jnp.zeros((u.shape[0], width), jnp.int32), jnp.cumsum(reset, axis=1, dtype=jnp.int32)],
        axis=1,
    )  # [B, K - 1 + T]
    output = bias
    for tap in range(kernel):  # tap k reads the input (K - 1 - k) steps back
        same = episode[:, tap : tap + length] == episode[:, width:]  # [B, T]
        output = output + weight[tap] * jnp.where(
            same[..., None], padded[:, tap : tap + length], 0.0
        )
    # Inputs before the last reset leave the window, as T one-step calls would clear them.
    tail = padded.shape[1] - width
    current = episode[:, tail:] == episode[:, -1:]  # [B, K - 1]
    return output, jnp.where(current[..., None], padded[:, tail:], 0.0)


def _scan_states(state: jax.Array, transition: jax.Array, inputs: tuple[jax.Array, ...], read):
    """h_t = exp(dt_t A) h_{t-1} + (dt_t u_t) B_t over time-major inputs (dt, dt u, B, reset,
    x), h_{t-1} zero where reset_t; returns the last state and, per step,
    ``read(h_{t-1} after the reset, h_t, x_t)``."""

    def step(state, inputs):
        dt_t, du_t, b_t, reset_t, x_t = inputs  # [B, E], [B, E], [B, N], [B], any
        previous = jnp.where(reset_t[:, None, None], 0.0, state)  # the initial carry is zero
        state = jnp.exp(dt_t[..., None] * transition) * previous + du_t[..., None] * b_t[:, None]
        return state, read(previous, state, x_t)

    return jax.lax.scan(step, state, inputs)


@jax.custom_vjp
def _selective_scan(
    state: jax.Array,
    transition: jax.Array,
    dt: jax.Array,
    du: jax.Array,
    input_b: jax.Array,
    output_c: jax.Array,
    reset: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One chunk of the selective scan: state [B, E, N], A [E, N], dt and dt u [L, B, E], B_t and
    C_t [L, B, N], reset [L, B] -> (last state, outputs C_t h_t [L, B, E]).

    Its gradient is written out (``_backward``) instead of left to autodiff: differentiating
    the step function stores and re-reads several [B, E, N] values per step and ran 2x slower
    here; the hand-written reverse scan recomputes the chunk's states once and carries one."""

    def output(previous, state, c_t):
        return jnp.einsum("ben,bn->be", state, c_t)

    return _scan_states(state, transition, (dt, du, input_b, reset, output_c), output)


def _forward(state, transition, dt, du, input_b, output_c, reset):
    return _selective_scan(state, transition, dt, du, input_b, output_c, reset), (
        state, transition, dt, du, input_b, output_c, reset,
    )  # fmt: skip


def _backward(residuals, gradients):
    """The reverse-time recurrence of the chunk's gradients. With G_t the gradient of h_t
    (from later steps and from y_t = C_t h_t) and a_t = exp(dt_t A):
    dL/dh_{t-1} = a_t G_t (zero across a reset), dL/dA += G_t h_{t-1} a_t dt_t,
    dL/ddt_t = sum_n G_t h_{t-1} a_t A, dL/d(dt u)_t = sum_n G_t B_t, dL/dB_t = sum_e G_t (dt u)_t,
    dL/dC_t = sum_e h_t dL/dy_t.

    dL/dC_t needs only h_t, so the pass that recomputes the states forward reads it off; the
    reverse pass then never rebuilds h_t."""
    state, transition, dt, du, input_b, output_c, reset = residuals
    g_last, g_y = gradients

    def read(previous, state, g_y_t):
        return previous, jnp.einsum("ben,be->bn", state, g_y_t)

    _, (previous, g_c) = _scan_states(state, transition, (dt, du, input_b, reset, g_y), read)

    def step(carry, inputs):
        g_state, g_transition = carry
        dt_t, b_t, c_t, reset_t, g_y_t, previous_t, du_t = inputs
        a = jnp.exp(dt_t[..., None] * transition)  # [B, E, N]
        g_state = g_state + g_y_t[..., None] * c_t[:, None]
        g_a = g_state * previous_t * a  # the gradient of dt_t A
        g_inputs = (
            jnp.sum(g_a * transition, axis=-1),
            jnp.sum(g_state * b_t[:, None], axis=-1),
            jnp.einsum("ben,be->bn", g_state, du_t),
        )
        g_previous = jnp.where(reset_t[:, None, None], 0.0, g_state * a)
        return (g_previous, g_transition + g_a * dt_t[..., None]), g_inputs

    inputs = (dt, input_b, output_c, reset, g_y, previous, du)
    (g_state, g_transition), (g_dt, g_du, g_b) = jax.lax.scan(
        step, (g_last, jnp.zeros_like(state)), inputs, reverse=True
    )
    return g_state, jnp.sum(g_transition, axis=0), g_dt, g_du, g_b, g_c, None


_selective_scan.defvjp(_forward, _backward)


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
            bias_init=softplus_log_uniform(self.dt_min, self.dt_max),
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
        return causal_conv(u, reset, window, self.conv_weight, self.conv_bias)

    def inputs(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[jax.Array, ...]:
        """Everything the scan needs per step, none of it per state: step sizes dt and inputs u
        ([B, T, E]), B_t and C_t ([B, T, N]), the gate z ([B, T, E]) and the next conv window."""
        u, z = jnp.split(self.in_proj(x), 2, axis=-1)  # [B, T, E] each
        u, window = self.causal_conv(u, reset, carry[1])
        u = nn.silu(u)
        dt_low, input_b, output_c = jnp.split(
            self.x_proj(u), [self.rank, self.rank + self.state_dim], axis=-1
        )  # [B, T, R], [B, T, N], [B, T, N]
        dt = nn.softplus(self.dt_proj(dt_low))  # [B, T, E]
        return dt, u, input_b, output_c, z, window

    def elements(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Element, Context]:
        dt, u, input_b, output_c, z, window = self.inputs(x, reset, carry)
        a = jnp.exp(dt[..., None] * -jnp.exp(self.A_log))  # [B, T, E, N]
        b = (dt * u)[..., None] * input_b[:, :, None, :]  # [B, T, E, N]
        return (a, b), (u, z, output_c, window)

    def chunked(
        self, x: jax.Array, reset: jax.Array, carry: Carry, chunk_size: int
    ) -> tuple[Carry, jax.Array]:
        """The same layer as a sequential scan that never stores a state per step: each step
        forms exp(dt A) and dt B u for itself and reads its output C h at once. Steps run in
        chunks of ``chunk_size`` (``_selective_scan``) whose states are recomputed in the
        backward pass, so training keeps one [B, E, N] state per chunk and one chunk's states at
        a time, in place of the associative scan's elements for every step."""
        dt, u, input_b, output_c, z, window = self.inputs(x, reset, carry)
        transition = -jnp.exp(self.A_log)  # [E, N]
        length = reset.shape[1]
        size = min(chunk_size, length)
        pad = -length % size

        def chunks(a: jax.Array) -> jax.Array:  # [B, T, ...] -> [T / size, size, B, ...]
            # Padded steps have dt = 0 and no reset: they leave the state as it is.
            a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
            a = jnp.moveaxis(a, 1, 0)
            return a.reshape((-1, size) + a.shape[1:])

        inputs = tuple(map(chunks, (dt, dt * u, input_b, output_c, reset)))
        state, y = jax.lax.scan(
            lambda state, inputs: _selective_scan(state, transition, *inputs), carry[0], inputs
        )  # y: [T / size, size, B, E]
        y = y.reshape((-1,) + y.shape[2:])[:length].swapaxes(0, 1) + self.D * u  # [B, T, E]
        return (state, window), self.out_proj(y * nn.silu(z))

    def read(self, states: Element, context: Context) -> jax.Array:
        u, z, output_c, _ = context
        y = jnp.einsum("bten,btn->bte", states[1], output_c) + self.D * u  # [B, T, E]
        return self.out_proj(y * nn.silu(z))


class MambaLayer(Memoroid):
    """A Mamba layer over x: [B, T, F]. ``scan="chunked"`` (the default) runs the selective scan
    step by step in checkpointed chunks (``MambaCell.chunked``); ``scan="associative"`` is the
    ``Memoroid`` associative scan over per-step elements [B, T, E, N]: O(log T) depth, for
    hardware that can use it, at O(T E N) memory. Both compute the same outputs and carry from
    the same parameters."""

    scan: Literal["chunked", "associative"] = "chunked"
    chunk_size: int = 64

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        if self.scan == "associative":
            return super().__call__(x, reset, carry)
        if self.scan != "chunked" or self.chunk_size < 1:
            raise ValueError(
                f"scan must be 'chunked' or 'associative' and chunk_size at least 1, "
                f"not {self.scan!r} and {self.chunk_size}"
            )
        return self.cell.chunked(x, reset, carry, self.chunk_size)


class Mamba(MemoroidTorso):
    """Pre-norm residual Mamba layers of width ``hidden_dim``; ``scan`` and ``chunk_size`` as
    in ``MambaLayer``."""

    state_dim: int = 16
    expand: int = 2
    conv_kernel: int = 4
    scan: Literal["chunked", "associative"] = "chunked"
    chunk_size: int = 64

    @nn.nowrap
    def make_stack(self) -> Stack:
        layers = [
            Residual(PreNorm(MambaLayer(self.make_cell(), self.scan, self.chunk_size)))
            for _ in range(self.num_layers)
        ]
        return Stack(blocks=layers)

    @nn.nowrap
    def make_cell(self) -> MemoroidCell:
        return MambaCell(
            features=self.hidden_dim,
            state_dim=self.state_dim,
            expand=self.expand,
            conv_kernel=self.conv_kernel,
        )
