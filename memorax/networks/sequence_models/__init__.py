"""Sequence models (torsos) that obey the contract in docs/design.md."""

from memorax.networks.sequence_models.attention import SelfAttention
from memorax.networks.sequence_models.base import (
    Carry,
    HoistedCell,
    SequenceModel,
    SequenceModelWrapper,
    apply_sequence_model,
    initialize_carry_of,
    reset_carry,
)
from memorax.networks.sequence_models.deltanet import (
    DeltaNet,
    DeltaNetLayer,
    GatedDeltaNet,
    GatedDeltaNetLayer,
)
from memorax.networks.sequence_models.ffm import FFM, FFMCell
from memorax.networks.sequence_models.framestack import FrameStack
from memorax.networks.sequence_models.gru import FusedGRUCell
from memorax.networks.sequence_models.indrnn import IndRNNCell
from memorax.networks.sequence_models.linear_attention import LinearAttention
from memorax.networks.sequence_models.lru import LRU, LRUCell
from memorax.networks.sequence_models.lstm import FusedLSTMCell
from memorax.networks.sequence_models.mamba import Mamba, MambaCell, MambaLayer
from memorax.networks.sequence_models.mamba2 import Mamba2, Mamba2Layer
from memorax.networks.sequence_models.memoroid import (
    LinearRecurrenceCell,
    Memoroid,
    MemoroidCell,
    MemoroidTorso,
)
from memorax.networks.sequence_models.mingru import MinGRU, MinGRULayer
from memorax.networks.sequence_models.mlstm import MLSTM, MLSTMLayer
from memorax.networks.sequence_models.rnn import RNN
from memorax.networks.sequence_models.s5 import S5, S5Cell
from memorax.networks.sequence_models.simple_cells import ElmanCell, MGUCell
from memorax.networks.sequence_models.slstm import SLSTM, SLSTMLayer

__all__ = [
    "DeltaNet",
    "DeltaNetLayer",
    "GatedDeltaNet",
    "GatedDeltaNetLayer",
    "MLSTM",
    "MLSTMLayer",
    "SLSTM",
    "SLSTMLayer",
    "FFM",
    "FFMCell",
    "LinearAttention",
    "LRU",
    "RNN",
    "FrameStack",
    "FusedGRUCell",
    "FusedLSTMCell",
    "IndRNNCell",
    "ElmanCell",
    "MGUCell",
    "S5",
    "LRUCell",
    "LinearRecurrenceCell",
    "Mamba",
    "MambaCell",
    "Mamba2",
    "Mamba2Layer",
    "MambaLayer",
    "Memoroid",
    "MinGRU",
    "MinGRULayer",
    "MemoroidCell",
    "MemoroidTorso",
    "S5Cell",
    "SelfAttention",
    "Carry",
    "SequenceModel",
    "HoistedCell",
    "SequenceModelWrapper",
    "apply_sequence_model",
    "initialize_carry_of",
    "reset_carry",
]
