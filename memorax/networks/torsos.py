"""Torsos by name: what a script's ``--torso`` flag selects, so swapping memory needs no code."""

import math
from typing import Literal

import flax.linen as nn

from memorax.networks.mlp import MLP
from memorax.networks.sequence_models.base import SequenceModelWrapper
from memorax.networks.sequence_models.gru import FusedGRUCell
from memorax.networks.sequence_models.indrnn import IndRNNCell
from memorax.networks.sequence_models.rnn import RNN

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
    "attention",
    "framestack",
    "mlp",
]
TORSO_NAMES: tuple[str, ...] = TorsoName.__args__
# The recurrent cells, stepped one at a time by RNN and stacked as plain layers.
RECURRENT_CELLS: dict[str, type[nn.RNNCellBase]] = {
    "gru": FusedGRUCell,
    "lstm": nn.OptimizedLSTMCell,
    "mgu": nn.MGUCell,
    "elman": nn.SimpleCell,
    "indrnn": IndRNNCell,
}
ATTENTION_HEADS = 4
FRAMESTACK_FRAMES = 4  # --torso framestack sees the current input and the 3 before it
MAMBA2_EXPAND, MAMBA2_HEAD_DIM = 2, 32  # Mamba2's defaults: channels = expand * hidden_size


def check_torso(name: str, hidden_size: int, num_layers: int, flag: str = "--torso") -> None:
    """Raise a ValueError naming the flag and the fix for a torso that cannot be built."""
    if name not in TORSO_NAMES:
        raise ValueError(f"{flag} {name!r} is unknown; choose one of {', '.join(TORSO_NAMES)}")
    if hidden_size < 1 or num_layers < 1:
        raise ValueError(
            f"--hidden-size ({hidden_size}) and --num-layers ({num_layers}) must be positive"
        )
    if name == "attention" and hidden_size % ATTENTION_HEADS:
        raise ValueError(
            f"--hidden-size ({hidden_size}) must be divisible by the {ATTENTION_HEADS} attention "
            f"heads of --torso attention; use a multiple of {ATTENTION_HEADS}"
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

    GRU is ``FusedGRUCell`` (flax's GRU equations, faster), LSTM ``nn.OptimizedLSTMCell``, MGU
    ``nn.MGUCell``, Elman ``nn.SimpleCell`` and IndRNN ``IndRNNCell``: recurrent cells stack as
    plain layers. The parallel models (minGRU, LRU, S5, Mamba, Mamba-2) stack with residual
    connections and pre-normalisation; attention is a GPT-style stack of pre-norm residual
    self-attention and feed-forward blocks over the last ``context_length`` steps.
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
    if name == "attention":
        from memorax.networks.sequence_models import SelfAttention

        blocks: list[nn.Module] = [MLP(features=(hidden_size,))]
        for _ in range(num_layers):
            attention = SelfAttention(
                num_heads=ATTENTION_HEADS,
                head_dim=hidden_size // ATTENTION_HEADS,
                context_length=context_length,
            )
            blocks.append(Residual(PreNorm(attention)))
            blocks.append(Residual(PreNorm(FFN(hidden_dim=2 * hidden_size))))
        return Stack(blocks=blocks)
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
