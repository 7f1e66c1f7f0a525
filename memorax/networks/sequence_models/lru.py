"""LRU (Orvieto et al. 2023): a complex diagonal linear recurrence with a real read-out.

    h_t = lambda * h_{t-1} + gamma * (B u_t),    y_t = Re(C h_t) + D * u_t

lambda = exp(-exp(nu_log) + i exp(theta_log)) stays inside the unit disc for any parameters,
and its eigenvalues start uniformly on a ring r_min <= |lambda| <= r_max with phase up to
max_phase, so memory horizons are spread out from the start. gamma starts at
sqrt(1 - |lambda|^2), which keeps the state's scale independent of how close |lambda| is to 1.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from memorax.networks.sequence_models.base import Carry
from memorax.networks.sequence_models.memoroid import (
    ComplexDense,
    Context,
    Element,
    LinearRecurrenceCell,
    MemoroidCell,
    MemoroidTorso,
    complex_normal,
)


class LRUCell(LinearRecurrenceCell):
    """An LRU layer: u: [B, T, features] -> y: [B, T, features] through ``state_dim`` complex
    states (``features`` when None)."""

    features: int
    state_dim: int | None = None
    r_min: float = 0.9
    r_max: float = 0.999
    max_phase: float = 2.0 * np.pi

    @property
    def num_states(self) -> int:
        return self.state_dim or self.features

    def setup(self) -> None:
        def nu_init(key: jax.Array, shape: tuple[int]) -> jax.Array:
            # |lambda|^2 uniform on [r_min^2, r_max^2]: uniform over the ring's area.
            u1 = jax.random.uniform(key, shape)
            return jnp.log(-0.5 * jnp.log(u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2))

        def theta_init(key: jax.Array, shape: tuple[int]) -> jax.Array:
            return jnp.log(self.max_phase * jax.random.uniform(key, shape))

        self.nu_log = self.param("nu_log", nu_init, (self.num_states,))
        self.theta_log = self.param("theta_log", theta_init, (self.num_states,))
        self.gamma_log = self.param(
            "gamma_log", lambda _: jnp.log(jnp.sqrt(1.0 - jnp.abs(self.eigenvalues()) ** 2))
        )
        self.input_matrix = ComplexDense(self.num_states, complex_normal(np.sqrt(0.5)), name="B")
        self.output_matrix = ComplexDense(
            self.features, complex_normal(1.0), real_part=True, name="C"
        )
        self.feedthrough = self.param("D", nn.initializers.normal(1.0), (self.features,))

    def eigenvalues(self) -> jax.Array:
        """lambda: [N] complex, |lambda| < 1."""
        return jnp.exp(jax.lax.complex(-jnp.exp(self.nu_log), jnp.exp(self.theta_log)))

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.num_states), jnp.complex64)

    def elements(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Element, Context]:
        if x.shape[-1] != self.features:
            raise ValueError(
                f"LRUCell(features={self.features}) got inputs of width {x.shape[-1]}; project "
                f"them to {self.features} first or use LRU(hidden_dim=...), which does"
            )
        b = jnp.exp(self.gamma_log) * self.input_matrix(x)  # [B, T, N]
        a = jnp.broadcast_to(self.eigenvalues(), b.shape)
        return (a, b), x

    def read(self, states: Element, context: Context) -> jax.Array:
        return self.output_matrix(states[1]) + self.feedthrough * context


class LRU(MemoroidTorso):
    """Pre-norm residual LRU layers of width ``hidden_dim``."""

    state_dim: int | None = None

    @nn.nowrap
    def make_cell(self) -> MemoroidCell:
        return LRUCell(features=self.hidden_dim, state_dim=self.state_dim)
