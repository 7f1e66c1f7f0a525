"""Memoroid torsos (LRU, S5, Mamba): each cell's associative scan against a step-by-step
recurrence written here from the cell's parameters alone (the contract checks run in
test_contract.py over MEMOROID_TORSOS)."""

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.networks import LRUCell, MambaCell, Memoroid, S5Cell, SequenceModel
from memorax.networks.sequence_models import LRU, S5, FFMCell, Mamba, MambaLayer
from memorax.networks.sequence_models.s5 import hippo_n_eigen
from tests import sequence_contract as contract

FEATURES = contract.FEATURES
LONG_LENGTH = 2048
# float32 over 2048 steps, the scan summing the same terms as the loop in another order. Measured
# on CPU with outputs of size ~5: 6e-6 for the LRU with |lambda| near 1, <= 1e-6 for the others.
LONG_TOLERANCE = 2e-5


# Built once: a shared instance keeps its compiled functions from one test to the next.
MEMOROID_TORSOS = {
    # The cells under the associative scan; the torsos below take the default, "auto"
    # (sequential on a CPU), so the contract holds both.
    "lru_cell": contract.Compiled(
        Memoroid(LRUCell(features=FEATURES, state_dim=8), scan="associative")
    ),
    "s5_cell": contract.Compiled(
        Memoroid(S5Cell(features=FEATURES, state_dim=8), scan="associative")
    ),
    "mamba_cell": contract.Compiled(
        Memoroid(MambaCell(features=8, state_dim=4), scan="associative")
    ),
    # The chunked selective scan (the torso's default); chunks of 5 do not divide T = 12.
    "mamba_chunked": contract.Compiled(
        MambaLayer(MambaCell(features=8, state_dim=4), chunk_size=5)
    ),
    "lru_2_layers": contract.Compiled(LRU(hidden_dim=8, state_dim=8, num_layers=2)),
    "s5_2_layers": contract.Compiled(S5(hidden_dim=8, state_dim=8, num_layers=2)),
    "mamba_2_layers": contract.Compiled(Mamba(hidden_dim=8, state_dim=4, num_layers=2)),
}


def test_documented_constructors():
    """The docs' snippets: a SequenceModel each, whose carry and output have the right shapes
    (input width 5, so the projection to hidden_dim is in play, as in the 2-layer torsos)."""
    x, reset = jnp.ones((2, 3, 5)), jnp.zeros((2, 3), bool)
    for model in [
        Memoroid(cell=MambaCell(features=64)),
        Mamba(hidden_dim=64),
        S5(hidden_dim=64, state_dim=64),
        LRU(hidden_dim=64),
        Mamba(hidden_dim=64, num_layers=3),
    ]:
        assert isinstance(model, SequenceModel)
        carry = model.initialize_carry(2)
        params = jax.eval_shape(model.init, jax.random.key(0), x, reset, carry)
        new_carry, y = jax.eval_shape(model.apply, params, x, reset, carry)
        assert y.shape == (2, 3, 64)
        assert jax.tree.map(lambda a: a.shape, new_carry) == jax.tree.map(jnp.shape, carry)


def test_cells_reject_a_width_they_cannot_feed_through():
    with pytest.raises(ValueError, match="project"):
        contract.init_params(
            Memoroid(LRUCell(features=4)), jnp.ones((1, 2, 3)), jnp.zeros((1, 2), bool)
        )


# Independent references: the recurrence h_t = a_t * h_{t-1} + b_t stepped in a Python loop with
# explicit zeroing at resets, a_t and b_t computed here from the cell's raw parameters.


def _reference_inputs(features: int):
    reset = contract.reset_mask([[0, 5], [3, 4], []], 12)
    x = contract.inputs(jax.random.key(11), 3, 12, features)
    return x, reset


def _complex_kernel(params) -> jax.Array:
    return params["kernel"][..., 0] + 1j * params["kernel"][..., 1]


@jax.jit
def _linear_recurrence(a: jax.Array, b: jax.Array, reset: jax.Array, h: jax.Array) -> jax.Array:
    """a: [N] or [B, T, N], b: [B, T, N], h: [B, N] -> the states [B, T, N]."""
    a = jnp.broadcast_to(a, b.shape)
    states = []
    for t in range(reset.shape[1]):
        h = jnp.where(reset[:, t, None], 0.0, h)
        h = a[:, t] * h + b[:, t]
        states.append(h)
    return jnp.stack(states, axis=1)  # [B, T, N]


SCANS = ("associative", "sequential")


@pytest.mark.parametrize("scan", SCANS)
def test_lru_scan_matches_recurrence(scan):
    model = contract.Compiled(Memoroid(LRUCell(features=FEATURES, state_dim=8), scan=scan))
    x, reset = _reference_inputs(FEATURES)
    params = contract.init_params(model, x, reset)
    p = params["params"]["cell"]
    eigenvalues = jnp.exp(-jnp.exp(p["nu_log"]) + 1j * jnp.exp(p["theta_log"]))
    assert bool(jnp.all(jnp.abs(eigenvalues) < 1.0))
    b = jnp.exp(p["gamma_log"]) * (x @ _complex_kernel(p["B"]))  # [B, T, N]
    h0 = contract.warm_carry(model, params, 3, FEATURES)
    states = _linear_recurrence(eigenvalues, b, reset, h0)
    expected = (states @ _complex_kernel(p["C"])).real + p["D"] * x
    carry, y = model.apply(params, x, reset, h0)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    np.testing.assert_allclose(carry, states[:, -1], atol=1e-5)


@pytest.mark.parametrize("scan", SCANS)
def test_s5_scan_matches_zoh_recurrence(scan):
    model = contract.Compiled(Memoroid(S5Cell(features=FEATURES, state_dim=8), scan=scan))
    x, reset = _reference_inputs(FEATURES)
    params = contract.init_params(model, x, reset)
    p = params["params"]["cell"]
    eigenvalues = -jnp.exp(p["lambda_real_log"]) + 1j * p["lambda_imag"]
    transition = jnp.exp(eigenvalues * jnp.exp(p["log_step"]))  # zero-order hold
    b = (transition - 1.0) / eigenvalues * (x @ _complex_kernel(p["B"]))
    h0 = contract.warm_carry(model, params, 3, FEATURES)
    states = _linear_recurrence(transition, b, reset, h0)
    expected = 2.0 * (states @ _complex_kernel(p["C"])).real + p["D"] * x
    carry, y = model.apply(params, x, reset, h0)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    np.testing.assert_allclose(carry, states[:, -1], atol=1e-5)


@pytest.mark.parametrize(
    "cell",
    [
        LRUCell(features=FEATURES, state_dim=8),
        S5Cell(features=FEATURES, state_dim=8),
        MambaCell(features=8, state_dim=4),
        FFMCell(features=FEATURES, memory_size=3, context_size=2),
    ],
    ids=["lru", "s5", "mamba", "ffm"],
)
def test_sequential_scan_equals_associative(cell):
    """Both scans of a cell: the same outputs, next carry and gradients (of the parameters, the
    inputs and the incoming carry), from a warm carry across resets."""
    x, reset = _reference_inputs(FEATURES)
    models = {scan: Memoroid(cell, scan=scan) for scan in SCANS}
    params = contract.init_params(models["associative"], x, reset)
    carry = contract.warm_carry(models["associative"], params, 3, FEATURES)

    def loss(model, params, x, carry):
        new_carry, y = model.apply(params, x, reset, carry)
        leaves = jax.tree.leaves((new_carry, y))
        return sum(jnp.sum(jnp.abs(leaf) * jnp.cos(jnp.arange(leaf.size).reshape(leaf.shape)))
                   for leaf in leaves), (new_carry, y)  # fmt: skip

    results = {
        scan: jax.jit(jax.grad(partial(loss, model), argnums=(0, 1, 2), has_aux=True))(
            params, x, carry
        )
        for scan, model in models.items()
    }
    (grads, outputs), (grads_seq, outputs_seq) = results["associative"], results["sequential"]
    for expected, got in zip(
        jax.tree.leaves((outputs, grads)), jax.tree.leaves((outputs_seq, grads_seq)), strict=True
    ):
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_auto_scan_is_sequential_on_a_cpu():
    x, reset = _reference_inputs(FEATURES)
    carry = jnp.zeros((3, 4), jnp.complex64)
    params = contract.init_params(Memoroid(S5Cell(features=FEATURES, state_dim=8)), x, reset)

    def jaxpr(scan):
        model = Memoroid(S5Cell(features=FEATURES, state_dim=8), scan=scan)
        return str(jax.make_jaxpr(model.apply)(params, x, reset, carry))

    assert "scan[" in jaxpr("sequential") and "scan[" not in jaxpr("associative")
    assert jaxpr("auto") == jaxpr("sequential" if jax.default_backend() == "cpu" else "associative")
    with pytest.raises(ValueError, match="scan must be 'auto', 'associative' or 'sequential'"):
        jaxpr("parallel")


@partial(jax.jit, static_argnames=("state_dim", "rank"))
def _mamba_reference(p, x, reset, state, window, state_dim: int, rank: int):
    """Mamba stepped one input at a time: the conv window is a list that a reset empties."""

    def dense(params, v):
        return v @ params["kernel"] + params.get("bias", 0.0)

    outputs = []
    for t in range(x.shape[1]):
        keep = ~reset[:, t, None]
        state = jnp.where(keep[..., None], state, 0.0)
        window = jnp.where(keep[..., None], window, 0.0)
        u, z = jnp.split(dense(p["in_proj"], x[:, t]), 2, axis=-1)  # [B, E]
        taps = jnp.concatenate([window, u[:, None]], axis=1)  # [B, K, E], oldest first
        window = taps[:, 1:]
        u = nn.silu(jnp.sum(taps * p["conv_weight"], axis=1) + p["conv_bias"])
        projected = u @ p["x_proj"]["kernel"]
        dt = nn.softplus(dense(p["dt_proj"], projected[:, :rank]))  # [B, E]
        input_b, output_c = projected[:, rank : rank + state_dim], projected[:, rank + state_dim :]
        a = jnp.exp(dt[..., None] * -jnp.exp(p["A_log"]))  # [B, E, N]
        state = a * state + (dt * u)[..., None] * input_b[:, None, :]
        y = jnp.sum(state * output_c[:, None, :], axis=-1) + p["D"] * u
        outputs.append(dense(p["out_proj"], y * nn.silu(z)))
    return (state, window), jnp.stack(outputs, axis=1)


@pytest.mark.parametrize("name", ["mamba_cell", "mamba_chunked"])
def test_mamba_scan_matches_recurrence(name):
    model = MEMOROID_TORSOS[name]
    x, reset = _reference_inputs(FEATURES)
    params = contract.init_params(model, x, reset)
    carry = contract.warm_carry(model, params, 3, FEATURES)
    assert float(jnp.max(jnp.abs(carry[1]))) > 0.0  # a window that a missed reset would leak
    expected_carry, expected = _mamba_reference(
        params["params"]["cell"], x, reset, *carry, state_dim=4, rank=model.model.cell.rank
    )
    actual_carry, y = model.apply(params, x, reset, carry)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert contract.max_abs_diff(actual_carry, expected_carry) <= 1e-5


def test_mamba_chunked_gradient_equals_autodiff_of_the_associative_scan():
    """The chunked scan's hand-written backward pass against jax's autodiff of the associative
    form, from a warm carry through resets, with chunks that do not divide T; every parameter,
    the input and the incoming carry."""
    cell = MambaCell(features=8, state_dim=4)
    chunked, associative = MambaLayer(cell, chunk_size=4), MambaLayer(cell, scan="associative")
    x, reset = _reference_inputs(FEATURES)
    params = contract.init_params(associative, x, reset)
    carry = contract.warm_carry(associative, params, 3, FEATURES)
    weights = jax.random.normal(jax.random.key(16), (3, 12, 8))

    def loss(model):
        def value(params, x, carry):
            new_carry, y = model.apply(params, x, reset, carry)
            return jnp.sum(weights * y) + jnp.sum(new_carry[0] ** 2)

        return jax.jit(jax.grad(value, argnums=(0, 1, 2)))(params, x, carry)

    expected, actual = loss(associative), loss(chunked)
    for path, want in jax.tree_util.tree_leaves_with_path(expected):
        got = jax.tree_util.tree_flatten_with_path(actual)[0]
        got = dict(got)[path]
        scale = float(jnp.max(jnp.abs(want)))
        assert scale > 0.0, path  # every gradient is exercised
        np.testing.assert_allclose(got, want, atol=1e-5 * max(scale, 1.0), err_msg=str(path))


def test_mamba_scan_flag_is_checked():
    with pytest.raises(ValueError, match="scan must be 'chunked' or 'associative'"):
        contract.init_params(
            MambaLayer(MambaCell(features=8), scan="parallel"),
            jnp.ones((1, 2, 8)),
            jnp.zeros((1, 2), bool),
        )


def test_mamba_conv_window_is_cleared_on_reset():
    """The conv reads no input from before a reset, inside a call or from the carried window."""
    cell = MambaCell(features=4, state_dim=2, conv_kernel=4)
    model = contract.Compiled(Memoroid(cell))
    x = contract.inputs(jax.random.key(12), 1, 8, 4)
    reset = jnp.zeros((1, 8), bool).at[0, jnp.array([0, 5])].set(True)
    params = contract.init_params(model, x, reset)
    cell_params = {"params": params["params"]["cell"]}
    weight, bias = cell_params["params"]["conv_weight"], cell_params["params"]["conv_bias"]
    u = jax.random.normal(jax.random.key(13), (1, 8, cell.channels))
    stale = 100.0 * jnp.ones((1, 3, cell.channels))  # inputs of the episode before step 0
    conv = jax.jit(partial(cell.apply, method=MambaCell.causal_conv))
    output, window = conv(cell_params, u, reset, stale)
    for t in range(8):
        start = 0 if t < 5 else 5  # the first step of t's episode
        expected = bias + sum(weight[3 - lag] * u[0, t - lag] for lag in range(t - start + 1)[:4])
        np.testing.assert_allclose(output[0, t], expected, atol=1e-5)
    np.testing.assert_allclose(window[0], u[0, 5:8], atol=0.0)  # all from the last episode

    # A reset on the last step keeps only that step's input in the window for the next call.
    last_reset = jnp.zeros((1, 8), bool).at[0, 7].set(True)
    _, window = conv(cell_params, u, last_reset, stale)
    np.testing.assert_array_equal(window[0, :2], 0.0)
    np.testing.assert_array_equal(window[0, 2], u[0, 7])


def test_initialisations():
    """LRU eigenvalues start on the ring; S5 starts at HiPPO-N's eigenvalues (real part -1/2)."""
    lru = LRUCell(features=4, state_dim=256, r_min=0.5, r_max=0.8, max_phase=1.0)
    params = contract.init_params(Memoroid(lru), jnp.ones((1, 2, 4)), jnp.zeros((1, 2), bool))
    p = params["params"]["cell"]
    radius, phase = jnp.exp(-jnp.exp(p["nu_log"])), jnp.exp(p["theta_log"])
    assert float(radius.min()) >= 0.5 and float(radius.max()) <= 0.8
    assert float(phase.min()) >= 0.0 and float(phase.max()) <= 1.0

    eigenvalues, vectors = hippo_n_eigen(8)
    np.testing.assert_allclose(eigenvalues.real, -0.5)
    assert np.all(eigenvalues.imag > 0.0)
    n = np.arange(8)
    legs = -np.sqrt(np.outer(2 * n + 1, 2 * n + 1)) * (n[:, None] > n) - np.diag(n + 1)
    hippo_n = legs + np.outer(np.sqrt(n + 0.5), np.sqrt(n + 0.5))
    np.testing.assert_allclose(hippo_n @ vectors, vectors * eigenvalues, atol=1e-6)


def stepwise_scan(model: nn.Module):
    """T one-step calls threading the carry, as one jitted lax.scan (for long sequences)."""

    @jax.jit
    def run(params, x, reset, carry):
        def step(carry, inputs):
            x_t, reset_t = inputs  # [B, F], [B]
            carry, y = model.apply(params, x_t[:, None], reset_t[:, None], carry)
            return carry, y[:, 0]

        carry, y = jax.lax.scan(step, carry, (x.swapaxes(0, 1), reset.swapaxes(0, 1)))
        return carry, y.swapaxes(0, 1)

    return run


def check_long_sequence(model: nn.Module, features: int) -> None:
    """T = 2048 with sparse resets: finite, and the parallel pass equals the stepwise one."""
    reset = jax.random.bernoulli(jax.random.key(14), 0.002, (2, LONG_LENGTH)).at[1].set(False)
    x = contract.inputs(jax.random.key(15), 2, LONG_LENGTH, features)
    carry = model.initialize_carry(2)
    params = jax.jit(model.init)(jax.random.key(0), x[:, :4], reset[:, :4], carry)
    parallel_carry, parallel = jax.jit(model.apply)(params, x, reset, carry)
    stepwise_carry, stepwise = stepwise_scan(model)(params, x, reset, carry)
    assert bool(jnp.all(jnp.isfinite(parallel)))
    assert contract.max_abs_diff(parallel, stepwise) <= LONG_TOLERANCE
    assert contract.max_abs_diff(parallel_carry, stepwise_carry) <= LONG_TOLERANCE


@pytest.mark.parametrize(
    "cell",
    [
        LRUCell(features=FEATURES, state_dim=8, r_min=0.99, r_max=0.9999),  # long memory
        S5Cell(features=FEATURES, state_dim=8),
        MambaCell(features=8, state_dim=4),
        "mamba_chunked",
    ],
    ids=["lru", "s5", "mamba", "mamba_chunked"],
)
def test_long_sequence(cell):
    if cell == "mamba_chunked":
        model = MambaLayer(MambaCell(features=8, state_dim=4), chunk_size=64)
    else:
        model = Memoroid(cell)
    check_long_sequence(model, FEATURES)
