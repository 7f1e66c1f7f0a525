"""The sequence-model contract that every torso obeys (see docs/design.md).

    carry = model.initialize_carry(batch_size)        # pytree, leading axis = batch
    carry, y = model.apply(params, x, reset, carry)    # x: [B, T, F], reset: [B, T] bool

``reset[b, t]`` is True when step t is the first step of a new episode: the carry is replaced by
the initial carry before ``x[b, t]`` is read. One call over T steps equals T one-step calls that
thread the carry.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Carry = Any


class SequenceModel(nn.Module):
    """Base class of the modules that obey the contract natively."""

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        raise NotImplementedError

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        raise NotImplementedError


class HoistedCell(nn.RNNCellBase):
    """A recurrent cell split in two: ``project``, position-wise, reads the input; ``recur`` steps
    the carry from a projected input. ``RNN`` runs ``project`` over the whole sequence as one
    matmul before the time loop and only ``recur`` inside it; called as a flax cell, one step is
    ``recur(carry, project(x))``. The carry is zeros of shape [..., features]; a cell with another
    carry overrides ``initialize_carry``."""

    features: int

    def project(self, inputs: jax.Array) -> jax.Array:
        raise NotImplementedError

    def recur(self, carry: Carry, projected: jax.Array) -> tuple[Carry, jax.Array]:
        raise NotImplementedError

    def __call__(self, carry: Carry, inputs: jax.Array) -> tuple[Carry, jax.Array]:
        return self.recur(carry, self.project(inputs))

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Carry:
        return jnp.zeros(input_shape[:-1] + (self.features,))

    @property
    def num_feature_axes(self) -> int:
        return 1


def reset_carry(reset: jax.Array, carry: Carry, initial_carry: Carry) -> Carry:
    """Replace the rows of ``carry`` whose ``reset`` ([B] bool) is True by ``initial_carry``."""

    def select(initial: jax.Array, current: jax.Array) -> jax.Array:
        mask = reset.reshape(reset.shape + (1,) * (current.ndim - reset.ndim))
        return jnp.where(mask, initial, current)

    return jax.tree.map(select, initial_carry, carry)


def initialize_carry_of(module: nn.Module, batch_size: int) -> Carry:
    """The initial carry of any module: its own if it obeys the contract, else an empty one."""
    if isinstance(module, SequenceModel):
        return module.initialize_carry(batch_size)
    return ()


def apply_sequence_model(
    module: nn.Module, x: jax.Array, reset: jax.Array, carry: Carry
) -> tuple[Carry, jax.Array]:
    """Call ``module`` under the contract; a stateless module maps x step-wise with no carry."""
    if isinstance(module, SequenceModel):
        return module(x, reset, carry)
    return carry, module(x)


class SequenceModelWrapper(SequenceModel):
    """Lifts a stateless module (an ``MLP``, say) into the contract with an empty carry.

    Wrapping a module that already obeys the contract changes nothing: calls pass straight through.
    """

    module: nn.Module

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return initialize_carry_of(self.module, batch_size)

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        return apply_sequence_model(self.module, x, reset, carry)
