"""Checks of the sequence-model contract (docs/design.md), shared by every torso's tests.

Each check takes an unbound model and builds its own inputs, so a new torso is covered by adding
it to the parametrisation of its test file.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

TOLERANCE = 1e-5
FEATURES = 6  # input width the contract tests use


def jit(function):
    """``jax.jit`` with LLVM at optimisation level 0 (CI time): these checks compile far more
    than they run. On 2 cores a fifth of the contract tests took 62 s instead of 75-80 s at the
    suite's level 1 (tests/conftest.py), which the run-bound learning tests need (at level 0
    they ran more than twice as long). Only rounding changes, as on another CPU; the two passes
    the stepwise check compares to 1e-5 stay at the suite's level, where that allowance was
    measured (at level 0 a linear-attention carry of size 63 differed by 1.1e-5, 1.5 ulps)."""
    return jax.jit(function, compiler_options={"xla_backend_optimization_level": 0})


class Compiled:
    """A model whose ``init`` and ``apply`` are jitted, so the contract checks run compiled
    instead of op by op (10x faster here). Called with concrete arrays they compile at level 0
    (``jit``); called inside another transformation (a check's jit, grad or vmap), where
    compiler options may only sit on the outermost jit, they are a plain ``jax.jit``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._fast = {"init": jit(model.init), "apply": jit(model.apply)}
        self._plain = {"init": jax.jit(model.init), "apply": jax.jit(model.apply)}

    def _call(self, method: str, args: tuple, kwargs: dict):
        leaves = jax.tree.leaves((args, kwargs))
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)
        return (self._plain if traced else self._fast)[method](*args, **kwargs)

    def init(self, *args, **kwargs):
        return self._call("init", args, kwargs)

    def apply(self, *args, **kwargs):
        return self._call("apply", args, kwargs)

    def initialize_carry(self, batch_size: int):
        return self.model.initialize_carry(batch_size)


# Reset patterns over T = 12 steps for B = 3 rows: at t = 0, mid-sequence, consecutive, none.
RESET_PATTERNS = {
    "none": [[]] * 3,
    "first_step": [[0], [0], [0]],
    "mid_sequence": [[5], [7], []],
    "consecutive": [[3, 4, 5], [0, 1], [11]],
    "mixed": [[0, 6], [2, 3, 9], [10, 11]],
}


def reset_mask(steps_per_row: list[list[int]], length: int) -> jax.Array:
    mask = np.zeros((len(steps_per_row), length), dtype=bool)
    for row, steps in enumerate(steps_per_row):
        mask[row, steps] = True
    return jnp.asarray(mask)


def inputs(key: jax.Array, batch: int, length: int, features: int) -> jax.Array:
    return jax.random.normal(key, (batch, length, features))


def causal_conv_step(window: list, u: np.ndarray, start: np.ndarray, weight) -> tuple:
    """One step of a short causal depthwise convolution (xLSTM's, DeltaNet's) in
    numpy, written from the papers for the float64 references: sum_k w_k u_{t-K+1+k} over the
    inputs of the current episode only. ``window`` is the K - 1 inputs before this one (each
    [B, C], oldest first); rows that start an episode here (``start``) drop theirs. Returns the
    output and the window to carry to the next step."""
    window = [np.where(start[:, None], 0.0, old) for old in window] + [u]
    output = sum(w * v for w, v in zip(weight, window, strict=True))
    return output, window[1:]


def compiled(model: nn.Module | Compiled) -> Compiled:
    return model if isinstance(model, Compiled) else Compiled(model)


def init_params(model: nn.Module | Compiled, x: jax.Array, reset: jax.Array, seed: int = 0):
    """``model``'s parameters, initialised compiled (CI time: a flax init op by op compiles
    every op on its own, hundreds of small programs for a layer)."""
    model = compiled(model)
    carry = model.initialize_carry(x.shape[0])
    return model.init(jax.random.key(seed), x, reset, carry)


def warm_carry(model: nn.Module | Compiled, params, batch: int, features: int):
    """A carry far from the initial one, so a reset that fails to clear it shows (computed
    compiled, as ``init_params``)."""
    model = compiled(model)
    x = 3.0 * inputs(jax.random.key(99), batch, 7, features)
    carry, _ = model.apply(params, x, jnp.zeros((batch, 7), bool), model.initialize_carry(batch))
    return carry


def run_stepwise(model: nn.Module, params, x: jax.Array, reset: jax.Array, carry):
    """T one-step calls threading the carry: the acting path, written as a plain loop."""
    apply = jax.jit(model.apply)  # compiled once for T = 1, reused at every step
    outputs = []
    for t in range(x.shape[1]):
        carry, y = apply(params, x[:, t : t + 1], reset[:, t : t + 1], carry)
        outputs.append(y)
    return carry, jnp.concatenate(outputs, axis=1)


def max_abs_diff(a, b) -> float:
    leaves = jax.tree.leaves(jax.tree.map(lambda u, v: jnp.max(jnp.abs(u - v)), a, b))
    return float(max(leaves)) if leaves else 0.0


def check_parallel_equals_stepwise(
    model: nn.Module,
    features: int,
    reset: jax.Array,
    tolerance: float = TOLERANCE,
    group: int | None = None,
) -> None:
    """With ``group``, the inputs and the warm carry are drawn for that many rows and repeated
    down the batch: reset patterns stacked in one batch each see what they would see alone."""
    batch, length = reset.shape
    rows = group or batch

    def repeat(a: jax.Array) -> jax.Array:
        return jnp.concatenate([a] * (batch // rows), axis=0)

    x = repeat(inputs(jax.random.key(1), rows, length, features))
    params = init_params(model, x, reset)
    carry = jax.tree.map(repeat, warm_carry(model, params, rows, features))
    parallel_carry, parallel = jax.jit(model.apply)(params, x, reset, carry)
    stepwise_carry, stepwise = run_stepwise(model, params, x, reset, carry)
    per_row = jnp.max(jnp.abs(parallel - stepwise), axis=(1, 2))  # which rows differ, if any
    assert max_abs_diff(parallel, stepwise) <= tolerance, per_row
    assert max_abs_diff(parallel_carry, stepwise_carry) <= tolerance


# The reset, batch and transform checks draw their inputs at one shape, so each model's init
# and apply are compiled once for the three of them (CI time), and the reset check's warm carry
# is the stepwise check's (3 rows, 7 steps): the test run's compilation cache has it already.
ROWS, LENGTH = 3, 8


def check_reset_isolation(model: nn.Module, features: int, at: int = 4) -> None:
    """With a reset at step ``at`` in row 0, its outputs from ``at`` on ignore earlier inputs and
    the incoming carry (zero gradient); row 1 has no reset and must depend on them."""
    reset = jnp.zeros((ROWS, LENGTH), bool).at[0, at].set(True)
    x = inputs(jax.random.key(2), ROWS, LENGTH, features)
    params = init_params(model, x, reset)
    carry = warm_carry(model, params, ROWS, features)

    def later_outputs(x, carry):
        _, y = model.apply(params, x, reset, carry)
        return jnp.sum(y[:, at:] ** 2, axis=(1, 2))  # [B]

    # One compiled program for the whole jacobian, which the test process's compilation cache
    # can hold (tests/conftest.py), rather than the transformation applied op by op.
    grad_x, grad_carry = jit(jax.jacrev(later_outputs, argnums=(0, 1)))(x, carry)
    assert float(jnp.max(jnp.abs(grad_x[0][:, :at]))) == 0.0, "reset leaked earlier inputs"
    for leaf in jax.tree.leaves(grad_carry):
        assert float(jnp.max(jnp.abs(leaf[0]))) == 0.0, "reset leaked the incoming carry"
    # The control row: without a reset, history must matter (else this check proves nothing).
    assert float(jnp.max(jnp.abs(grad_x[1][:, :at]))) > 0.0


def check_batch_independence(model: nn.Module, features: int) -> None:
    reset = reset_mask(RESET_PATTERNS["mixed"], 12)[:, :LENGTH]
    x = inputs(jax.random.key(3), ROWS, LENGTH, features)
    params = init_params(model, x, reset)
    carry = model.initialize_carry(ROWS)
    _, y = model.apply(params, x, reset, carry)
    _, y_perturbed = model.apply(params, x.at[1].add(5.0), reset, carry)
    np.testing.assert_array_equal(np.asarray(y[0]), np.asarray(y_perturbed[0]))
    np.testing.assert_array_equal(np.asarray(y[2]), np.asarray(y_perturbed[2]))
    assert float(jnp.max(jnp.abs(y[1] - y_perturbed[1]))) > 0.0


def check_transforms(model: nn.Module, features: int) -> None:
    """jit, vmap (over an extra leading axis) and grad give finite values equal to plain calls."""
    reset = reset_mask(RESET_PATTERNS["mixed"], 12)[:, :LENGTH]
    x = inputs(jax.random.key(4), ROWS, LENGTH, features)
    params = init_params(model, x, reset)
    carry = model.initialize_carry(ROWS)
    _, y = model.apply(params, x, reset, carry)
    _, y_jit = jit(model.apply)(params, x, reset, carry)
    assert max_abs_diff(y, y_jit) <= TOLERANCE

    stacked_x = jnp.stack([x, 2.0 * x])
    vmapped = jit(jax.vmap(model.apply, in_axes=(None, 0, None, None)))
    _, y_vmap = vmapped(params, stacked_x, reset, carry)
    _, y_double = model.apply(params, 2.0 * x, reset, carry)
    assert max_abs_diff(y_vmap[0], y) <= TOLERANCE
    assert max_abs_diff(y_vmap[1], y_double) <= TOLERANCE

    def loss(params):
        return jnp.mean(model.apply(params, x, reset, carry)[1] ** 2)

    grads = jit(jax.grad(loss))(params)  # as training takes it: under jit
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0.0 for g in leaves)
