"""Stateless feature networks: MLP for vectors, CNN for images. Both map any leading dims."""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Activation = Callable[[jax.Array], jax.Array]


class MLP(nn.Module):
    """Dense layers of the given widths, each followed by ``activation``: [..., F] -> [..., D]."""

    features: Sequence[int]
    activation: Activation = nn.relu
    kernel_init: Callable = nn.initializers.orthogonal(np.sqrt(2.0))

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.features:
            x = self.activation(nn.Dense(width, kernel_init=self.kernel_init)(x))
        return x


class CNN(nn.Module):
    """Convolutions (channels last, 'VALID' padding), then flattened: [..., H, W, C] -> [..., D]."""

    features: Sequence[int]
    kernel_sizes: Sequence[int]
    strides: Sequence[int]
    activation: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if not len(self.features) == len(self.kernel_sizes) == len(self.strides):
            raise ValueError(
                f"CNN needs one kernel size and stride per layer: got {len(self.features)} "
                f"features, {len(self.kernel_sizes)} kernel_sizes, {len(self.strides)} strides"
            )
        if x.ndim < 3:
            raise ValueError(f"CNN expects [..., H, W, C] images, got shape {x.shape}")
        leading = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32)
        layers = zip(self.features, self.kernel_sizes, self.strides, strict=True)
        for width, kernel, stride in layers:
            x = nn.Conv(width, (kernel, kernel), (stride, stride), padding="VALID")(x)
            x = self.activation(x)
        return x.reshape(leading + (-1,))
