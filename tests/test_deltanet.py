"""DeltaNet and Gated DeltaNet: the chunked (UT transform) form and the scan against the papers'
recurrence S_t = S_{t-1} alpha_t (I - beta_t k_t k_t^T) + beta_t v_t k_t^T stepped here in float64
from the layers' raw parameters, with and without the papers' short convolution; the two modes'
gradients; T = 2048 against T one-step calls; the --torso flags (the contract checks run in
test_contract.py over DELTANET_TORSOS)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.networks.sequence_models import (
    DeltaNet,
    DeltaNetLayer,
    GatedDeltaNet,
    GatedDeltaNetLayer,
)
from memorax.networks.torsos import check_torso, make_torso
from tests import sequence_contract as contract
from tests.test_memoroid import check_long_sequence

FEATURES = contract.FEATURES
LAYERS = {"deltanet": DeltaNetLayer, "gated_deltanet": GatedDeltaNetLayer}

# Built once: a shared instance keeps its compiled functions from one test to the next. Chunks
# of 5 over the contract's T = 12 (and 10, 8, 6): several chunks, the last one padded; the
# 2-layer torsos are what --torso builds at --hidden-size 8 (4 heads of 2, one chunk).
DELTANET_TORSOS = {
    "deltanet_layer": contract.Compiled(DeltaNetLayer(features=8, num_heads=2, chunk_size=5)),
    "deltanet_2_layers": contract.Compiled(make_torso("deltanet", 8, num_layers=2)),
    "gated_deltanet_layer": contract.Compiled(
        GatedDeltaNetLayer(features=8, num_heads=2, chunk_size=5)
    ),
    "gated_deltanet_2_layers": contract.Compiled(make_torso("gated_deltanet", 8, num_layers=2)),
    # The papers' short convolution (width 3 here, so that resets fall inside its window).
    "gated_deltanet_conv_layer": contract.Compiled(
        GatedDeltaNetLayer(features=8, num_heads=2, chunk_size=5, conv_kernel=3)
    ),
}


def _silu(v: np.ndarray) -> np.ndarray:
    return v / (1.0 + np.exp(-v))


def _softplus(v: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, v)


def _reference(params, x, reset, carry, num_heads: int, gated: bool):
    """The papers' layer stepped one input at a time in float64: q, k = l2norm(SiLU(W x)),
    v = SiLU(W_v x), beta = sigmoid(W_beta x), alpha = exp(-exp(A_log) softplus(W_a x + dt_bias))
    (1 for DeltaNet), S = S alpha (I - beta k k^T) + beta v k^T, o = S q; read out
    out_proj(o) or out_proj(RMSNorm_head(o) * SiLU(W_g x)). A reset zeroes S first. With the
    short convolution, W x is replaced by sum_k w_k u_{t-K+1+k} over the projections u = W x of
    the same episode (the carry's window holds the K - 1 before step 0)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    x, reset = np.asarray(x, np.float64), np.asarray(reset)
    convolved = "conv_weight" in p
    state, window = carry if convolved else (carry, None)
    state = np.array(state, np.float64)  # [B, H, V, K]
    if convolved:
        window = list(np.moveaxis(np.asarray(window, np.float64), 1, 0))  # K - 1 of [B, 3F]
    batch, length, _ = x.shape
    features = p["out_proj"]["kernel"].shape[0]
    head_dim = features // num_heads
    identity = np.eye(head_dim)
    outputs = np.zeros((batch, length, features))
    for t in range(length):
        state[reset[:, t]] = 0.0
        projected = x[:, t] @ p["qkv_proj"]["kernel"]
        if convolved:  # inputs of an earlier episode leave the window
            projected, window = contract.causal_conv_step(
                window, projected, reset[:, t], p["conv_weight"]
            )
        qkv = _silu(projected).reshape(batch, 3, num_heads, head_dim)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # [B, H, D]
        q = q / np.sqrt(np.sum(q**2, axis=-1, keepdims=True) + 1e-6)
        k = k / np.sqrt(np.sum(k**2, axis=-1, keepdims=True) + 1e-6)
        beta = 1.0 / (1.0 + np.exp(-(x[:, t] @ p["beta_proj"]["kernel"])))  # [B, H]
        alpha = np.ones_like(beta)
        if gated:
            dt = _softplus(x[:, t] @ p["decay_proj"]["kernel"] + p["dt_bias"])
            alpha = np.exp(-np.exp(p["A_log"]) * dt)
        o = np.zeros((batch, num_heads, head_dim))
        for b in range(batch):
            for h in range(num_heads):
                kk = np.outer(k[b, h], k[b, h])
                transition = alpha[b, h] * (identity - beta[b, h] * kk)
                write = beta[b, h] * np.outer(v[b, h], k[b, h])
                state[b, h] = state[b, h] @ transition + write
                o[b, h] = state[b, h] @ q[b, h]
        if gated:
            o = o / np.sqrt(np.mean(o**2, axis=-1, keepdims=True) + 1e-5) * p["norm"]["scale"]
            gate = _silu(x[:, t] @ p["gate_proj"]["kernel"])
            outputs[:, t] = (o.reshape(batch, features) * gate) @ p["out_proj"]["kernel"]
        else:
            outputs[:, t] = o.reshape(batch, features) @ p["out_proj"]["kernel"]
    if convolved:
        return (state, np.stack(window, axis=1)), outputs
    return state, outputs


@pytest.mark.parametrize(
    ("name", "conv_kernel"), [(n, 0) for n in sorted(LAYERS)] + [("gated_deltanet", 3)]
)
def test_matches_the_papers_recurrence(name, conv_kernel):
    """Resets at a chunk's first step, inside chunks, consecutive and on the last step, from a
    warm carry: the scan and chunks that divide T, that do not, and that exceed it; with the
    convolution (width 3), resets 1 and 2 steps apart inside its window."""
    reset = contract.reset_mask([[0, 5], [3, 4, 11], [], [6, 8]], 12)
    x = contract.inputs(jax.random.key(11), 4, 12, FEATURES)
    model = DELTANET_TORSOS[f"{name}_{'conv_' if conv_kernel else ''}layer"]
    params = contract.init_params(model, x, reset)
    carry = contract.warm_carry(model, params, 4, FEATURES)
    for leaf in jax.tree.leaves(carry):  # a carry to leak, in every row (S and the window)
        assert float(jnp.min(jnp.max(jnp.abs(leaf), axis=tuple(range(1, leaf.ndim))))) > 0.0
    expected_carry, expected = _reference(
        params, x, reset, carry, num_heads=2, gated=name == "gated_deltanet"
    )
    for mode, chunk_size in [("chunked", 4), ("chunked", 5), ("chunked", 64), ("scan", 5)]:
        layer = LAYERS[name](
            features=8, num_heads=2, chunk_size=chunk_size, mode=mode, conv_kernel=conv_kernel
        )
        actual_carry, y = jax.jit(layer.apply)(params, x, reset, carry)
        np.testing.assert_allclose(y, expected, atol=1e-5, err_msg=f"{mode} {chunk_size}")
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), actual_carry, expected_carry
        )


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_modes_have_equal_gradients(name):
    """The chunked form's backward pass (through the triangular solve and the pass between
    chunks) equals the scan's, for the parameters and the incoming carry."""
    reset = contract.reset_mask([[0, 6], [2, 3, 9], [10, 11]], 12)
    x = contract.inputs(jax.random.key(12), 3, 12, FEATURES)
    model = DELTANET_TORSOS[f"{name}_layer"]
    params = contract.init_params(model, x, reset)
    carry = contract.warm_carry(model, params, 3, FEATURES)

    def gradients(mode: str):
        layer = LAYERS[name](features=8, num_heads=2, chunk_size=5, mode=mode)

        def loss(params, carry):
            new_carry, y = layer.apply(params, x, reset, carry)
            return jnp.sum(y**2) + jnp.sum(new_carry**2)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, carry)

    chunked, scanned = gradients("chunked"), gradients("scan")
    assert contract.max_abs_diff(chunked, scanned) <= 1e-4
    assert float(jnp.max(jnp.abs(scanned[1]))) > 0.0  # the carry reaches the rows without resets


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_long_sequence(name):
    """T = 2048 in chunks of 48 (the last one padded): finite, and equal to 2048 one-step calls
    (the scan) within test_memoroid's LONG_TOLERANCE."""
    check_long_sequence(LAYERS[name](features=8, num_heads=2, chunk_size=48), FEATURES)


@pytest.mark.parametrize(
    ("name", "torso"), [("deltanet", DeltaNet), ("gated_deltanet", GatedDeltaNet)]
)
def test_torso_flag(name, torso):
    """--torso builds 4 heads at any width they divide, chunked in 32s (a [32, 32] state per
    head at 128, heads of 3 at 12, 3 layers deep); other widths are refused in one line that
    names the fix."""
    x, reset = jnp.ones((2, 3, 5)), jnp.zeros((2, 3), bool)
    for width, layers in [(128, 2), (12, 3)]:
        check_torso(name, width, layers)
        model = make_torso(name, width, num_layers=layers)
        assert isinstance(model, torso)
        assert (model.mode, model.chunk_size) == ("chunked", 32)
        carry = model.initialize_carry(2)
        head = width // 4
        assert [leaf.shape for leaf in jax.tree.leaves(carry)] == [(2, 4, head, head)] * layers
        params = jax.eval_shape(model.init, jax.random.key(0), x, reset, carry)
        new_carry, y = jax.eval_shape(model.apply, params, x, reset, carry)
        assert y.shape == (2, 3, width)
        assert jax.tree.map(lambda a: a.shape, new_carry) == jax.tree.map(jnp.shape, carry)

    needle = (
        rf"^--hidden-size \(30\) must be divisible by the 4 heads of --torso {name}; "
        r"use a multiple of 4$"
    )
    with pytest.raises(ValueError, match=needle):
        check_torso(name, 30, 1)
    layer = LAYERS[name](features=30, num_heads=4)
    with pytest.raises(ValueError, match=r"^features \(30\) must be divisible by num_heads \(4\)"):
        jax.eval_shape(layer.init, jax.random.key(0), x, reset, layer.initialize_carry(2))
    convolved = LAYERS[name](features=8, num_heads=2, conv_kernel=-1)
    with pytest.raises(ValueError, match=r"^conv_kernel \(-1\) must be 0 \(none\) or more"):
        jax.eval_shape(convolved.init, jax.random.key(0), x, reset, layer.initialize_carry(2))
