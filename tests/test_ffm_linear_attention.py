"""FFM and linear attention: each against its paper's equations stepped here in a float64 numpy
loop from the raw parameters, with resets and a warm carry; T = 2048 against 2048 one-step calls;
the --torso flags at several widths and depths and their refusals (the contract checks run in
test_contract.py over FFM_LINEAR_ATTENTION_TORSOS)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.networks.sequence_models import FFM, FFMCell, LinearAttention, Memoroid
from memorax.networks.torsos import LINEAR_ATTENTION_HEADS, check_torso, make_torso
from tests import sequence_contract as contract
from tests.test_memoroid import LONG_LENGTH, stepwise_scan

FEATURES = contract.FEATURES

# Built once: a shared instance keeps its compiled functions from one test to the next. The
# layers use chunks of 5, which do not divide T = 12; the torsos are what --torso builds at
# --hidden-size 8 (one chunk of 64 over T = 12).
FFM_LINEAR_ATTENTION_TORSOS = {
    "ffm_cell": contract.Compiled(  # ffm_2_layers takes the default scan, sequential on a CPU
        Memoroid(FFMCell(features=8, memory_size=3, context_size=2), scan="associative")
    ),
    "ffm_2_layers": contract.Compiled(make_torso("ffm", 8, num_layers=2)),
    "linear_attention": contract.Compiled(LinearAttention(num_heads=2, head_dim=4, chunk_size=5)),
    "linear_attention_decay": contract.Compiled(
        LinearAttention(num_heads=2, head_dim=4, decay=True, chunk_size=5)
    ),
    "linear_attention_2_layers": contract.Compiled(make_torso("linear_attention", 8, 2)),
}
NEW_TORSOS = ("ffm", "linear_attention", "linear_attention_decay")


def _numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _dense(layer: dict, v: np.ndarray) -> np.ndarray:
    return v @ layer["kernel"] + layer["bias"]


def _reference_inputs():
    reset = contract.reset_mask([[0, 5], [3, 4], [], [11]], 12)
    x = np.asarray(contract.inputs(jax.random.key(21), 4, 12, FEATURES), np.float64)
    return x, reset


def _ffm_reference(p: dict, x: np.ndarray, reset, state: np.ndarray):
    """The paper's FFM cell step by step: x~ = l1(x) sigmoid(l2(x)), S = gamma S + x~ 1^T,
    z = l3([Re S, Im S]), y = LN(z) g + l5(x) (1 - g), g = sigmoid(l4(x))."""
    gamma = np.exp(-np.abs(p["alpha"]))[:, None] * np.exp(1j * p["omega"])[None, :]  # [m, c]
    state, outputs = np.asarray(state, np.complex128), []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        state = np.where(np.asarray(reset[:, t])[:, None, None], 0.0, state)
        gated = _dense(p["input"], x_t) * _sigmoid(_dense(p["input_gate"], x_t))
        state = gamma * state + gated[..., None]
        parts = np.concatenate([state.real, state.imag], axis=-1).reshape(len(x_t), -1)
        z = _dense(p["mix"], parts)
        z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-6)
        gate = _sigmoid(_dense(p["output_gate"], x_t))
        outputs.append(z * gate + _dense(p["skip"], x_t) * (1.0 - gate))
    return np.stack(outputs, axis=1), state


def _linear_attention_reference(p: dict, x: np.ndarray, reset, carry, decay: bool):
    """Katharopoulos et al.'s recurrence per head: S = lambda S + phi(k) v^T, z = lambda z +
    phi(k), y = phi(q)^T S / (phi(q)^T z + 1e-6), then the output projection."""

    def phi(u: np.ndarray) -> np.ndarray:
        return np.where(u > 0.0, u + 1.0, np.exp(u))

    kernel = p["qkv"]["kernel"]  # [F, 3, H, D]
    lam = _sigmoid(p["decay_logit"]) if decay else np.ones(kernel.shape[2])  # [H]
    s, z = (np.asarray(c, np.float64) for c in carry)  # [B, H, D, D], [B, H, D]
    outputs = []
    for t in range(x.shape[1]):
        keep = ~np.asarray(reset[:, t])
        s, z = s * keep[:, None, None, None], z * keep[:, None, None]
        q, k, v = (np.einsum("bf,fhd->bhd", x[:, t], kernel[:, i]) for i in range(3))
        s = lam[:, None, None] * s + phi(k)[..., :, None] * v[..., None, :]
        z = lam[:, None] * z + phi(k)
        numerator = np.einsum("bhk,bhkv->bhv", phi(q), s)
        denominator = np.einsum("bhk,bhk->bh", phi(q), z)[..., None] + 1e-6
        y = (numerator / denominator).reshape(len(x), -1)
        outputs.append(_dense(p["out"], y))
    return np.stack(outputs, axis=1), (s, z)


def test_ffm_matches_the_paper():
    """The cell's associative scan from a warm carry equals the paper's loop; one alpha set
    negative, since the decay is exp(-|alpha|)."""
    model = FFM_LINEAR_ATTENTION_TORSOS["ffm_cell"]
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)
    params["params"]["cell"]["alpha"] = jnp.array([-0.3, 0.05, 0.7])
    p = _numpy(params["params"]["cell"])
    carry = contract.warm_carry(model, params, 4, FEATURES)
    assert float(jnp.min(jnp.abs(carry))) > 0.0  # a carry that a missed reset would leak

    expected, expected_carry = _ffm_reference(p, x, reset, carry)
    new_carry, y = model.apply(params, jnp.asarray(x, jnp.float32), reset, carry)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    np.testing.assert_allclose(new_carry, expected_carry, atol=1e-5)


def test_ffm_initial_decays_and_frequencies():
    """alpha from ln(100) / 1024 (1% left after 1024 steps) to ln 2 (half gone per step), omega
    = 2 pi / linspace(1, 1024, c): the memory horizons start spread out."""
    cell = Memoroid(FFMCell(features=8, memory_size=3, context_size=2))
    x, reset = jnp.ones((1, 2, FEATURES)), jnp.zeros((1, 2), bool)
    params = jax.jit(cell.init)(jax.random.key(0), x, reset, cell.initialize_carry(1))
    params = params["params"]["cell"]
    np.testing.assert_allclose(params["alpha"], [np.log(100) / 1024, 0.3488, np.log(2)], rtol=1e-3)
    np.testing.assert_allclose(params["omega"], [2 * np.pi, 2 * np.pi / 1024], rtol=1e-6)


def test_ffm_spread_frequencies_and_their_refusal():
    """frequencies="spread" starts omega at 0 .. pi (turns a lag can be read from) and leaves
    alpha as the authors'; the torso passes it to every layer; an unknown value is refused."""
    x, reset = jnp.ones((1, 2, FEATURES)), jnp.zeros((1, 2), bool)
    torso = FFM(hidden_dim=8, num_layers=2, context_size=4, frequencies="spread")
    params = jax.jit(torso.init)(jax.random.key(0), x, reset, torso.initialize_carry(1))
    blocks = params["params"]["stack"]
    cells = [blocks[f"blocks_{i}"]["module"]["module"]["cell"] for i in range(2)]
    for cell in cells:
        np.testing.assert_allclose(cell["omega"], np.pi * np.array([0, 1, 2, 3]) / 3, atol=1e-6)
        np.testing.assert_allclose(cell["alpha"], [np.log(100) / 1024, np.log(2)], rtol=1e-3)
    bad = Memoroid(FFMCell(features=8, memory_size=3, context_size=2, frequencies="fast"))
    with pytest.raises(ValueError, match='frequencies .* must be "periods" or "spread"'):
        bad.init(jax.random.key(0), x, reset, bad.initialize_carry(1))


@pytest.mark.parametrize("decay", [False, True], ids=["plain", "decay"])
def test_linear_attention_matches_the_paper(decay):
    """The chunked form (chunks of 5 over 12 steps) from a warm carry equals the loop."""
    name = "linear_attention_decay" if decay else "linear_attention"
    model = FFM_LINEAR_ATTENTION_TORSOS[name]
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)
    if decay:  # fast decays, so that a wrong lambda changes the outputs visibly
        params["params"]["decay_logit"] = jnp.array([-1.0, 1.5])
    p = _numpy(params["params"])
    carry = contract.warm_carry(model, params, 4, FEATURES)
    assert float(jnp.min(jnp.abs(carry[1]))) > 0.0

    expected, expected_carry = _linear_attention_reference(p, x, reset, carry, decay)
    new_carry, y = model.apply(params, jnp.asarray(x, jnp.float32), reset, carry)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    for actual, reference in zip(new_carry, expected_carry, strict=True):
        np.testing.assert_allclose(actual, reference, rtol=1e-5, atol=1e-5)


def test_linear_attention_initial_horizons():
    """lambda = sigmoid(p) starts at 1 - 1 / horizon, horizons 16 ... 1024 over the heads."""
    model = LinearAttention(num_heads=4, head_dim=2, decay=True)
    x, reset = jnp.ones((1, 2, FEATURES)), jnp.zeros((1, 2), bool)
    params = jax.jit(model.init)(jax.random.key(0), x, reset, model.initialize_carry(1))["params"]
    horizon = 1.0 / (1.0 - jax.nn.sigmoid(params["decay_logit"]))
    np.testing.assert_allclose(horizon, [16, 64, 256, 1024], rtol=1e-3)
    plain = LinearAttention(num_heads=4, head_dim=2)
    plain_params = jax.eval_shape(
        plain.init, jax.random.key(0), x, reset, plain.initialize_carry(1)
    )["params"]
    assert "decay_logit" not in plain_params


# float32 over 2048 steps, the parallel pass summing the same terms as the one-step calls in
# another order. Measured on CPU: outputs within 2e-6 (FFM, outputs up to 4) and 4e-7 (linear
# attention); carries within 2e-6 of their size (FFM's up to 29; linear attention's S and z, which
# sum every step since the last reset, up to 2700), hence a tolerance relative to that size.
LONG_OUTPUT_TOLERANCE, LONG_CARRY_RTOL = 2e-5, 2e-5


@pytest.mark.parametrize(
    "model",
    [
        Memoroid(FFMCell(features=8, memory_size=4, context_size=2)),
        LinearAttention(num_heads=2, head_dim=4),
    ],
    ids=["ffm", "linear_attention"],
)
def test_long_sequence(model):
    """T = 2048 with sparse resets: finite, and one call equals 2048 one-step calls."""
    reset = jax.random.bernoulli(jax.random.key(14), 0.002, (2, LONG_LENGTH)).at[1].set(False)
    x = contract.inputs(jax.random.key(15), 2, LONG_LENGTH, FEATURES)
    carry = model.initialize_carry(2)
    params = jax.jit(model.init)(jax.random.key(0), x[:, :4], reset[:, :4], carry)
    parallel_carry, parallel = jax.jit(model.apply)(params, x, reset, carry)
    stepwise_carry, stepwise = stepwise_scan(model)(params, x, reset, carry)
    assert bool(jnp.all(jnp.isfinite(parallel)))
    assert contract.max_abs_diff(parallel, stepwise) <= LONG_OUTPUT_TOLERANCE
    leaves = zip(jax.tree.leaves(parallel_carry), jax.tree.leaves(stepwise_carry), strict=True)
    for actual, stepped in leaves:
        scale = float(jnp.max(jnp.abs(stepped)))
        assert float(jnp.max(jnp.abs(actual - stepped))) <= LONG_CARRY_RTOL * max(scale, 1.0)


@pytest.mark.parametrize("name", ["linear_attention", "linear_attention_decay"])
def test_linear_attention_refuses_widths_its_heads_do_not_divide(name):
    with pytest.raises(ValueError) as error:
        check_torso(name, 10, 1)
    assert str(error.value) == (
        f"--hidden-size (10) must be divisible by the {LINEAR_ATTENTION_HEADS} heads of --torso "
        f"{name}; use a multiple of {LINEAR_ATTENTION_HEADS}"
    )


@pytest.mark.parametrize(
    ("name", "width", "depth"),
    [("ffm", 5, 3), ("ffm", 12, 1), ("linear_attention", 12, 3), ("linear_attention_decay", 4, 2)],
)
def test_new_torsos_build(name, width, depth):
    """check_torso passes, and the torso's output is --hidden-size wide with a carry that keeps
    its shape; FFM takes any width (an odd one here)."""
    check_torso(name, width, depth)
    model = make_torso(name, width, num_layers=depth)
    x, reset = jnp.ones((2, 3, 7)), jnp.zeros((2, 3), bool)
    carry = model.initialize_carry(2)
    params = jax.eval_shape(model.init, jax.random.key(0), x, reset, carry)
    new_carry, y = jax.eval_shape(model.apply, params, x, reset, carry)
    assert y.shape == (2, 3, width)
    assert jax.tree.map(lambda a: a.shape, new_carry) == jax.tree.map(jnp.shape, carry)
