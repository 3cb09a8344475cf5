"""proxyfast: proxy data for fast neural architecture search (Na et al., IJCAI 2021).

    >>> import proxyfast
    >>> proxy = proxyfast.select(entropies, fraction=0.1, method="p1", bin_width=0.25)
    >>> train_idx, arch_idx = proxy.split()
    >>> proxy.save("imagenet_p1.proxyset")

From a dataset and a trained model::

    >>> scores = proxyfast.score(model, proxyfast.data.fashion_mnist(), features=True)
    >>> proxy = proxyfast.select(scores, fraction=0.1, method="kcenter")
"""

from . import data, io, loaders, models, nas
from ._version import __version__
from .binning import Histogram, histogram
from .forgetting import Forgetting, forgetting
from .ops import entropy, weighted_sample
from .proxyset import ProxySet
from .scoring import DatasetMismatchError, Scores, score
from .selection import available_methods, register_method, select

__all__ = [
    "DatasetMismatchError",
    "Forgetting",
    "Histogram",
    "ProxySet",
    "Scores",
    "__version__",
    "available_methods",
    "data",
    "entropy",
    "forgetting",
    "histogram",
    "io",
    "loaders",
    "models",
    "nas",
    "register_method",
    "score",
    "select",
    "weighted_sample",
]
