"""Networks: feature extractors, torsos (sequence models and blocks) and heads."""

from memorax.networks import heads
from memorax.networks.feature_extractor import FeatureExtractor, observation_extractor
from memorax.networks.mlp import CNN, MLP
from memorax.networks.network import Network, SharedActorCritic, shares_torso
from memorax.networks.sequence_models import (
    RNN,
    ElmanCell,
    FusedGRUCell,
    FusedLSTMCell,
    HoistedCell,
    LRUCell,
    MambaCell,
    Memoroid,
    MGUCell,
    S5Cell,
    SequenceModel,
    SequenceModelWrapper,
)

__all__ = [
    "CNN",
    "MLP",
    "RNN",
    "ElmanCell",
    "FeatureExtractor",
    "FusedGRUCell",
    "FusedLSTMCell",
    "LRUCell",
    "MambaCell",
    "Memoroid",
    "MGUCell",
    "Network",
    "S5Cell",
    "SequenceModel",
    "HoistedCell",
    "SequenceModelWrapper",
    "SharedActorCritic",
    "heads",
    "observation_extractor",
    "shares_torso",
]
