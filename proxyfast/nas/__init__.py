"""Differentiable architecture search on proxy data: DARTS (Liu et al., ICLR 2019) and
PC-DARTS (Xu et al., ICLR 2020).

    >>> from proxyfast import nas
    >>> model = nas.SearchNetwork(channels=16, num_classes=10, layers=8, in_channels=1)
    >>> architect = nas.Architect(model, order=1)
    >>> model.genotype()
"""

import importlib

from .architect import Architect
from .genotypes import DARTS_V1, DARTS_V2, GENOTYPES, PC_DARTS, PRIMITIVES, Genotype, get_genotype
from .mixed import MixedOp, PartialMixedOp, available_mixed_impls, channel_shuffle, register_mixed_impl

try:
    from . import fused
except ModuleNotFoundError as error:  # without the C++ extension, the reference implementation only
    if error.name != "proxyfast._C":
        raise
else:
    fused.register()

from .network import AuxiliaryHead, EvalCell, EvalNetwork, drop_path
from .plots import plot_alpha_evolution, plot_cell, plot_search
from .search import SearchConfig, SearchResult, SearchState, build_search, search, search_step
from .supernet import SearchCell, SearchNetwork, derive_cell, num_edges
from .train import NetworkTrainResult, load_network, random_cutout, save_network, shard_epoch, train_network

__all__ = [
    "DARTS_V1",
    "DARTS_V2",
    "GENOTYPES",
    "PC_DARTS",
    "PRIMITIVES",
    "Architect",
    "AuxiliaryHead",
    "EvalCell",
    "EvalNetwork",
    "Genotype",
    "MixedOp",
    "NetworkTrainResult",
    "PartialMixedOp",
    "SearchCell",
    "SearchConfig",
    "SearchNetwork",
    "SearchResult",
    "SearchState",
    "available_mixed_impls",
    "build_search",
    "channel_shuffle",
    "derive_cell",
    "drop_path",
    "get_genotype",
    "load_network",
    "num_edges",
    "plot_alpha_evolution",
    "plot_cell",
    "plot_search",
    "random_cutout",
    "register_mixed_impl",
    "save_network",
    "search",
    "search_step",
    "shard_epoch",
    "train_network",
]


def __getattr__(name: str):
    # proxyfast.nas.ops: the candidate operations by their old module name.
    from .. import _moved

    if f"{__name__}.{name}" in _moved.MOVED_MODULES:
        return importlib.import_module(_moved.MOVED_MODULES[f"{__name__}.{name}"])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
