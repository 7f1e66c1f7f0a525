"""Blocks that compose torsos and obey the sequence-model contract themselves."""

from memorax.networks.blocks.blocks import FFN, PreNorm, Residual, Stack

__all__ = ["FFN", "PreNorm", "Residual", "Stack"]
