"""RNN torsos, the wrapper and the blocks against independent references (the contract checks
run in test_contract.py over RNN_TORSOS)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memorax.networks import (
    MLP,
    RNN,
    ElmanCell,
    FusedGRUCell,
    FusedLSTMCell,
    HoistedCell,
    MGUCell,
    SequenceModelWrapper,
)
from memorax.networks.blocks import FFN, PreNorm, Residual, Stack
from tests import sequence_contract as contract

FEATURES = contract.FEATURES

# Built once: a shared instance keeps its compiled functions from one test to the next.
RNN_TORSOS = {
    "gru": contract.Compiled(RNN(nn.GRUCell(features=8))),
    "fused_gru": contract.Compiled(RNN(FusedGRUCell(features=8))),
    "lstm": contract.Compiled(RNN(nn.LSTMCell(features=8))),
    "optimized_lstm": contract.Compiled(RNN(nn.OptimizedLSTMCell(features=8))),
    "fused_lstm": contract.Compiled(RNN(FusedLSTMCell(features=8))),
    "mgu": contract.Compiled(RNN(MGUCell(features=8))),
    "elman": contract.Compiled(RNN(ElmanCell(features=8))),
    "wrapped_gru": contract.Compiled(SequenceModelWrapper(RNN(nn.GRUCell(features=8)))),
    "wrapped_mlp": contract.Compiled(SequenceModelWrapper(MLP(features=(8,)))),
    "stack": contract.Compiled(
        Stack(
            blocks=[
                PreNorm(Residual(RNN(nn.GRUCell(features=FEATURES)))),
                Residual(PreNorm(FFN(hidden_dim=16))),
                RNN(nn.LSTMCell(features=5)),
                MLP(features=(4,)),
            ]
        )
    ),
}


@settings(max_examples=15, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=9, max_size=9), min_size=2, max_size=2))
def test_gru_any_reset_pattern(rows):
    contract.check_parallel_equals_stepwise(RNN_TORSOS["gru"], FEATURES, jnp.asarray(rows))


def test_rnn_matches_hand_written_gru_loop():
    """Independent reference: the flax cell stepped in a Python loop with explicit zeroing."""
    cell = nn.GRUCell(features=4)
    model = RNN(cell)
    reset = contract.reset_mask([[0, 3], [2]], 6)
    x = contract.inputs(jax.random.key(5), 2, 6, 3)
    params = contract.init_params(model, x, reset)
    cell_params = {"params": params["params"]["cell"]}
    h = jnp.ones((2, 4))  # a non-initial incoming carry, cleared where reset
    _, y = model.apply(params, x, reset, h)
    expected = []
    for t in range(6):
        h = jnp.where(reset[:, t : t + 1], 0.0, h)
        h, out = cell.apply(cell_params, h, x[:, t])
        expected.append(out)
    np.testing.assert_allclose(y, jnp.stack(expected, axis=1), atol=1e-6)


def _check_same_function(flax_cell, fused_cell, gates, fused_cell_params, carry):
    """The fused cell with ``fused_cell_params`` equals the flax cell with ``gates``: over a
    sequence with resets through RNN (the fused cell hoisted) and as a plain single step."""
    reset = contract.reset_mask([[0, 3], [2]], 6)
    x = contract.inputs(jax.random.key(8), 2, 6, 3)
    expected = RNN(flax_cell).apply({"params": {"cell": gates}}, x, reset, carry)
    actual = RNN(fused_cell).apply({"params": {"cell": fused_cell_params}}, x, reset, carry)
    assert contract.max_abs_diff(expected, actual) <= 1e-6
    step = fused_cell.apply({"params": fused_cell_params}, carry, x[:, 0])
    reference = flax_cell.apply({"params": gates}, carry, x[:, 0])
    assert contract.max_abs_diff(step, reference) <= 1e-6


def test_fused_gru_computes_flax_gru():
    """Independent reference: flax's own GRUCell with the same weights, gate by gate."""
    reset = contract.reset_mask([[0, 3], [2]], 6)
    x = contract.inputs(jax.random.key(8), 2, 6, 3)
    flax_rnn, fused_rnn = RNN(nn.GRUCell(features=4)), RNN(FusedGRUCell(features=4))
    gates = contract.init_params(flax_rnn, x, reset)["params"]["cell"]

    def joined(names, part):
        return jnp.concatenate([gates[name][part] for name in names], axis=-1)

    fused_params = {
        "input_projection": {
            "kernel": joined(("ir", "iz", "in"), "kernel"),
            "bias": joined(("ir", "iz", "in"), "bias"),
        },
        "recurrent_projection": {"kernel": joined(("hr", "hz", "hn"), "kernel")},
        "recurrent_bias": gates["hn"]["bias"],
    }
    carry = jax.random.normal(jax.random.key(9), (2, 4))
    _check_same_function(flax_rnn.cell, fused_rnn.cell, gates, fused_params, carry)


def test_fused_lstm_computes_flax_lstm():
    """Independent reference: flax's own LSTMCell with the same weights, gate by gate; and the
    fused cell's initialisation draws each gate's block from flax's initialisers."""
    reset = contract.reset_mask([[0, 3], [2]], 6)
    x = contract.inputs(jax.random.key(8), 2, 6, 3)
    flax_rnn, fused_rnn = RNN(nn.LSTMCell(features=4)), RNN(FusedLSTMCell(features=4))
    gates = contract.init_params(flax_rnn, x, reset)["params"]["cell"]

    def joined(side, part):
        return jnp.concatenate([gates[f"{side}{gate}"][part] for gate in "ifgo"], axis=-1)

    fused_params = {
        "input_projection": {"kernel": joined("i", "kernel")},
        "recurrent_projection": {"kernel": joined("h", "kernel"), "bias": joined("h", "bias")},
    }
    carry = tuple(jax.random.normal(k, (2, 4)) for k in jax.random.split(jax.random.key(9)))
    _check_same_function(flax_rnn.cell, fused_rnn.cell, gates, fused_params, carry)
    # Initialisation: each gate's recurrent block is orthogonal on its own (as flax draws it),
    # not one [H, 4H] orthogonal matrix; biases start at zero.
    own = contract.init_params(fused_rnn, x, reset)["params"]["cell"]
    kernel = np.asarray(own["recurrent_projection"]["kernel"])
    for block in np.split(kernel, 4, axis=1):
        np.testing.assert_allclose(block.T @ block, np.eye(4), atol=1e-5)
    assert not np.any(np.asarray(own["recurrent_projection"]["bias"]))


@pytest.mark.parametrize(
    "ours,flax_cell", [(ElmanCell, nn.SimpleCell), (MGUCell, nn.MGUCell)], ids=["elman", "mgu"]
)
def test_hoisted_cells_are_flax_cells(ours, flax_cell):
    """Independent reference: flax's own SimpleCell and MGUCell. One key initialises both to the
    same parameters (names, shapes, values: a checkpoint of either loads into the other), and
    with them ours (input projection hoisted out of the time loop) computes flax's function."""
    reset = contract.reset_mask([[0, 3], [2]], 6)
    x = contract.inputs(jax.random.key(8), 2, 6, 3)
    theirs, hoisted = RNN(flax_cell(features=4)), RNN(ours(features=4))
    params = contract.init_params(theirs, x, reset)
    assert contract.max_abs_diff(params, contract.init_params(hoisted, x, reset)) == 0.0
    carry = jax.random.normal(jax.random.key(9), (2, 4))
    cell_params = params["params"]["cell"]
    _check_same_function(theirs.cell, hoisted.cell, cell_params, cell_params, carry)


@pytest.mark.parametrize(
    "cell,field,default",
    [
        (FusedGRUCell, "update_gate_bias", 0.0),
        (FusedLSTMCell, "forget_gate_bias", 0.0),
        (MGUCell, "forget_gate_bias", 1.0),
    ],
    ids=["gru", "lstm", "mgu"],
)
@pytest.mark.parametrize("bias", [None, 3.0], ids=["flax_default", "bias_3"])
def test_gate_bias_sets_the_fraction_of_the_carry_kept(cell, field, default, bias):
    """With every kernel at zero, a step keeps exactly sigmoid(b) of the carry (the gate's
    equation: the candidate is tanh(0) = 0), b the gate's initial bias: flax's value by default,
    the one given otherwise. Every other bias starts at zero."""
    b = default if bias is None else bias
    module = cell(features=4) if bias is None else cell(features=4, **{field: bias})
    x = jax.random.normal(jax.random.key(1), (2, 3))
    carry = module.initialize_carry(jax.random.key(0), x.shape)
    carry = jax.tree.map(lambda c: jax.random.normal(jax.random.key(2), c.shape), carry)
    params = module.init(jax.random.key(0), carry, x)
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, p: jnp.zeros_like(p) if path[-1].key == "kernel" else p, params
    )
    new_carry, _ = module.apply(zeroed, carry, x)
    kept = jax.tree.leaves(new_carry)[0]  # the LSTM's c, else the carry
    expected = jax.nn.sigmoid(b) * jax.tree.leaves(carry)[0]
    np.testing.assert_allclose(np.asarray(kept), np.asarray(expected), rtol=1e-6)
    biases = [
        leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params) if path[-1].key == "bias"
    ]
    assert sum(int(np.sum(np.asarray(leaf) != 0)) for leaf in biases) == (4 if b else 0)


PROJECTED_SHAPES = []


class LeakyCell(HoistedCell):
    """A researcher's own cell, h' = decay * h + W x + b, written as the README says: subclass
    ``HoistedCell`` with ``project`` and ``recur``."""

    decay: float = 0.5

    @nn.compact
    def project(self, inputs: jax.Array) -> jax.Array:
        PROJECTED_SHAPES.append(inputs.shape)  # at trace time
        return nn.Dense(self.features, name="input_projection")(inputs)

    def recur(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        new_carry = self.decay * carry + projected
        return new_carry, new_carry


def test_own_hoisted_cell_is_hoisted_and_reset():
    """A subclass of HoistedCell outside memorax: RNN projects the whole [B, T, F] sequence in
    one call (not one [B, F] step at a time) and equals the cell's equation in a plain loop, the
    carry zeroed at every reset."""
    reset = contract.reset_mask([[0, 3], [2]], 6)
    x = contract.inputs(jax.random.key(8), 2, 6, 3)
    cell = LeakyCell(features=4)
    params = contract.init_params(RNN(cell), x, reset)
    PROJECTED_SHAPES.clear()
    carry = jax.random.normal(jax.random.key(9), (2, 4))
    final, y = RNN(cell).apply(params, x, reset, carry)
    assert PROJECTED_SHAPES == [(2, 6, 3)]
    dense = params["params"]["cell"]["input_projection"]
    h, outputs = np.asarray(carry), []
    for t in range(6):
        h = np.where(np.asarray(reset[:, t])[:, None], 0.0, h)
        h = 0.5 * h + np.asarray(x[:, t]) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
        outputs.append(h)
    np.testing.assert_allclose(np.asarray(y), np.stack(outputs, axis=1), atol=1e-5)
    np.testing.assert_allclose(np.asarray(final), h, atol=1e-5)


def test_wrapper_changes_nothing_for_a_contract_model():
    inner = RNN(nn.GRUCell(features=8))
    reset = contract.reset_mask(contract.RESET_PATTERNS["mixed"], 12)
    x = contract.inputs(jax.random.key(6), 3, 12, FEATURES)
    params = contract.init_params(inner, x, reset)
    carry = contract.warm_carry(inner, params, 3, FEATURES)
    wrapped = SequenceModelWrapper(inner)
    wrapped_params = {"params": {"module": params["params"]}}
    assert contract.max_abs_diff(wrapped.initialize_carry(3), inner.initialize_carry(3)) == 0.0
    expected = inner.apply(params, x, reset, carry)
    actual = wrapped.apply(wrapped_params, x, reset, carry)
    assert contract.max_abs_diff(expected, actual) == 0.0


def test_wrapped_stateless_module_is_stepwise_and_keeps_no_carry():
    mlp = MLP(features=(8,))
    wrapped = SequenceModelWrapper(mlp)
    x = contract.inputs(jax.random.key(7), 3, 5, FEATURES)
    reset = jnp.zeros((3, 5), bool)
    params = contract.init_params(wrapped, x, reset)
    carry, y = wrapped.apply(params, x, reset, wrapped.initialize_carry(3))
    assert carry == ()
    expected = mlp.apply({"params": params["params"]["module"]}, x)
    np.testing.assert_array_equal(y, expected)


def test_stack_carry_is_tuple_of_member_carries():
    stack = RNN_TORSOS["stack"].model
    carry = stack.initialize_carry(2)
    assert isinstance(carry, tuple) and len(carry) == 4
    assert carry[0].shape == (2, FEATURES) and carry[1] == () and carry[3] == ()
    assert isinstance(carry[2], tuple)  # the LSTM's (c, h)


def test_residual_rejects_a_shape_change():
    model = Residual(RNN(nn.GRUCell(features=FEATURES + 1)))
    with pytest.raises(ValueError, match="keeps the shape"):
        contract.init_params(model, jnp.ones((1, 3, FEATURES)), jnp.zeros((1, 3), bool))


def test_rnn_layout_benchmark_compares_one_function():
    """benchmarks/rnn_layout.py times the loop and time-major layouts against RNN's hoisted one:
    with the same weights they must compute the same outputs and carry, or the timing compares
    different work."""
    from benchmarks.rnn_layout import _Scanned

    reset = contract.reset_mask([[0, 3], [2]], 6)
    x = contract.inputs(jax.random.key(3), 2, 6, 3)
    for cell_type in (FusedGRUCell, FusedLSTMCell, ElmanCell, MGUCell):
        cell = cell_type(features=4)
        hoisted = RNN(cell)
        params = contract.init_params(hoisted, x, reset)
        carry = jax.tree.map(lambda a: a + 0.5, hoisted.initialize_carry(2))
        expected = hoisted.apply(params, x, reset, carry)
        for hoist in (False, True):
            actual = _Scanned(cell, hoist=hoist).apply(params, x, reset, carry)
            assert contract.max_abs_diff(expected, actual) <= 1e-6
