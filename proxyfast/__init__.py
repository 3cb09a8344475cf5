"""proxyfast: proxy data for fast neural architecture search (Na et al., IJCAI 2021).

    >>> import proxyfast
    >>> proxy = proxyfast.select(entropies, fraction=0.1, method="p1", bin_width=0.25)
    >>> train_idx, arch_idx = proxy.split()
    >>> proxy.save("imagenet_p1.proxyset")

From a dataset and a trained model::

    >>> scores = proxyfast.score(model, proxyfast.data.fashion_mnist(), features=True)
    >>> proxy = proxyfast.select(scores, fraction=0.1, method="kcenter")
"""

import importlib

from . import _moved, baseline, data, loaders, models, nas, runtime, scoring, selection
from ._version import __version__
from .baseline import Forgetting, forgetting
from .ops import entropy, weighted_sample
from .scoring import DatasetMismatchError, Scores, score
from .selection import Histogram, ProxySet, available_methods, histogram, register_method, select

_moved.install()

__all__ = [
    "DatasetMismatchError",
    "Forgetting",
    "Histogram",
    "ProxySet",
    "Scores",
    "__version__",
    "available_methods",
    "baseline",
    "data",
    "entropy",
    "forgetting",
    "histogram",
    "loaders",
    "models",
    "nas",
    "register_method",
    "runtime",
    "score",
    "scoring",
    "select",
    "selection",
    "weighted_sample",
]


def __getattr__(name: str):
    # proxyfast.io, proxyfast.pretrain, ...: the modules that moved, by their old names.
    if f"{__name__}.{name}" in _moved.MOVED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
