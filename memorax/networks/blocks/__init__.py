"""Blocks that compose torsos and obey the sequence-model contract themselves."""

from memorax.networks.blocks.blocks import FFN, PreNorm, Residual, Stack
from memorax.networks.blocks.gating import GatedResidual

__all__ = ["FFN", "GatedResidual", "PreNorm", "Residual", "Stack"]
