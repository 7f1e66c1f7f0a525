"""Mamba-2: the chunked SSD form against the plain recurrence stepped here from the layer's raw
parameters, at T = 2048 against T one-step calls, and the --torso mamba2 refusal (the contract
checks run in test_contract.py over MAMBA2_TORSOS)."""

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.networks.sequence_models import Mamba2, Mamba2Layer
from memorax.networks.torsos import check_torso, make_torso
from tests import sequence_contract as contract
from tests.test_memoroid import check_long_sequence

FEATURES = contract.FEATURES

# Chunks of 5 over the contract's T = 12 (and 7, 10, 6): several chunks, the last one padded.
MAMBA2_TORSOS = {
    "mamba2_layer": contract.Compiled(
        Mamba2Layer(features=8, state_dim=4, head_dim=4, chunk_size=5)
    ),
    "mamba2_2_layers": contract.Compiled(
        Mamba2(hidden_dim=8, state_dim=4, head_dim=4, num_layers=2, chunk_size=5)
    ),
}


@partial(jax.jit, static_argnames=("head_dim",))
def _mamba2_reference(p, x, reset, state, window, head_dim: int):
    """Mamba-2 stepped one input at a time: h_t = a_t h_{t-1} + dt_t x_t B_t^T per head,
    y_t = h_t C_t + D x_t; a reset zeroes h and empties the conv window."""
    channels = p["out_proj"]["kernel"].shape[0]
    state_dim = state.shape[-1]
    outputs = []
    for t in range(x.shape[1]):
        keep = ~reset[:, t]
        state = jnp.where(keep[:, None, None, None], state, 0.0)
        window = jnp.where(keep[:, None, None], window, 0.0)
        projected = x[:, t] @ p["in_proj"]["kernel"]
        z, xbc, dt = jnp.split(projected, [channels, 2 * channels + 2 * state_dim], axis=-1)
        taps = jnp.concatenate([window, xbc[:, None]], axis=1)  # [B, K, E + 2N], oldest first
        window = taps[:, 1:]
        xbc = nn.silu(jnp.sum(taps * p["conv_weight"], axis=1) + p["conv_bias"])
        u, input_b, output_c = jnp.split(xbc, [channels, channels + state_dim], axis=-1)
        u = u.reshape(u.shape[0], -1, head_dim)  # [B, H, P]
        dt = nn.softplus(dt + p["dt_bias"])  # [B, H]
        a = jnp.exp(dt * -jnp.exp(p["A_log"]))  # [B, H]
        state = (
            a[..., None, None] * state + (dt[..., None] * u)[..., None] * input_b[:, None, None, :]
        )  # [B, H, P, N]
        y = jnp.einsum("bhpn,bn->bhp", state, output_c) + p["D"][:, None] * u
        gated = y.reshape(y.shape[0], channels) * nn.silu(z)
        normed = gated / jnp.sqrt(jnp.mean(gated**2, axis=-1, keepdims=True) + 1e-5)
        outputs.append((normed * p["norm"]["scale"]) @ p["out_proj"]["kernel"])
    return (state, window), jnp.stack(outputs, axis=1)


def test_chunked_ssd_matches_recurrence():
    """Resets at a chunk's first step, inside chunks, consecutive and on the last step, from a
    warm carry, for chunks that divide T, that do not, and that exceed it."""
    reset = contract.reset_mask([[0, 5], [3, 4, 11], []], 12)
    x = contract.inputs(jax.random.key(11), 3, 12, FEATURES)
    model = MAMBA2_TORSOS["mamba2_layer"]
    params = contract.init_params(model, x, reset)
    carry = contract.warm_carry(model, params, 3, FEATURES)
    assert float(jnp.min(jnp.abs(carry[1]))) > 0.0  # a window that a missed reset would leak
    expected_carry, expected = _mamba2_reference(params["params"], x, reset, *carry, head_dim=4)
    for chunk_size in [4, 5, 64]:
        layer = Mamba2Layer(features=8, state_dim=4, head_dim=4, chunk_size=chunk_size)
        actual_carry, y = jax.jit(layer.apply)(params, x, reset, carry)
        np.testing.assert_allclose(y, expected, atol=1e-5, err_msg=f"chunk_size {chunk_size}")
        assert contract.max_abs_diff(actual_carry, expected_carry) <= 1e-5, chunk_size


def test_long_sequence():
    """T = 2048 in chunks of 48 (the last one padded): finite, and equal to 2048 one-step calls
    within test_memoroid's LONG_TOLERANCE."""
    check_long_sequence(Mamba2Layer(features=8, state_dim=4, head_dim=4, chunk_size=48), FEATURES)


def test_defaults_and_torso_flag():
    """--torso mamba2 builds Mamba2 (8 heads of [32, 64] at width 128); widths whose channels do
    not split into heads of 32 are refused in one line that names the widths that work."""
    x, reset = jnp.ones((2, 3, 5)), jnp.zeros((2, 3), bool)
    model = make_torso("mamba2", 128, num_layers=2)
    assert isinstance(model, Mamba2)
    carry = model.initialize_carry(2)
    assert [leaf.shape for leaf in jax.tree.leaves(carry)] == [(2, 8, 32, 64), (2, 3, 384)] * 2
    params = jax.eval_shape(model.init, jax.random.key(0), x, reset, carry)
    new_carry, y = jax.eval_shape(model.apply, params, x, reset, carry)
    assert y.shape == (2, 3, 128)
    assert jax.tree.map(lambda a: a.shape, new_carry) == jax.tree.map(jnp.shape, carry)

    check_torso("mamba2", 48, 1)
    needle = (
        r"^--hidden-size \(20\) times the expansion 2 of --torso mamba2 must be divisible by its "
        r"head size 32; use a multiple of 16$"
    )
    with pytest.raises(ValueError, match=needle):
        check_torso("mamba2", 20, 1)
    with pytest.raises(ValueError, match=r"head_dim \(32\); choose features a multiple of 16"):
        jax.eval_shape(Mamba2(hidden_dim=20).init, jax.random.key(0), x, reset, carry)
