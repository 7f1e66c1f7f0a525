"""SelfAttention and the GPT/GTrXL-style Stack built from it: the sequence-model contract, and the
windowed, episode-masked attention against a brute-force loop over queries and keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.networks.blocks import FFN, PreNorm, Residual, Stack
from memorax.networks.sequence_models import SelfAttention, SequenceModel
from tests import sequence_contract as contract
from tests.test_memoroid import check_long_sequence

FEATURES = contract.FEATURES


def gpt_stack(num_layers: int) -> Stack:
    """Blocks composed as make_torso("attention") composes them: x + f(norm(x))."""
    blocks = []
    for _ in range(num_layers):
        blocks.append(Residual(PreNorm(SelfAttention(num_heads=2, head_dim=4, context_length=5))))
        blocks.append(Residual(PreNorm(FFN(hidden_dim=16))))
    return Stack(blocks=blocks)


# Built once: a shared instance keeps its compiled functions from one test to the next.
ATTENTION_TORSOS = {
    # A window shorter than the 12-step sequences: it slides, and queries run in 3 blocks.
    "window_5": contract.Compiled(SelfAttention(num_heads=2, head_dim=4, context_length=5)),
    "window_16": contract.Compiled(SelfAttention(num_heads=2, head_dim=4, context_length=16)),
    "gpt_stack": contract.Compiled(gpt_stack(num_layers=1)),  # attention and FFN blocks
}


def brute_force_attention(params, x, reset, num_heads, head_dim, context_length) -> np.ndarray:
    """Each query, in float64, attends to the keys at most ``context_length`` steps back that
    no reset separates from it, with the ALiBi penalty slope_h * distance."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(x, np.float64)
    qkv = np.einsum("btf,fshd->btshd", x, p["qkv"]["kernel"]) + p["qkv"]["bias"]
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, H, D]
    slopes = 2.0 ** (-8.0 * np.arange(1, num_heads + 1) / num_heads)
    batch, length = reset.shape
    attended = np.zeros((batch, length, num_heads, head_dim))
    for b in range(batch):
        for t in range(length):
            start = max(0, t - context_length)
            keys = [s for s in range(start, t + 1) if not reset[b, s + 1 : t + 1].any()]
            for h in range(num_heads):
                logits = np.array(
                    [
                        query[b, t, h] @ key[b, s, h] / np.sqrt(head_dim) - slopes[h] * (t - s)
                        for s in keys
                    ]
                )
                weights = np.exp(logits - logits.max())
                weights /= weights.sum()
                attended[b, t, h] = weights @ value[b, list(keys), h]
    return attended.reshape(batch, length, -1) @ p["out"]["kernel"] + p["out"]["bias"]


@pytest.mark.parametrize("context_length", [3, 16])
def test_matches_brute_force_attention_across_calls(context_length):
    """A 7-step call then a 12-step call, threading the cache, equal brute-force attention over
    the 19 steps: the cache holds exactly the visible keys of the earlier call."""
    model = SelfAttention(num_heads=2, head_dim=4, context_length=context_length)
    reset = np.asarray(contract.reset_mask([[0, 9], [3, 4, 12], [0]], 19))
    x = contract.inputs(jax.random.key(21), 3, 19, FEATURES)
    carry = model.initialize_carry(3)
    params = jax.jit(model.init)(jax.random.key(0), x, jnp.asarray(reset), carry)
    apply = jax.jit(model.apply)
    carry, first = apply(params, x[:, :7], jnp.asarray(reset[:, :7]), carry)
    _, second = apply(params, x[:, 7:], jnp.asarray(reset[:, 7:]), carry)
    expected = brute_force_attention(
        params["params"], x, reset, 2, 4, context_length=context_length
    )
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), expected, atol=1e-5)


def test_documented_constructors():
    x, reset = jnp.ones((2, 3, 64)), jnp.zeros((2, 3), bool)
    attention = SelfAttention(num_heads=4, head_dim=16)
    torso = Stack(
        blocks=[
            PreNorm(Residual(SelfAttention(num_heads=4, head_dim=16))),
            PreNorm(Residual(FFN(hidden_dim=256))),
            PreNorm(Residual(SelfAttention(num_heads=4, head_dim=16))),
            PreNorm(Residual(FFN(hidden_dim=256))),
        ]
    )
    for model in [attention, torso]:
        assert isinstance(model, SequenceModel)
        carry = model.initialize_carry(2)
        params = jax.eval_shape(model.init, jax.random.key(0), x, reset, carry)
        new_carry, y = jax.eval_shape(model.apply, params, x, reset, carry)
        assert y.shape == x.shape
        assert jax.tree.map(lambda a: a.shape, new_carry) == jax.tree.map(jnp.shape, carry)


def test_long_sequence():
    check_long_sequence(SelfAttention(num_heads=2, head_dim=4, context_length=64), FEATURES)
