"""S5 (Smith et al. 2023): a diagonalised state-space layer discretised by zero-order hold.

    x_t = exp(Lambda dt) x_{t-1} + (exp(Lambda dt) - 1) / Lambda * B u_t
    y_t = 2 Re(C x_t) + D * u_t

Lambda starts at the eigenvalues of HiPPO-N (the normal part of HiPPO-LegS), whose eigenvectors
V carry B and C into the diagonal basis (B = V^-1 B, C = C V). Eigenvalues come in conjugate
pairs, so only one of each pair is kept and the real read-out doubles it.
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
)


def hippo_n_eigen(state_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The eigenvalues [P/2] and eigenvectors [P, P/2] of HiPPO-N with positive imaginary part.

    HiPPO-N = -1/2 I + a skew-symmetric part, so its eigenvalues are -1/2 + i w with w from the
    Hermitian matrix -i * skew."""
    n = np.arange(state_dim)
    scale = np.sqrt(n + 0.5)
    skew = np.outer(scale, scale)
    skew = np.tril(-skew, -1) + np.triu(skew, 1)  # HiPPO-LegS + rank-one term, minus its diagonal
    frequencies, vectors = np.linalg.eigh(-1j * skew)
    keep = np.argsort(frequencies)[state_dim // 2 :]
    return -0.5 + 1j * frequencies[keep], vectors[:, keep]


class S5Cell(LinearRecurrenceCell):
    """An S5 layer: u: [B, T, features] -> y: [B, T, features] through ``state_dim`` (even)
    states, stored as state_dim / 2 conjugate-pair representatives."""

    features: int
    state_dim: int = 64
    dt_min: float = 0.001
    dt_max: float = 0.1

    def setup(self) -> None:
        if self.state_dim % 2:
            raise ValueError(f"S5Cell state_dim ({self.state_dim}) must be even (conjugate pairs)")
        eigenvalues, vectors = hippo_n_eigen(self.state_dim)
        # Re(Lambda) = -exp(.) < 0 keeps every mode stable whatever the optimiser does.
        self.lambda_real_log = self.param(
            "lambda_real_log", lambda _: jnp.asarray(np.log(-eigenvalues.real), jnp.float32)
        )
        self.lambda_imag = self.param(
            "lambda_imag", lambda _: jnp.asarray(eigenvalues.imag, jnp.float32)
        )
        self.log_step = self.param(
            "log_step",
            lambda key, shape: jax.random.uniform(
                key, shape, minval=np.log(self.dt_min), maxval=np.log(self.dt_max)
            ),
            (self.state_dim // 2,),
        )

        def input_init(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
            dense = nn.initializers.lecun_normal()(key, (shape[0], self.state_dim))  # [F, P]
            return jnp.asarray(dense @ vectors.conj(), jnp.complex64)  # (V^-1 B)^T: [F, P/2]

        def output_init(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
            real_key, imag_key = jax.random.split(key)
            std = np.sqrt(0.5 / self.state_dim)
            dense = std * jax.lax.complex(
                jax.random.normal(real_key, (self.state_dim, shape[1])),
                jax.random.normal(imag_key, (self.state_dim, shape[1])),
            )  # C^T: [P, H]
            return jnp.asarray(vectors.T @ dense, jnp.complex64)  # (C V)^T: [P/2, H]

        self.input_matrix = ComplexDense(self.state_dim // 2, input_init, name="B")
        self.output_matrix = ComplexDense(self.features, output_init, real_part=True, name="C")
        self.feedthrough = self.param("D", nn.initializers.normal(1.0), (self.features,))

    def discretise(self) -> tuple[jax.Array, jax.Array]:
        """Zero-order hold with a learnable step per state: (exp(Lambda dt), (exp(Lambda dt) - 1)
        / Lambda), both [P/2] complex."""
        eigenvalues = jax.lax.complex(-jnp.exp(self.lambda_real_log), self.lambda_imag)
        step = jnp.exp(self.log_step)
        transition = jnp.exp(eigenvalues * step)
        return transition, (transition - 1.0) / eigenvalues

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.state_dim // 2), jnp.complex64)

    def elements(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Element, Context]:
        if x.shape[-1] != self.features:
            raise ValueError(
                f"S5Cell(features={self.features}) got inputs of width {x.shape[-1]}; project "
                f"them to {self.features} first or use S5(hidden_dim=...), which does"
            )
        transition, input_gain = self.discretise()
        b = input_gain * self.input_matrix(x)  # [B, T, P/2]
        return (jnp.broadcast_to(transition, b.shape), b), x

    def read(self, states: Element, context: Context) -> jax.Array:
        return 2.0 * self.output_matrix(states[1]) + self.feedthrough * context


class S5(MemoroidTorso):
    """Pre-norm residual S5 layers of width ``hidden_dim`` with ``state_dim`` states each."""

    state_dim: int = 64

    @nn.nowrap
    def make_cell(self) -> MemoroidCell:
        return S5Cell(features=self.hidden_dim, state_dim=self.state_dim)
