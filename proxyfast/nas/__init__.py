"""Differentiable architecture search on proxy data: DARTS (Liu et al., ICLR 2019) and
PC-DARTS (Xu et al., ICLR 2020).

    >>> from proxyfast import nas
    >>> model = nas.SearchNetwork(channels=16, num_classes=10, layers=8, in_channels=1)
    >>> architect = nas.Architect(model, order=1)
    >>> model.genotype()
"""

from .architect import Architect
from .genotypes import DARTS_V1, DARTS_V2, GENOTYPES, PC_DARTS, PRIMITIVES, Genotype, get_genotype
from .mixed import MixedOp, PartialMixedOp, available_mixed_impls, channel_shuffle, register_mixed_impl
from .supernet import SearchCell, SearchNetwork, derive_cell, num_edges

__all__ = [
    "DARTS_V1",
    "DARTS_V2",
    "GENOTYPES",
    "PC_DARTS",
    "PRIMITIVES",
    "Architect",
    "Genotype",
    "MixedOp",
    "PartialMixedOp",
    "SearchCell",
    "SearchNetwork",
    "available_mixed_impls",
    "channel_shuffle",
    "derive_cell",
    "get_genotype",
    "num_edges",
    "register_mixed_impl",
]
