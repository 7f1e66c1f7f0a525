"""Heads: map torso features [..., F] to what an RL objective needs (distributions or values)."""

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale))


def _log_std(x: jax.Array, action_dim: int) -> jax.Array:
    """State-dependent log standard deviation, squashed smoothly into [LOG_STD_MIN, LOG_STD_MAX]."""
    raw = _dense(action_dim, 0.01)(x)
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)


class Categorical(nn.Module):
    """Categorical policy over ``action_dim`` discrete actions; greedy action = ``dist.mode()``."""

    action_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> distrax.Categorical:
        return distrax.Categorical(logits=_dense(self.action_dim, 0.01)(x))


class Gaussian(nn.Module):
    """Diagonal Gaussian policy with a state-dependent log-std (unbounded actions)."""

    action_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> distrax.MultivariateNormalDiag:
        mean = _dense(self.action_dim, 0.01)(x)
        return distrax.MultivariateNormalDiag(mean, jnp.exp(_log_std(x, self.action_dim)))


class SquashedGaussianDistribution(distrax.Transformed):
    """A Gaussian pushed through tanh and rescaled to [low, high].

    ``log_prob`` includes the change-of-variables correction (distrax's bijector log-det);
    ``mode()`` is the squashed mean, the deterministic action used for evaluation.
    """

    def mode(self) -> jax.Array:
        return self.bijector.forward(self.distribution.mode())


class SquashedGaussian(nn.Module):
    """Tanh-squashed Gaussian policy (SAC) whose actions lie in [action_low, action_high],
    after optional ReLU layers of widths ``features`` (a linear memory such as S5 gives the
    policy no nonlinearity of its own)."""

    action_dim: int
    action_low: float | Sequence[float] = -1.0
    action_high: float | Sequence[float] = 1.0
    features: Sequence[int] = ()

    @nn.compact
    def __call__(self, x: jax.Array) -> SquashedGaussianDistribution:
        for width in self.features:
            x = nn.relu(_dense(width, np.sqrt(2.0))(x))
        low = jnp.broadcast_to(jnp.asarray(self.action_low, jnp.float32), (self.action_dim,))
        high = jnp.broadcast_to(jnp.asarray(self.action_high, jnp.float32), (self.action_dim,))
        mean = _dense(self.action_dim, 0.01)(x)
        base = distrax.MultivariateNormalDiag(mean, jnp.exp(_log_std(x, self.action_dim)))
        # Chain applies right to left: tanh into (-1, 1), then the affine map onto (low, high).
        squash = distrax.Chain(
            [distrax.ScalarAffine(shift=(high + low) / 2, scale=(high - low) / 2), distrax.Tanh()]
        )
        return SquashedGaussianDistribution(base, distrax.Block(squash, ndims=1))


class VNetwork(nn.Module):
    """State value: [..., F] -> [...]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _dense(1, 1.0)(x)[..., 0]


class DiscreteQNetwork(nn.Module):
    """One Q-value per discrete action: [..., F] -> [..., action_dim], after optional ReLU
    layers of widths ``features`` (they let a bounded torso output, a GRU's, say, reach large
    values quickly)."""

    action_dim: int
    features: Sequence[int] = ()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.features:
            x = nn.relu(_dense(width, np.sqrt(2.0))(x))
        return _dense(self.action_dim, 1.0)(x)


class ContinuousQNetwork(nn.Module):
    """Q(s, a) for continuous actions: the action joins the features before hidden layers."""

    features: Sequence[int] = (256,)

    @nn.compact
    def __call__(self, x: jax.Array, action: jax.Array) -> jax.Array:
        h = jnp.concatenate([x, action.astype(x.dtype)], axis=-1)
        for width in self.features:
            h = nn.relu(_dense(width, np.sqrt(2.0))(h))
        return _dense(1, 1.0)(h)[..., 0]
