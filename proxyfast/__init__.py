"""proxyfast: proxy data for fast neural architecture search (Na et al., IJCAI 2021).

    >>> import proxyfast
    >>> proxy = proxyfast.select(entropies, fraction=0.1, method="p1", bin_width=0.25)
    >>> train_idx, arch_idx = proxy.split()
    >>> proxy.save("imagenet_p1.proxyset")
"""

from . import io
from ._version import __version__
from .binning import Histogram, histogram
from .ops import entropy, weighted_sample
from .proxyset import ProxySet
from .scoring import Scores
from .selection import available_methods, register_method, select

__all__ = [
    "Histogram",
    "ProxySet",
    "Scores",
    "__version__",
    "available_methods",
    "entropy",
    "histogram",
    "io",
    "register_method",
    "select",
    "weighted_sample",
]
