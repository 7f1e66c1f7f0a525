"""Torsos by name: what a script's ``--torso`` flag selects, so swapping memory needs no code."""

import math
from typing import Literal

import flax.linen as nn

from memorax.networks.mlp import MLP
from memorax.networks.sequence_models.base import SequenceModelWrapper
from memorax.networks.sequence_models.gru import FusedGRUCell
from memorax.networks.sequence_models.indrnn import IndRNNCell
from memorax.networks.sequence_models.lstm import FusedLSTMCell
from memorax.networks.sequence_models.rnn import RNN
from memorax.networks.sequence_models.simple_cells import ElmanCell, MGUCell

TorsoName = Literal[
    "gru",
    "lstm",
    "mgu",
    "elman",
    "indrnn",
    "mingru",
    "lru",
    "s5",
    "mamba",
    "mamba2",
    "deltanet",
    "gated_deltanet",
    "mlstm",
    "slstm",
    "ffm",
    "linear_attention",
    "linear_attention_decay",
    "attention",
    "attention_rope",
    "attention_nope",
    "gtrxl",
    "framestack",
    "mlp",
]
TORSO_NAMES: tuple[str, ...] = TorsoName.__args__
# The recurrent cells, stepped one at a time by RNN and stacked as plain layers.
RECURRENT_CELLS: dict[str, type[nn.RNNCellBase]] = {
    "gru": FusedGRUCell,
    "lstm": FusedLSTMCell,
    "mgu": MGUCell,
    "elman": ElmanCell,
    "indrnn": IndRNNCell,
}
ATTENTION_HEADS = 4
# The position scheme of each attention torso (SelfAttention's ``position``).
ATTENTION_POSITIONS = {
    "attention": "alibi",
    "attention_rope": "rope",
    "attention_nope": "none",
    "gtrxl": "rope",
}
FRAMESTACK_FRAMES = 4  # --torso framestack sees the current input and the 3 before it
MAMBA2_EXPAND, MAMBA2_HEAD_DIM = 2, 32  # Mamba2's defaults: channels = expand * hidden_size
LINEAR_ATTENTION_HEADS = 4  # --torso linear_attention(_decay): heads of hidden_size / 4
XLSTM_HEADS = 4  # --torso mlstm and slstm: heads of hidden_size / 4
DELTANET_HEADS = 4  # --torso deltanet and gated_deltanet: heads of hidden_size / 4


def check_torso(name: str, hidden_size: int, num_layers: int, flag: str = "--torso") -> None:
    """Raise a ValueError naming the flag and the fix for a torso that cannot be built."""
    if name not in TORSO_NAMES:
        raise ValueError(f"{flag} {name!r} is unknown; choose one of {', '.join(TORSO_NAMES)}")
    if hidden_size < 1 or num_layers < 1:
        raise ValueError(
            f"--hidden-size ({hidden_size}) and --num-layers ({num_layers}) must be positive"
        )
    heads = {
        **dict.fromkeys(ATTENTION_POSITIONS, ATTENTION_HEADS),
        **dict.fromkeys(("linear_attention", "linear_attention_decay"), LINEAR_ATTENTION_HEADS),
        **dict.fromkeys(("mlstm", "slstm"), XLSTM_HEADS),
        **dict.fromkeys(("deltanet", "gated_deltanet"), DELTANET_HEADS),
    }.get(name)
    # RoPE rotates pairs of channels, so its heads need an even width.
    rope = ATTENTION_POSITIONS.get(name) == "rope"
    if heads and hidden_size % (heads * (2 if rope else 1)):
        raise ValueError(
            f"--hidden-size ({hidden_size}) must be divisible by the {heads} heads of --torso "
            f"{name}{', each an even width (RoPE)' if rope else ''}; use a multiple of "
            f"{heads * (2 if rope else 1)}"
        )
    if name == "mamba2" and (MAMBA2_EXPAND * hidden_size) % MAMBA2_HEAD_DIM:
        multiple = MAMBA2_HEAD_DIM // math.gcd(MAMBA2_HEAD_DIM, MAMBA2_EXPAND)
        raise ValueError(
            f"--hidden-size ({hidden_size}) times the expansion {MAMBA2_EXPAND} of --torso mamba2 "
            f"must be divisible by its head size {MAMBA2_HEAD_DIM}; use a multiple of {multiple}"
        )


def make_torso(
    name: str, hidden_size: int, num_layers: int = 1, context_length: int = 64
) -> nn.Module:
    """The torso called ``name``, ``hidden_size`` wide and ``num_layers`` deep.

    GRU is ``FusedGRUCell`` and LSTM ``FusedLSTMCell`` (flax's equations, input projection hoisted
    out of the time loop), MGU ``MGUCell`` and Elman ``ElmanCell`` (flax's ``nn.MGUCell`` and
    ``nn.SimpleCell``, same parameters, input projection hoisted) and IndRNN ``IndRNNCell``:
    recurrent cells stack as plain layers. The parallel models (minGRU, LRU, S5, Mamba, Mamba-2)
    stack with residual connections and pre-normalisation; attention is a GPT-style stack of
    pre-norm residual self-attention and feed-forward blocks over the last ``context_length`` steps,
    with ALiBi positions (``attention``), RoPE (``attention_rope``) or none (``attention_nope``).
    ``gtrxl`` is Parisotto et al.'s GTrXL: the same pre-norm blocks, each followed by a GRU-type
    gate (``GatedResidual``) instead of the residual add, with RoPE positions (relative, like
    Transformer-XL's).
    ``ffm`` (Fast and Forgetful Memory) stacks like the parallel models, ``linear_attention``
    is the GPT-style stack with Katharopoulos et al.'s linear attention (every earlier step of the
    episode, through a [D, D] state per head) and ``linear_attention_decay`` the same with a
    learned decay per head.
    ``mlstm`` and ``slstm`` are xLSTM's cells (Beck et al. 2024) in ``XLSTM_HEADS`` heads,
    stacked like the parallel models: the mLSTM's matrix memory runs chunk-parallel in time,
    the sLSTM (head-wise recurrent matrices) one step at a time.
    ``deltanet`` and ``gated_deltanet`` (DeltaNet, Gated DeltaNet: a [D, D] state per head
    edited by the delta rule, chunk-parallel in time) in ``DELTANET_HEADS`` heads stack like the
    parallel models.
    ``framestack`` is an MLP ``num_layers`` deep over the last ``FRAMESTACK_FRAMES`` inputs, and
    ``mlp`` the memoryless control: the same width and depth with no carry at all.
    """
    check_torso(name, hidden_size, num_layers)
    from memorax.networks.blocks import FFN, PreNorm, Residual, Stack

    if name in RECURRENT_CELLS:
        cell = RECURRENT_CELLS[name]
        layers = [RNN(cell(features=hidden_size)) for _ in range(num_layers)]
        return layers[0] if num_layers == 1 else Stack(blocks=layers)
    if name == "mlp":
        return SequenceModelWrapper(MLP(features=(hidden_size,) * num_layers))
    if name == "framestack":
        from memorax.networks.sequence_models import FrameStack

        return FrameStack(features=hidden_size, num_frames=FRAMESTACK_FRAMES, num_layers=num_layers)
    if name in ATTENTION_POSITIONS:
        from memorax.networks.blocks import GatedResidual
        from memorax.networks.sequence_models import SelfAttention

        skip = GatedResidual if name == "gtrxl" else Residual
        blocks: list[nn.Module] = [MLP(features=(hidden_size,))]
        for _ in range(num_layers):
            attention = SelfAttention(
                num_heads=ATTENTION_HEADS,
                head_dim=hidden_size // ATTENTION_HEADS,
                context_length=context_length,
                position=ATTENTION_POSITIONS[name],
            )
            blocks.append(skip(PreNorm(attention)))
            blocks.append(skip(PreNorm(FFN(hidden_dim=2 * hidden_size))))
        return Stack(blocks=blocks)
    if name in ("linear_attention", "linear_attention_decay"):
        from memorax.networks.sequence_models import LinearAttention

        layers = [MLP(features=(hidden_size,))]
        for _ in range(num_layers):
            attention = LinearAttention(
                num_heads=LINEAR_ATTENTION_HEADS,
                head_dim=hidden_size // LINEAR_ATTENTION_HEADS,
                decay=name == "linear_attention_decay",
            )
            layers.append(Residual(PreNorm(attention)))
            layers.append(Residual(PreNorm(FFN(hidden_dim=2 * hidden_size))))
        return Stack(blocks=layers)
    if name in ("mlstm", "slstm"):
        from memorax.networks.sequence_models import MLSTM, SLSTM

        xlstm = MLSTM if name == "mlstm" else SLSTM
        return xlstm(hidden_dim=hidden_size, num_layers=num_layers, num_heads=XLSTM_HEADS)
    if name == "ffm":
        from memorax.networks.sequence_models import FFM

        return FFM(hidden_dim=hidden_size, num_layers=num_layers)
    if name in ("deltanet", "gated_deltanet"):
        from memorax.networks.sequence_models import DeltaNet, GatedDeltaNet

        delta_net = DeltaNet if name == "deltanet" else GatedDeltaNet
        return delta_net(hidden_dim=hidden_size, num_layers=num_layers, num_heads=DELTANET_HEADS)
    from memorax.networks.sequence_models import LRU, S5, Mamba, Mamba2, MinGRU

    if name == "mingru":
        return MinGRU(hidden_dim=hidden_size, num_layers=num_layers)
    if name == "mamba2":
        return Mamba2(
            hidden_dim=hidden_size,
            num_layers=num_layers,
            head_dim=MAMBA2_HEAD_DIM,
            expand=MAMBA2_EXPAND,
        )
    if name == "lru":
        return LRU(hidden_dim=hidden_size, num_layers=num_layers)
    if name == "s5":
        return S5(hidden_dim=hidden_size, state_dim=hidden_size, num_layers=num_layers)
    return Mamba(hidden_dim=hidden_size, num_layers=num_layers)
