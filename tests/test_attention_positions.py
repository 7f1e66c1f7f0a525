"""SelfAttention's position schemes (RoPE, none) and GTrXL: attention against a float64 loop over
each query's episode window with RoPE rotations by position from the episode's start (Su et al.
2021) or no positions; GatedResidual against Parisotto et al.'s (2020) gating equations; the
--torso gtrxl layer end to end; T = 2048 with RoPE; the --torso checks and builds. The contract
checks run in test_contract.py over POSITION_TORSOS; ALiBi stays in test_self_attention.py."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.networks.blocks import GatedResidual, PreNorm
from memorax.networks.sequence_models import SelfAttention
from memorax.networks.torsos import check_torso, make_torso
from tests import sequence_contract as contract
from tests.test_memoroid import check_long_sequence

FEATURES = contract.FEATURES

# Built once: a shared instance keeps its compiled functions from one test to the next. A window
# of 5 steps is shorter than the contract's 12-step sequences: it slides, and queries run in
# blocks. The stacks are what --torso builds at --hidden-size 8 and --context-length 5.
POSITION_TORSOS = {
    "rope_window_5": contract.Compiled(
        SelfAttention(num_heads=2, head_dim=4, context_length=5, position="rope")
    ),
    "nope_window_5": contract.Compiled(
        SelfAttention(num_heads=2, head_dim=4, context_length=5, position="none")
    ),
    "attention_rope_2_layers": contract.Compiled(
        make_torso("attention_rope", 8, num_layers=2, context_length=5)
    ),
    "gtrxl_2_layers": contract.Compiled(make_torso("gtrxl", 8, num_layers=2, context_length=5)),
}


def _numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def rope_matrix(position: int, head_dim: int) -> np.ndarray:
    """Su et al.'s R_{Theta, m}: block-diagonal 2x2 rotations by m * 10000^(-2i / d)."""
    rotation = np.zeros((head_dim, head_dim))
    for i in range(head_dim // 2):
        angle = position * 10000.0 ** (-2.0 * i / head_dim)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [
            [np.cos(angle), -np.sin(angle)],
            [np.sin(angle), np.cos(angle)],
        ]
    return rotation


def reference_attention(p, x, reset, num_heads, head_dim, context_length, position) -> np.ndarray:
    """Each query, in float64, attends to the keys at most ``context_length`` steps back in its
    own episode; with RoPE, query and key are rotated by their positions counted from the
    episode's first step (the sequence's first step when no reset came before)."""
    x = np.asarray(x, np.float64)
    qkv = np.einsum("btf,fshd->btshd", x, p["qkv"]["kernel"]) + p["qkv"]["bias"]
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, H, D]
    batch, length = reset.shape
    attended = np.zeros((batch, length, num_heads, head_dim))
    for b in range(batch):
        for t in range(length):
            episode_start = max([s for s in range(t + 1) if reset[b, s]], default=0)
            keys = range(max(episode_start, t - context_length), t + 1)
            for h in range(num_heads):
                q, k = query[b, t, h], key[b, list(keys), h]
                if position == "rope":
                    q = rope_matrix(t - episode_start, head_dim) @ q
                    k = np.stack(
                        [rope_matrix(s - episode_start, head_dim) @ key[b, s, h] for s in keys]
                    )
                logits = k @ q / np.sqrt(head_dim)
                weights = np.exp(logits - logits.max())
                attended[b, t, h] = (weights / weights.sum()) @ value[b, list(keys), h]
    return attended.reshape(batch, length, -1) @ p["out"]["kernel"] + p["out"]["bias"]


def reference_gate(p, x, y) -> np.ndarray:
    """Parisotto et al.'s g^GRU(x, y): r = sigmoid(W_r y + U_r x), z = sigmoid(W_z y + U_z x -
    b_g), h = tanh(W_g y + U_g (r * x)), (1 - z) x + z h; W = [W_r | W_z | W_g], U_rz = [U_r |
    U_z] as GatedResidual stores them."""
    f = x.shape[-1]
    w, u_rz, u_g = p["W"]["kernel"], p["U_rz"]["kernel"], p["U_g"]["kernel"]
    r = _sigmoid(y @ w[:, :f] + x @ u_rz[:, :f])
    z = _sigmoid(y @ w[:, f : 2 * f] + x @ u_rz[:, f:] - p["gate_bias"])
    h = np.tanh(y @ w[:, 2 * f :] + (r * x) @ u_g)
    return (1.0 - z) * x + z * h


def _init(model, x, reset):
    """Parameters from a jitted init (op by op it costs seconds for a stack)."""
    return jax.jit(model.init)(jax.random.key(0), x, reset, model.initialize_carry(x.shape[0]))


def _two_calls(model, params, x, reset):
    """A 7-step call, then the rest, threading the carry (the cache holds the first call)."""
    apply = jax.jit(model.apply)
    carry, first = apply(params, x[:, :7], reset[:, :7], model.initialize_carry(x.shape[0]))
    _, second = apply(params, x[:, 7:], reset[:, 7:], carry)
    return jnp.concatenate([first, second], axis=1)


RESET = contract.reset_mask([[0, 9], [3, 4, 12], []], 19)  # row 2: one 19-step episode


@pytest.mark.parametrize("position", ["rope", "none"])
@pytest.mark.parametrize("context_length", [3, 16])
def test_matches_reference_attention_across_calls(position, context_length):
    """7 then 12 steps equal the float64 loop over the 19: episodes longer than the window (RoPE
    positions up to 18) and a cache that must hold the right keys and forget the stale ones."""
    model = SelfAttention(num_heads=2, head_dim=4, context_length=context_length, position=position)
    x = contract.inputs(jax.random.key(21), 3, 19, FEATURES)
    params = _init(model, x, RESET)
    expected = reference_attention(
        _numpy(params["params"]), x, np.asarray(RESET), 2, 4, context_length, position
    )
    np.testing.assert_allclose(_two_calls(model, params, x, RESET), expected, atol=1e-5)


def test_rope_differs_from_no_positions():
    """With the same parameters, RoPE changes the outputs (the rotation is not a no-op)."""
    x = contract.inputs(jax.random.key(21), 3, 19, FEATURES)
    outputs = []
    for position in ["rope", "none"]:
        model = SelfAttention(num_heads=2, head_dim=4, context_length=16, position=position)
        params = _init(model, x, RESET)
        outputs.append(model.apply(params, x, RESET, model.initialize_carry(3))[1])
    assert float(jnp.max(jnp.abs(outputs[0] - outputs[1]))) > 1e-3


def test_gated_residual_matches_the_paper():
    """GatedResidual(Dense) with every parameter moved off its initial value: g(x, ReLU(Dense
    x)) by the equations, float64."""
    model = GatedResidual(nn.Dense(FEATURES))
    x = contract.inputs(jax.random.key(5), 2, 4, FEATURES)
    reset = jnp.zeros((2, 4), bool)
    params = _init(model, x, reset)
    assert np.all(np.asarray(params["params"]["gate_bias"]) == 2.0)  # b_g > 0 at the start
    noise = jax.random.split(jax.random.key(6), len(jax.tree.leaves(params)))
    leaves = [
        a + 0.3 * jax.random.normal(k, a.shape)
        for a, k in zip(jax.tree.leaves(params), noise, strict=True)
    ]
    params = jax.tree.unflatten(jax.tree.structure(params), leaves)
    p = _numpy(params["params"])
    x64 = np.asarray(x, np.float64)
    y = np.maximum(x64 @ p["module"]["kernel"] + p["module"]["bias"], 0.0)
    _, actual = model.apply(params, x, reset, ())
    np.testing.assert_allclose(actual, reference_gate(p, x64, y), atol=1e-5)


def test_gate_bias_pulls_towards_the_identity():
    """b_g enters z with a minus sign: a large b_g closes the gate, g(x, y) = x, whatever the
    module; at b_g = 2 (the start) the block is closer to x than at b_g = 0."""
    model = GatedResidual(nn.Dense(FEATURES))
    x = contract.inputs(jax.random.key(5), 2, 4, FEATURES)
    reset = jnp.zeros((2, 4), bool)
    params = _init(model, x, reset)

    def distance_from_identity(bias: float) -> float:
        biased = {"params": {**params["params"], "gate_bias": jnp.full(FEATURES, bias)}}
        return float(jnp.max(jnp.abs(model.apply(biased, x, reset, ())[1] - x)))

    assert distance_from_identity(40.0) < 1e-6
    assert distance_from_identity(2.0) < distance_from_identity(0.0)


def test_gtrxl_layer_matches_the_paper():
    """--torso gtrxl at one layer, every parameter moved off its initial value, 7 + 12 steps:
    e = ReLU(W_e x + b_e); Y = g(e, ReLU(MHA(LN(e)))) with RoPE; E = g(Y, ReLU(FFN(LN(Y)))),
    FFN = Dense(GELU(Dense)) (Parisotto et al.'s identity map reordering and gating)."""
    model = make_torso("gtrxl", 8, num_layers=1, context_length=3)
    x = contract.inputs(jax.random.key(21), 3, 19, FEATURES)
    params = _init(model, x, RESET)
    noise = jax.random.split(jax.random.key(7), len(jax.tree.leaves(params)))
    leaves = [
        a + 0.2 * jax.random.normal(k, a.shape)
        for a, k in zip(jax.tree.leaves(params), noise, strict=True)
    ]
    params = jax.tree.unflatten(jax.tree.structure(params), leaves)
    p = _numpy(params["params"])

    def layer_norm(v, norm):
        centred = v - v.mean(-1, keepdims=True)
        return (
            centred / np.sqrt(centred.var(-1, keepdims=True) + 1e-6) * norm["scale"] + norm["bias"]
        )

    def gelu(v):  # flax's nn.gelu: the tanh approximation
        return 0.5 * v * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (v + 0.044715 * v**3)))

    embed = p["blocks_0"]["Dense_0"]
    e = np.maximum(np.asarray(x, np.float64) @ embed["kernel"] + embed["bias"], 0.0)
    attention_block, ffn_block = p["blocks_1"], p["blocks_2"]
    normed = layer_norm(e, attention_block["module"]["LayerNorm_0"])
    attended = reference_attention(
        attention_block["module"]["module"], normed, np.asarray(RESET), 4, 2, 3, "rope"
    )
    y = reference_gate(attention_block, e, np.maximum(attended, 0.0))
    ffn = ffn_block["module"]["module"]
    hidden = gelu(
        layer_norm(y, ffn_block["module"]["LayerNorm_0"]) @ ffn["Dense_0"]["kernel"]
        + ffn["Dense_0"]["bias"]
    )
    out = hidden @ ffn["Dense_1"]["kernel"] + ffn["Dense_1"]["bias"]
    expected = reference_gate(ffn_block, y, np.maximum(out, 0.0))
    np.testing.assert_allclose(_two_calls(model, params, x, RESET), expected, atol=1e-5)


def test_rope_long_sequence():
    """T = 2048 with sparse resets and a 64-step window: finite, and one call equals 2048 one-step
    calls within test_memoroid's LONG_TOLERANCE (2e-5): RoPE's angles stay within the window."""
    check_long_sequence(
        SelfAttention(num_heads=2, head_dim=4, context_length=64, position="rope"), FEATURES
    )


def test_position_errors():
    with pytest.raises(
        ValueError, match="position 'sinusoid' is unknown; choose one of alibi, rope, none"
    ):
        SelfAttention(num_heads=2, head_dim=4, position="sinusoid")
    with pytest.raises(ValueError, match=r"head_dim \(3\) must be even"):
        SelfAttention(num_heads=2, head_dim=3, position="rope")


@pytest.mark.parametrize(
    ("name", "width", "multiple"),
    [("attention_rope", 12, 8), ("gtrxl", 20, 8), ("attention_nope", 10, 4), ("attention", 6, 4)],
)
def test_check_torso_refuses_widths_the_heads_cannot_split(name, width, multiple):
    with pytest.raises(
        ValueError,
        match=rf"^--hidden-size \({width}\) must be divisible by the 4 heads of --torso {name}"
        rf"(, each an even width \(RoPE\))?; use a multiple of {multiple}$",
    ):
        check_torso(name, width, 1)


@pytest.mark.parametrize(("name", "width", "layers"), [("attention_nope", 12, 3), ("gtrxl", 16, 3)])
def test_torsos_build_at_other_widths_and_depths(name, width, layers):
    """A width and depth other than the contract's: output and carry keep their shapes, and gtrxl
    gates both sub-blocks of every layer."""
    check_torso(name, width, layers)
    model = make_torso(name, width, num_layers=layers, context_length=7)
    x, reset = jnp.ones((2, 3, FEATURES)), jnp.zeros((2, 3), bool)
    carry = model.initialize_carry(2)
    params = jax.eval_shape(model.init, jax.random.key(0), x, reset, carry)
    new_carry, y = jax.eval_shape(model.apply, params, x, reset, carry)
    assert y.shape == (2, 3, width)
    assert jax.tree.map(lambda a: a.shape, new_carry) == jax.tree.map(jnp.shape, carry)
    gates = [block for block in model.blocks if isinstance(block, GatedResidual)]
    assert len(gates) == (2 * layers if name == "gtrxl" else 0)
    positions = {block.module.module.position for block in model.blocks[1::2]}
    assert positions == {"rope" if name == "gtrxl" else "none"}
    assert all(isinstance(block.module, PreNorm) for block in model.blocks[1:])
