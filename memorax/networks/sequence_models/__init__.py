"""Sequence models (torsos) that obey the contract in DESIGN.md."""

from memorax.networks.sequence_models.base import (
    Carry,
    SequenceModel,
    SequenceModelWrapper,
    apply_sequence_model,
    initialize_carry_of,
    reset_carry,
)
from memorax.networks.sequence_models.rnn import RNN

__all__ = [
    "RNN",
    "Carry",
    "SequenceModel",
    "SequenceModelWrapper",
    "apply_sequence_model",
    "initialize_carry_of",
    "reset_carry",
]
