"""The memory zoo (minGRU, FrameStack, IndRNN, MGU, Elman, LSTM): each torso against its paper's
equations stepped here in a float64 Python loop from the raw parameters, with resets; minGRU at
T = 2048; the --torso flags at any width and depth (the contract checks run in test_contract.py
over ZOO_TORSOS, and over RNN_TORSOS' "mgu" and "elman" for the two flax-equivalent cells)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.networks.sequence_models import MinGRULayer
from memorax.networks.torsos import check_torso, make_torso
from tests import sequence_contract as contract
from tests.test_memoroid import check_long_sequence

FEATURES = contract.FEATURES
NEW_TORSOS = ("mingru", "framestack", "indrnn", "mgu", "elman")

# Built once: a shared instance keeps its compiled functions from one test to the next. The
# torsos are what --torso builds at --hidden-size 8.
ZOO_TORSOS = {
    "mingru_layer": contract.Compiled(MinGRULayer(features=8)),
    "mingru_2_layers": contract.Compiled(make_torso("mingru", 8, num_layers=2)),
    # 4 frames over T = 12 (and 10, 8, 6): windows reach across every reset pattern's resets.
    "framestack": contract.Compiled(make_torso("framestack", 8, num_layers=2)),
    "indrnn": contract.Compiled(make_torso("indrnn", 8)),
}


def _numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _recurrence(step, x, reset, h) -> tuple[np.ndarray, np.ndarray]:
    """h_t = step(h_{t-1}, x_t) in a loop, h zeroed where a step starts an episode: the states
    [B, T, H] and the last one."""
    x, h, reset = np.asarray(x, np.float64), np.asarray(h, np.float64), np.asarray(reset)
    states = []
    for t in range(x.shape[1]):
        h = np.where(reset[:, t, None], 0.0, h)
        h = step(h, x[:, t])
        states.append(h)
    return np.stack(states, axis=1), h


def _reference_inputs():
    reset = contract.reset_mask([[0, 5], [3, 4], [], [11]], 12)
    return contract.inputs(jax.random.key(21), 4, 12, FEATURES), reset


def _check_against(model, params, step, atol: float = 1e-5) -> None:
    """The model's parallel (one-call) form from a warm carry equals the loop of ``step``."""
    x, reset = _reference_inputs()
    carry = contract.warm_carry(model, params, 4, FEATURES)
    assert float(jnp.max(jnp.abs(carry))) > 0.0  # a carry that a missed reset would leak
    expected, expected_carry = _recurrence(step, x, reset, carry)
    actual_carry, y = model.apply(params, x, reset, carry)
    np.testing.assert_allclose(y, expected, atol=atol)
    np.testing.assert_allclose(actual_carry, expected_carry, atol=atol)


def test_mingru_matches_the_paper():
    """z = sigmoid(W_z x + b_z), h~ = g(W_h x + b_h), h = (1 - z) h + z h~ (g: v + 1/2 at
    v >= 0, sigmoid below), against the layer's log-space associative scan."""
    model = ZOO_TORSOS["mingru_layer"]
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)
    p = _numpy(params["params"])

    def step(h, x_t):
        z = _sigmoid(x_t @ p["gate"]["kernel"] + p["gate"]["bias"])
        v = x_t @ p["candidate"]["kernel"] + p["candidate"]["bias"]
        candidate = np.where(v >= 0.0, v + 0.5, _sigmoid(v))
        return (1.0 - z) * h + z * candidate

    _check_against(model, params, step)


def test_mingru_long_sequence():
    """T = 2048 with sparse resets: finite, and the parallel pass equals 2048 one-step calls
    within test_memoroid's LONG_TOLERANCE (2e-5; measured 5e-7 on CPU, outputs up to 4)."""
    check_long_sequence(MinGRULayer(features=8), FEATURES)


def test_mingru_carry_gradient_at_zero():
    """h is linear in the incoming carry, so its gradient is the same at a zero carry (which the
    log-space scan must not take the logarithm of) as at a warm one, and finite."""
    model = ZOO_TORSOS["mingru_layer"]
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)

    def carry_gradient(carry):
        return jax.grad(lambda c: jnp.sum(model.apply(params, x, reset, c)[1]))(carry)

    at_zero = carry_gradient(model.initialize_carry(4))
    at_warm = carry_gradient(contract.warm_carry(model, params, 4, FEATURES))
    assert bool(jnp.all(jnp.isfinite(at_zero))) and float(jnp.max(jnp.abs(at_zero))) > 0.0
    np.testing.assert_allclose(at_zero, at_warm, rtol=1e-5)


def test_framestack_matches_a_window_of_inputs():
    """y_t = MLP([e_{t-3}, ..., e_t]), e = W_e x + b_e, with the frames of earlier episodes
    zero: a list of frames per row that a reset empties."""
    model = ZOO_TORSOS["framestack"]
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)
    p = _numpy(params["params"])
    carry = contract.warm_carry(model, params, 4, FEATURES)
    assert float(jnp.min(jnp.max(jnp.abs(carry), axis=-1))) > 0.0  # 3 carried frames per row

    expected, expected_carry = np.zeros((4, 12, 8)), np.zeros((4, 3, 8))
    for row in range(4):
        frames = list(np.asarray(carry[row], np.float64))  # the 3 previous frames, oldest first
        for t in range(12):
            if reset[row, t]:
                frames = [np.zeros(8)] * 3
            window = frames + [x[row, t] @ p["embed"]["kernel"] + p["embed"]["bias"]]
            hidden = np.concatenate(window)
            for layer in ("Dense_0", "Dense_1"):
                dense = p["MLP_0"][layer]
                hidden = np.maximum(hidden @ dense["kernel"] + dense["bias"], 0.0)
            expected[row, t] = hidden
            frames = window[1:]
        expected_carry[row] = np.stack(frames)
    new_carry, y = model.apply(params, x, reset, carry)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    np.testing.assert_allclose(new_carry, expected_carry, atol=1e-5)


def test_indrnn_matches_the_paper_with_u_clipped():
    """h = relu(W x + b + u * h) with u clipped to [-1, 1]; u set beyond the clip on purpose."""
    model = ZOO_TORSOS["indrnn"]
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)
    wide_u = jnp.array([-1.5, -0.5, 0.0, 0.5, 0.9, 1.0, 1.5, 3.0])
    params["params"]["cell"]["recurrent_weight"] = wide_u
    p = _numpy(params["params"]["cell"])
    u = np.clip(p["recurrent_weight"], -1.0, 1.0)

    def step(h, x_t):
        projection = p["input_projection"]
        return np.maximum(x_t @ projection["kernel"] + projection["bias"] + u * h, 0.0)

    _check_against(model, params, step)

    # Straight-through: u's gradient is the gradient at the clipped u, so a clipped unit still
    # learns (a plain clip would give it zero).
    def loss(weight):
        weighted = {"params": {"cell": {**params["params"]["cell"], "recurrent_weight": weight}}}
        return jnp.sum(model.apply(weighted, x, reset, model.initialize_carry(4))[1] ** 2)

    grad_wide, grad_clipped = jax.grad(loss)(wide_u), jax.grad(loss)(jnp.clip(wide_u, -1, 1))
    np.testing.assert_allclose(grad_wide, grad_clipped, rtol=1e-6)
    assert float(jnp.abs(grad_wide[-1])) > 0.0


def test_indrnn_recurrent_weights_start_uniform_up_to_one():
    """By default u starts as flax's uniform(1) draws it (the paper's [0, 1]), bit for bit: a
    module naming its parameters as IndRNNCell does gets the same draws from the same key. With
    recurrent_weight_min = m it starts on [m, 1], the same draws stretched: m + (1 - m) * U."""
    import flax.linen as nn

    from memorax.networks.sequence_models import IndRNNCell

    class FlaxUniform(nn.Module):
        @nn.compact
        def __call__(self, x):
            nn.Dense(256, name="input_projection")(x)
            return self.param("recurrent_weight", nn.initializers.uniform(1.0), (256,))

    x, carry, key = jnp.zeros((1, 3)), jnp.zeros((1, 256)), jax.random.key(5)

    def u(**kwargs):
        params = IndRNNCell(features=256, **kwargs).init(key, carry, x)
        return np.asarray(params["params"]["recurrent_weight"])

    reference = np.asarray(FlaxUniform().init(key, x)["params"]["recurrent_weight"])
    default, stretched = u(), u(recurrent_weight_min=0.9)
    np.testing.assert_array_equal(default, reference)
    np.testing.assert_allclose(stretched, 0.9 + 0.1 * default, rtol=1e-6)
    assert stretched.min() >= 0.9 and stretched.max() <= 1.0


def test_mgu_matches_its_equations():
    """MGUCell (flax's MGUCell, hoisted), as --torso mgu builds it:
    f = sigmoid(W_if x + b_if + W_hf h), n = tanh(W_in x + b_in + f * (W_hn h + b_hn)),
    h = (1 - f) n + f h."""
    model = contract.Compiled(make_torso("mgu", 8))
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)
    p = _numpy(params["params"]["cell"])

    def step(h, x_t):
        forget = _sigmoid(x_t @ p["if"]["kernel"] + p["if"]["bias"] + h @ p["hf"]["kernel"])
        recurrent = h @ p["hn"]["kernel"] + p["hn"]["bias"]
        candidate = np.tanh(x_t @ p["in"]["kernel"] + p["in"]["bias"] + forget * recurrent)
        return (1.0 - forget) * candidate + forget * h

    _check_against(model, params, step)


def test_elman_matches_its_equation():
    """ElmanCell (flax's SimpleCell, hoisted), as --torso elman builds it:
    h = tanh(W_i x + b_i + W_h h)."""
    model = contract.Compiled(make_torso("elman", 8))
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)
    p = _numpy(params["params"]["cell"])

    def step(h, x_t):
        return np.tanh(x_t @ p["i"]["kernel"] + p["i"]["bias"] + h @ p["h"]["kernel"])

    _check_against(model, params, step)


def test_lstm_matches_its_equations():
    """FusedLSTMCell, as --torso lstm builds it (Hochreiter & Schmidhuber 1997, with a forget
    gate): i, f, o = sigmoid(W_i* x + W_h* h + b_h*), g = tanh(W_ig x + W_hg h + b_hg),
    c = f c + i g, h = o tanh(c); the carry (c, h) zeroed where an episode starts. The fused
    kernels hold the gates side by side in (i, f, g, o) order."""
    model = contract.Compiled(make_torso("lstm", 8))
    x, reset = _reference_inputs()
    params = contract.init_params(model, x, reset)
    p = _numpy(params["params"]["cell"])
    width = 8
    column = {name: slice(k * width, (k + 1) * width) for k, name in enumerate("ifgo")}
    w_x, w_h = p["input_projection"]["kernel"], p["recurrent_projection"]["kernel"]
    b_h = p["recurrent_projection"]["bias"]
    assert set(p["input_projection"]) == {"kernel"}  # flax's LSTM: no input-side bias

    def gate(name, x_t, h):
        cols = column[name]
        return x_t @ w_x[:, cols] + h @ w_h[:, cols] + b_h[cols]

    def step(state, x_t):  # state: [B, 2H] = (c, h)
        c, h = state[:, :width], state[:, width:]
        c = _sigmoid(gate("f", x_t, h)) * c + _sigmoid(gate("i", x_t, h)) * np.tanh(
            gate("g", x_t, h)
        )
        return np.concatenate([c, _sigmoid(gate("o", x_t, h)) * np.tanh(c)], axis=1)

    carry = contract.warm_carry(model, params, 4, FEATURES)
    assert min(float(jnp.max(jnp.abs(part))) for part in carry) > 0.0
    states, last = _recurrence(step, x, reset, np.concatenate(carry, axis=1))
    actual_carry, y = model.apply(params, x, reset, carry)
    np.testing.assert_allclose(y, states[..., width:], atol=1e-5)
    np.testing.assert_allclose(np.concatenate(actual_carry, axis=1), last, atol=1e-5)


@pytest.mark.parametrize("name", NEW_TORSOS)
def test_new_torsos_build_at_any_width_and_depth(name):
    """No width constraint: an odd --hidden-size at 3 layers passes check_torso and builds a
    torso whose output is that wide and whose carry keeps its shape."""
    check_torso(name, 5, 3)
    model = make_torso(name, 5, num_layers=3)
    x, reset = jnp.ones((2, 3, 7)), jnp.zeros((2, 3), bool)
    carry = model.initialize_carry(2)
    params = jax.eval_shape(model.init, jax.random.key(0), x, reset, carry)
    new_carry, y = jax.eval_shape(model.apply, params, x, reset, carry)
    assert y.shape == (2, 3, 5)
    assert jax.tree.map(lambda a: a.shape, new_carry) == jax.tree.map(jnp.shape, carry)


@pytest.mark.parametrize(
    ("name", "order_blind"),
    [
        ("linear_attention", True),
        ("attention_nope", True),
        ("linear_attention_decay", False),
        ("attention_rope", False),
        ("gru", False),
    ],
)
def test_which_torsos_cannot_tell_the_order_of_earlier_steps(name, order_blind):
    """Linear attention without decay and attention without positions see the steps before
    the current one as a set: permuting them leaves the output unchanged, so no width or
    training can read a velocity from positions (their CartPole-P rows, 141 and 223, against
    500 for their ordered twins). The ordered twins must change."""
    model = make_torso(name, 16)
    x = jax.random.normal(jax.random.key(0), (1, 10, 16))
    reset = jnp.zeros((1, 10), bool)
    carry = model.initialize_carry(1)
    params = jax.jit(model.init)(jax.random.key(1), x, reset, carry)
    permuted = x[:, jnp.array([3, 7, 0, 8, 1, 5, 2, 6, 4, 9])]  # the last step stays last
    apply = jax.jit(model.apply)
    change = float(jnp.max(jnp.abs(apply(params, x, reset, carry)[1][:, -1]
                                   - apply(params, permuted, reset, carry)[1][:, -1])))  # fmt: skip
    assert (change <= 1e-5) if order_blind else (change > 1e-3), change
