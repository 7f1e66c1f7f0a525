"""xLSTM's cells (Beck et al. 2024): the mLSTM's chunked parallel form and the sLSTM's scan against
the paper's equations stepped here in float64 loops from the raw parameters, with resets and a warm
carry; the stabilised equations against the unstabilised ones; T = 2048 with gate pre-activations
past float32's exp range; the --torso flags and their refusals. The contract checks run in
test_contract.py over XLSTM_TORSOS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.networks.sequence_models import MLSTM, SLSTM, MLSTMLayer, SLSTMLayer
from memorax.networks.torsos import check_torso, make_torso
from tests import sequence_contract as contract
from tests.test_memoroid import stepwise_scan

FEATURES = contract.FEATURES
EMPTY = -1e30  # the stabiliser of an empty memory

# Built once; the torsos are what --torso builds at --hidden-size 8 (4 heads of 2). The layer's
# chunks of 5 split the contract's T = 12 (and 7, 10, 6) into several, the last one padded.
XLSTM_TORSOS = {
    "mlstm_layer": contract.Compiled(MLSTMLayer(features=8, num_heads=2, chunk_size=5)),
    "mlstm_2_layers": contract.Compiled(make_torso("mlstm", 8, num_layers=2)),
    "mlstm_conv_layer": contract.Compiled(
        MLSTMLayer(features=8, num_heads=2, chunk_size=5, conv_kernel=3)
    ),
    "slstm_layer": contract.Compiled(SLSTMLayer(features=8, num_heads=2)),
    "slstm_2_layers": contract.Compiled(make_torso("slstm", 8, num_layers=2)),
}


def _numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _log_forget(preactivation: np.ndarray, forget_gate: str) -> np.ndarray:
    return -np.logaddexp(0.0, -preactivation) if forget_gate == "sigmoid" else preactivation


def _mlstm_reference(p, x, reset, carry, num_heads, forget_gate, stabilised=True):
    """Eqs. (19)-(27) one step at a time in float64, B x H heads at once. Stabilised: the carry's
    (C', n', m) stepped with m_t = max(log f_t + m_{t-1}, log i_t). Unstabilised: C = exp(m) C',
    n = exp(m) n' stepped with i_t = exp(i~_t), f_t as is, and h~ = C q / max(|n . q|, 1)."""
    x, reset = np.asarray(x, np.float64), np.asarray(reset)
    kernel, bias = p["projection"]["kernel"], p["projection"]["bias"]
    width = p["out_proj"]["kernel"].shape[0]
    dim = width // num_heads
    convolved = "conv_weight" in p  # the xLSTM block's convolution: q and k read its output
    memory, normaliser, stabiliser = _numpy(carry[:3])
    if convolved:
        window = list(np.moveaxis(_numpy(carry[3]), 1, 0))  # the K - 1 inputs u before step 0
    if not stabilised:
        memory = np.exp(stabiliser)[..., None, None] * memory
        normaliser = np.exp(stabiliser)[..., None] * normaliser
    outputs = []
    for t in range(x.shape[1]):
        start = reset[:, t]
        memory = np.where(start[:, None, None, None], 0.0, memory)
        normaliser = np.where(start[:, None, None], 0.0, normaliser)
        stabiliser = np.where(start[:, None], EMPTY, stabiliser)
        projected = x[:, t] @ kernel + bias
        vectors = [projected[:, g * width : (g + 1) * width] for g in range(4 - 2 * convolved)]
        if convolved:  # u_t = W_u x_t + b_u; conv_t = sum_k w_k u_{t-K+1+k} within the episode
            u = x[:, t] @ p["conv_input"]["kernel"] + p["conv_input"]["bias"]
            conv, window = contract.causal_conv_step(window, u, start, p["conv_weight"])
            conv = conv + p["conv_bias"]
            query_key = (conv * _sigmoid(conv)) @ p["query_key"]["kernel"] + p["query_key"]["bias"]
            vectors = [query_key[:, :width], query_key[:, width:], *vectors]
        q, k, v, o = vectors
        q, k, v = (a.reshape(-1, num_heads, dim) for a in (q, k, v))
        k = k / np.sqrt(dim)  # (23)
        gates = (4 - 2 * convolved) * width
        log_i = projected[:, gates : gates + num_heads]  # (25): log i = i~
        log_f = _log_forget(projected[:, gates + num_heads :], forget_gate)  # (26)
        if stabilised:
            new_stabiliser = np.maximum(log_f + stabiliser, log_i)
            forget_scale = np.exp(log_f + stabiliser - new_stabiliser)
            input_scale = np.exp(log_i - new_stabiliser)
            stabiliser, floor = new_stabiliser, np.exp(-new_stabiliser)
        else:
            forget_scale, input_scale, floor = np.exp(log_f), np.exp(log_i), 1.0
        memory = forget_scale[..., None, None] * memory + input_scale[..., None, None] * (
            v[..., :, None] * k[..., None, :]
        )  # (19)
        normaliser = forget_scale[..., None] * normaliser + input_scale[..., None] * k  # (20)
        read = np.einsum("bhvk,bhk->bhv", memory, q)
        dot = np.einsum("bhk,bhk->bh", normaliser, q)
        h = _sigmoid(o) * (read / np.maximum(np.abs(dot), floor)[..., None]).reshape(-1, width)
        outputs.append(h @ p["out_proj"]["kernel"] + p["out_proj"]["bias"])  # (21), (27)
    final = (memory, normaliser, stabiliser)
    if convolved:
        final += (np.stack(window, axis=1),)
    return np.stack(outputs, axis=1), final


def _slstm_reference(p, x, reset, carry, forget_gate, stabilised=True):
    """Eqs. (8)-(14) one step at a time in float64 with head-wise recurrent matrices R_h: each
    unit's pre-activations see h_{t-1} of its own head only; stabilised by (15)-(17)."""
    x, reset = np.asarray(x, np.float64), np.asarray(reset)
    recurrent = p["recurrent_kernel"]  # [H, d, 4, d]
    heads, dim = recurrent.shape[:2]
    width = heads * dim
    cell, normaliser, stabiliser, hidden = _numpy(carry)
    if not stabilised:
        cell, normaliser = np.exp(stabiliser) * cell, np.exp(stabiliser) * normaliser
    outputs = []
    for t in range(x.shape[1]):
        start = reset[:, t, None]
        cell, normaliser, hidden = (np.where(start, 0.0, a) for a in (cell, normaliser, hidden))
        stabiliser = np.where(start, EMPTY, stabiliser)
        pre = x[:, t] @ p["input_projection"]["kernel"] + p["input_projection"]["bias"]
        for h in range(heads):  # W x + R h_{t-1} + b, head by head
            own = slice(h * dim, (h + 1) * dim)
            for g in range(4):
                gate = slice(g * width + h * dim, g * width + (h + 1) * dim)
                pre[:, gate] += hidden[:, own] @ recurrent[h, :, g, :]
        z, log_i, forget, output = (pre[:, g * width : (g + 1) * width] for g in range(4))
        log_f = _log_forget(forget, forget_gate)
        if stabilised:
            new_stabiliser = np.maximum(log_f + stabiliser, log_i)  # (15)
            input_scale = np.exp(log_i - new_stabiliser)  # (16)
            forget_scale = np.exp(log_f + stabiliser - new_stabiliser)  # (17)
            stabiliser = new_stabiliser
        else:
            input_scale, forget_scale = np.exp(log_i), np.exp(log_f)  # (12), (13)
        cell = forget_scale * cell + input_scale * np.tanh(z)  # (8), (11)
        normaliser = forget_scale * normaliser + input_scale  # (9)
        hidden = _sigmoid(output) * cell / normaliser  # (10), (14)
        outputs.append(hidden)
    return np.stack(outputs, axis=1), (cell, normaliser, stabiliser, hidden)


def _reference_inputs():
    reset = contract.reset_mask([[0, 5], [3, 4, 11], [], [6]], 12)
    return contract.inputs(jax.random.key(21), 4, 12, FEATURES), reset


@pytest.mark.parametrize(
    ("forget_gate", "conv_kernel"), [("sigmoid", 0), ("exponential", 0), ("sigmoid", 3)]
)
def test_mlstm_matches_the_paper(forget_gate, conv_kernel):
    """From a warm carry, with resets at a chunk's first step, inside chunks, consecutive and on
    the last step: the chunked form in chunks of 1 (the acting path), 5 (the last padded) and 64
    (one chunk) equals the stabilised float64 loop, outputs and (C', n', m); and that loop equals
    the paper's unstabilised equations. With the xLSTM block's convolution (conv_kernel 3: q and
    k read SiLU(conv(W_u x))) the loop keeps its own window of inputs, cleared at a reset, and the
    layer's carried window must equal it."""
    x, reset = _reference_inputs()
    layer = MLSTMLayer(
        features=8, num_heads=2, chunk_size=5, forget_gate=forget_gate, conv_kernel=conv_kernel
    )
    params = contract.init_params(layer, x, reset)
    carry = contract.warm_carry(layer, params, 4, FEATURES)
    # A memory (and a window) that a missed reset would leak.
    assert all(float(jnp.min(jnp.abs(part))) > 0.0 for part in carry[:1] + carry[3:])
    p = _numpy(params["params"])
    expected, expected_carry = _mlstm_reference(p, x, reset, carry, 2, forget_gate)
    unstabilised, _ = _mlstm_reference(p, x, reset, carry, 2, forget_gate, stabilised=False)
    np.testing.assert_allclose(expected, unstabilised, rtol=1e-9, atol=1e-12)
    # float32 against float64: with the exponential forget gate the chunked sums of exponentiated
    # gates round further from the loop, most in outputs that are small differences of large
    # terms. On AMD EPYC (Zen 3) their worst excess over rtol 1e-5 was 8.6e-6 compiled at LLVM
    # level 3 and 1.06e-5 at level 1 (the tests' setting, tests/conftest.py), at |y| = 0.067; a
    # leaked carry differs by about the outputs' size (up to 6.5), far beyond either allowance.
    atol = 2e-5 if forget_gate == "exponential" else 1e-5
    for chunk_size in [1, 5, 64]:
        layer = layer.clone(chunk_size=chunk_size)
        actual_carry, y = jax.jit(layer.apply)(params, x, reset, carry)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=atol, err_msg=f"{chunk_size}")
        for actual, wanted in zip(actual_carry, expected_carry, strict=True):
            np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exponential"])
def test_slstm_matches_the_paper(forget_gate):
    """From a warm carry with resets: the layer's scan equals the stabilised float64 loop of
    (8)-(17) with head-wise recurrent matrices, which equals the unstabilised one."""
    x, reset = _reference_inputs()
    layer = SLSTMLayer(features=8, num_heads=2, forget_gate=forget_gate)
    params = contract.init_params(layer, x, reset)
    carry = contract.warm_carry(layer, params, 4, FEATURES)
    assert float(jnp.min(jnp.abs(carry[3]))) > 0.0
    p = _numpy(params["params"])
    expected, expected_carry = _slstm_reference(p, x, reset, carry, forget_gate)
    unstabilised, _ = _slstm_reference(p, x, reset, carry, forget_gate, stabilised=False)
    np.testing.assert_allclose(expected, unstabilised, rtol=1e-9, atol=1e-12)
    actual_carry, y = jax.jit(layer.apply)(params, x, reset, carry)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    for actual, wanted in zip(actual_carry, expected_carry, strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-5)


def _long_inputs():
    reset = jax.random.bernoulli(jax.random.key(14), 0.002, (2, 2048)).at[1].set(False)
    return contract.inputs(jax.random.key(15), 2, 2048, FEATURES), reset


# Chunks of 48 over T = 2048: 43 chunks, the last one padded.
LONG_MLSTM = contract.Compiled(MLSTMLayer(features=8, num_heads=2, chunk_size=48))
LONG_MLSTM_STEPWISE = stepwise_scan(LONG_MLSTM.model)


@pytest.mark.parametrize(("gate_scale", "tolerance"), [(1.0, 1e-4), (25.0, 2e-3)])
def test_mlstm_long_sequence(gate_scale, tolerance):
    """T = 2048 with sparse resets, at the initial gates and with the gate weights 25 times
    larger (pre-activations past +-88, where float32's exp(i~) overflows): finite values and
    gradients; the chunked pass and 2048 one-step calls agree on (C', n', m) to float32
    rounding and on the outputs within ``tolerance * (1 + |y|)``, as both do with the float64
    loop. Measured at T = 2048: 2e-5 and 1.2e-3 (the latter both float32 passes alike), on a few
    outputs near a zero of n . q, where |y| reaches 2300 and any float32 evaluation of (21) is
    ill-conditioned; 99.9% of outputs agree within 2e-5."""
    x, reset = _long_inputs()
    layer, initial = LONG_MLSTM, LONG_MLSTM.initialize_carry(2)
    params = layer.init(jax.random.key(0), x[:, :4], reset[:, :4], initial)
    projection = params["params"]["projection"]
    projection["kernel"] = projection["kernel"].at[:, 32:].multiply(gate_scale)  # i~ and f~
    gates = np.asarray(x @ projection["kernel"][:, 32:] + projection["bias"][32:])
    assert np.abs(gates).max() > (88.0 if gate_scale > 1.0 else 3.0)

    parallel_carry, parallel = layer.apply(params, x, reset, initial)
    stepwise_carry, stepwise = LONG_MLSTM_STEPWISE(params, x, reset, initial)
    expected, _ = _mlstm_reference(_numpy(params["params"]), x, reset, initial, 2, "sigmoid")
    assert bool(jnp.all(jnp.isfinite(parallel)))
    for actual, wanted in zip(parallel_carry, stepwise_carry, strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-5)
    scale = 1.0 + np.abs(expected)
    assert np.max(np.abs(np.asarray(parallel) - np.asarray(stepwise)) / scale) <= tolerance
    assert np.max(np.abs(np.asarray(parallel) - expected) / scale) <= tolerance

    def loss(params):
        return jnp.mean(layer.apply(params, x[:, :256], reset[:, :256], initial)[1] ** 2)

    gradients = jax.tree.leaves(jax.jit(jax.grad(loss))(params))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in gradients)


def test_slstm_long_sequence():
    """T = 2048 with sparse resets and the input weights of i~ and f~ 25 times larger
    (pre-activations past +-88): |h| <= 1 (h is o times a weighted mean of tanh values), the last
    n' >= 1, and the scan equals the float64 loop (measured: outputs 2.4e-6 apart)."""
    x, reset = _long_inputs()
    layer = SLSTMLayer(features=8, num_heads=2)
    initial = layer.initialize_carry(2)
    params = jax.jit(layer.init)(jax.random.key(0), x[:, :4], reset[:, :4], initial)
    projection = params["params"]["input_projection"]
    projection["kernel"] = projection["kernel"].at[:, 8:24].multiply(25.0)  # i~ and f~
    gates = np.asarray(x @ projection["kernel"][:, 8:24] + projection["bias"][8:24])
    assert np.abs(gates).max() > 88.0

    carry, y = jax.jit(layer.apply)(params, x, reset, initial)
    expected, expected_carry = _slstm_reference(
        _numpy(params["params"]), x, reset, initial, "sigmoid"
    )
    assert bool(jnp.all(jnp.isfinite(y))) and float(jnp.max(jnp.abs(y))) <= 1.0
    assert float(jnp.min(carry[1])) >= 1.0
    np.testing.assert_allclose(y, expected, atol=1e-5)
    for actual, wanted in zip(carry, expected_carry, strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "torso", "layer"), [("mlstm", MLSTM, MLSTMLayer), ("slstm", SLSTM, SLSTMLayer)]
)
def test_torso_flag_and_refusals(name, torso, layer):
    """--torso mlstm/slstm build 4 heads at any width that splits into them, at any depth;
    other widths are refused in one line naming the fix, and the layers refuse bad settings."""
    x, reset = jnp.ones((2, 3, 5)), jnp.zeros((2, 3), bool)
    model = make_torso(name, 12, num_layers=3)
    assert isinstance(model, torso)
    carry = model.initialize_carry(2)
    per_layer = [(2, 4, 3, 3), (2, 4, 3), (2, 4)] if name == "mlstm" else [(2, 12)] * 4
    assert [leaf.shape for leaf in jax.tree.leaves(carry)] == per_layer * 3
    params = jax.eval_shape(model.init, jax.random.key(0), x, reset, carry)
    new_carry, y = jax.eval_shape(model.apply, params, x, reset, carry)
    assert y.shape == (2, 3, 12)
    assert jax.tree.map(lambda a: a.shape, new_carry) == jax.tree.map(jnp.shape, carry)

    check_torso(name, 4, 2)
    needle = (
        rf"^--hidden-size \(10\) must be divisible by the 4 heads of --torso {name}; "
        r"use a multiple of 4$"
    )
    with pytest.raises(ValueError, match=needle):
        check_torso(name, 10, 1)
    for settings, message in [
        ({"features": 10}, r"^features \(10\) must be divisible by num_heads \(4\)"),
        ({"features": 8, "forget_gate": "relu"}, r"^forget_gate 'relu' is unknown; choose sigmoid"),
    ]:
        bad = layer(**settings)
        with pytest.raises(ValueError, match=message):
            jax.eval_shape(bad.init, jax.random.key(0), x, reset, bad.initialize_carry(2))
