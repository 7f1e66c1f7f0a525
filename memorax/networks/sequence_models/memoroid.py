"""Memoroid: a cell whose recurrence is an associative operator, run over time in O(log T) depth.

A cell says what one time step contributes (its scan *element*), how two consecutive elements
combine (an associative operator), how its carry becomes an element and how a state is read out.
``Memoroid`` adds the episode boundaries: every element carries a reset flag, and the operator
drops everything before a flagged element. So one ``jax.lax.associative_scan`` handles any reset
pattern, and T = 1 (acting) runs the same code as T = sequence (training). On a CPU the same
elements are combined by a loop instead (``Memoroid.scan``), which is faster there.
"""

from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.blocks.blocks import PreNorm, Residual, Stack
from memorax.networks.sequence_models.base import Carry, SequenceModel

Element = Any  # a pytree of arrays whose leading axes are [B, T]
Context = Any  # whatever a cell's read-out needs besides the scanned state
ComplexInit = Callable[[jax.Array, tuple[int, int]], jax.Array]
ScanMode = Literal["auto", "associative", "sequential"]


def _select(flag: jax.Array, on_true: Element, on_false: Element) -> Element:
    """Per-(row, step) choice between two elements; ``flag`` is [B, T] bool."""

    def select(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(flag.reshape(flag.shape + (1,) * (a.ndim - flag.ndim)), a, b)

    return jax.tree.map(select, on_true, on_false)


class MemoroidCell(nn.Module):
    """What a cell defines. Cells declare their parameters in ``setup`` because both
    ``elements`` and ``read`` use them."""

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        raise NotImplementedError

    @nn.nowrap
    def carry_element(self, carry: Carry) -> Element:
        """The carry as one scan element: [B, 1, ...]."""
        raise NotImplementedError

    @nn.nowrap
    def combine(self, earlier: Element, later: Element) -> Element:
        """The associative operator: the element of ``earlier`` followed by ``later``."""
        raise NotImplementedError

    def elements(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Element, Context]:
        """One element per step of x: [B, T, F], and the context the read-out needs."""
        raise NotImplementedError

    def read(self, states: Element, context: Context) -> jax.Array:
        """The outputs [B, T, features] from the scanned states (one per step)."""
        raise NotImplementedError

    @nn.nowrap
    def next_carry(self, states: Element, context: Context) -> Carry:
        raise NotImplementedError


class LinearRecurrenceCell(MemoroidCell):
    """The cells of this library: h_t = a_t * h_{t-1} + b_t, elementwise. The element is (a, b);
    (a1, b1) then (a2, b2) is (a2 * a1, a2 * b1 + b2), and the b of the running combination is
    h_t. The carry is h: [B, ...], the element of a carry is (1, h)."""

    @nn.nowrap
    def carry_element(self, carry: Carry) -> Element:
        state = carry[:, None]  # [B, 1, ...]
        return jnp.ones_like(state), state

    @nn.nowrap
    def combine(self, earlier: Element, later: Element) -> Element:
        a_earlier, b_earlier = earlier
        a_later, b_later = later
        return a_later * a_earlier, a_later * b_earlier + b_later

    @nn.nowrap
    def next_carry(self, states: Element, context: Context) -> Carry:
        return states[1][:, -1]


class Memoroid(SequenceModel):
    """Runs ``cell`` over x: [B, T, F] with a resettable associative scan. The incoming carry
    is the first element, so one call over T steps equals T one-step calls; an element flagged
    by ``reset`` starts from the initial carry and hides everything before it.

    ``scan="associative"`` combines the elements in O(log T) depth (``jax.lax.associative_scan``:
    about twice the work of a loop, in few long steps, which a GPU runs in parallel);
    ``scan="sequential"`` combines them one step after another (``jax.lax.scan``), which wins on
    a CPU, where the parallel form's extra work and shuffling cost more than its depth saves
    (S5 and LRU forward and backward 1.2-2.5x faster at T = 64 to 1024 on 2 cores). Both give
    the same states up to float rounding. ``"auto"`` (the default) is sequential where jax
    computes on a CPU and associative on an accelerator."""

    cell: MemoroidCell
    scan: ScanMode = "auto"

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return self.cell.initialize_carry(batch_size)

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        batch = x.shape[0]
        elements, context = self.cell.elements(x, reset, carry)
        # A reset step starts from the initial carry; for a zero state this changes nothing,
        # but a cell with a non-zero initial state stays correct.
        initial = self.cell.carry_element(self.cell.initialize_carry(batch))
        restarted = self.cell.combine(initial, elements)
        elements = _select(reset, restarted, elements)

        elements = jax.tree.map(
            lambda first, rest: jnp.concatenate([first.astype(rest.dtype), rest], axis=1),
            self.cell.carry_element(carry),
            elements,
        )  # [B, 1 + T, ...]
        flags = jnp.concatenate([jnp.zeros((batch, 1), bool), reset], axis=1)  # [B, 1 + T]

        scan = self.scan
        if scan == "auto":
            scan = "sequential" if jax.default_backend() == "cpu" else "associative"
        if scan == "sequential":
            states = self._sequential(elements, flags)
        elif scan == "associative":

            def operator(earlier, later):
                (element_earlier, flag_earlier), (element_later, flag_later) = earlier, later
                combined = self.cell.combine(element_earlier, element_later)
                return _select(flag_later, element_later, combined), flag_earlier | flag_later

            states, _ = jax.lax.associative_scan(operator, (elements, flags), axis=1)
        else:
            raise ValueError(
                f"scan must be 'auto', 'associative' or 'sequential', not {self.scan!r}"
            )
        states = jax.tree.map(lambda state: state[:, 1:], states)  # [B, T, ...]
        return self.cell.next_carry(states, context), self.cell.read(states, context)

    def _sequential(self, elements: Element, flags: jax.Array) -> Element:
        """The running combination of ``elements`` [B, 1 + T, ...], one step at a time; a
        flagged element restarts it."""

        def step(running: Element, inputs: tuple[Element, jax.Array]):
            element, flag = inputs  # [B, 1, ...], [B, 1]
            running = _select(flag, element, self.cell.combine(running, element))
            return running, running

        time_major = jax.tree.map(lambda x: jnp.moveaxis(x[:, 1:, None], 1, 0), elements)
        first = jax.tree.map(lambda x: x[:, :1], elements)
        _, states = jax.lax.scan(step, first, (time_major, jnp.moveaxis(flags[:, 1:, None], 1, 0)))
        return jax.tree.map(
            lambda x0, x: jnp.concatenate([x0, jnp.moveaxis(x[:, :, 0], 0, 1)], axis=1),
            first,
            states,
        )


class ComplexDense(nn.Module):
    """x @ W for a complex W: [F, features], stored as real and imaginary parts ([F, features,
    2]) so that any optimiser handles it. ``kernel_init(key, (F, features))`` gives a complex W.
    With ``real_part`` it returns Re(x @ W) alone, a real array.

    The product is one real matrix product (for a complex x, [Re x, Im x] @ [[Re W, Im W],
    [-Im W, Re W]]): on a CPU, XLA's complex matrix product, forward and backward, took about
    3x the time of the real one (6.5 ms against 2.2 ms for [5376, 64] @ [64, 32] and back)."""

    features: int
    kernel_init: ComplexInit
    real_part: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def init(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
            kernel = self.kernel_init(key, shape)
            return jnp.stack([kernel.real, kernel.imag], axis=-1)

        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        real, imag = kernel[..., 0], kernel[..., 1]
        if jnp.iscomplexobj(x):
            x = jnp.concatenate([x.real, x.imag], axis=-1)
            real, imag = jnp.concatenate([real, -imag], 0), jnp.concatenate([imag, real], 0)
        if self.real_part:
            return x @ real
        both = x @ jnp.concatenate([real, imag], axis=-1)
        return jax.lax.complex(both[..., : self.features], both[..., self.features :])


def complex_normal(scale: float) -> ComplexInit:
    """Real and imaginary parts drawn independently from N(0, scale^2 / fan_in)."""

    def init(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
        std = scale / jnp.sqrt(shape[0])
        real_key, imag_key = jax.random.split(key)
        real = std * jax.random.normal(real_key, shape)
        return jax.lax.complex(real, std * jax.random.normal(imag_key, shape))

    return init


class MemoroidTorso(SequenceModel):
    """``num_layers`` pre-norm residual Memoroid layers of width ``hidden_dim``; the input is
    projected to ``hidden_dim`` first when its width differs. Subclasses name the cell."""

    hidden_dim: int
    num_layers: int = 1
    # see Memoroid; used by the torsos whose layers are Memoroid (LRU, S5, FFM): the others
    # override make_stack with layers of their own form (Mamba has its own scan field)
    scan: ScanMode = "auto"

    @nn.nowrap
    def make_cell(self) -> MemoroidCell:
        raise NotImplementedError

    @nn.nowrap
    def make_stack(self) -> Stack:
        return Stack(
            blocks=[
                Residual(PreNorm(Memoroid(self.make_cell(), scan=self.scan)))
                for _ in range(self.num_layers)
            ]
        )

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return self.make_stack().initialize_carry(batch_size)

    def setup(self) -> None:
        if self.num_layers < 1:
            raise ValueError(f"num_layers ({self.num_layers}) must be at least 1")
        # Built in setup so that the layers' parameters nest under the stack, block by block.
        self.input_projection = nn.Dense(self.hidden_dim)
        self.stack = self.make_stack()

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        if x.shape[-1] != self.hidden_dim:
            x = self.input_projection(x)  # [B, T, hidden_dim]
        return self.stack(x, reset, carry)
