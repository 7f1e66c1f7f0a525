"""Stack, PreNorm, Residual and FFN: composable pieces for GPT/GTrXL-style torsos.

Each block takes any member module: one that obeys the contract keeps its carry, a stateless one
is applied step-wise with an empty carry.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

from memorax.networks.sequence_models.base import (
    Carry,
    SequenceModel,
    apply_sequence_model,
    initialize_carry_of,
)


class Stack(SequenceModel):
    """Applies ``blocks`` in order; the carry is the tuple of the members' carries."""

    blocks: Sequence[nn.Module]

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return tuple(initialize_carry_of(block, batch_size) for block in self.blocks)

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        new_carry = []
        for block, block_carry in zip(self.blocks, carry, strict=True):
            block_carry, x = apply_sequence_model(block, x, reset, block_carry)
            new_carry.append(block_carry)
        return tuple(new_carry), x


class PreNorm(SequenceModel):
    """Layer-normalises the input, then applies ``module``."""

    module: nn.Module

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return initialize_carry_of(self.module, batch_size)

    @nn.compact
    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        return apply_sequence_model(self.module, nn.LayerNorm()(x), reset, carry)


class Residual(SequenceModel):
    """Adds the input to ``module``'s output (which must keep the feature size)."""

    module: nn.Module

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return initialize_carry_of(self.module, batch_size)

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        carry, y = apply_sequence_model(self.module, x, reset, carry)
        if y.shape != x.shape:
            raise ValueError(
                f"Residual needs a module that keeps the shape of its input: got {x.shape} in and "
                f"{y.shape} out; make the module's output size {x.shape[-1]}"
            )
        return carry, x + y


class FFN(SequenceModel):
    """Position-wise feed-forward layer: Dense(hidden_dim) -> GELU -> Dense(input size)."""

    hidden_dim: int

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return ()

    @nn.compact
    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        hidden = nn.gelu(nn.Dense(self.hidden_dim)(x))
        return carry, nn.Dense(x.shape[-1])(hidden)
