"""The traversal order that makes an FFCV Loader stream a :class:`ProxySampler`'s epochs.

Kept apart from :mod:`proxyfast.loaders.ffcv` because defining it imports FFCV (and numba),
which that module only does when an FFCV loader is asked for.
"""

from __future__ import annotations

import numpy as np
from ffcv.traversal_order.base import TraversalOrder

from .pytorch import ProxySampler


class ProxyTraversalOrder(TraversalOrder):
    """Hands FFCV the order of epoch :attr:`epoch` of a :class:`ProxySampler`.

    FFCV 1.0.2 binds a custom order by calling it with the Loader (``order(loader)``),
    hence ``__call__``. Its own epoch counter is ignored: the proxy loader sets
    :attr:`epoch` before each pass, so epochs follow the sampler's ``set_epoch`` rules.
    """

    def __init__(self, sampler: ProxySampler) -> None:
        # Not ``self.sampler``: TraversalOrder.__init__ sets that to None.
        self.proxy_sampler = sampler
        self.epoch = sampler.epoch

    def __call__(self, loader) -> "ProxyTraversalOrder":
        super().__init__(loader)
        return self

    def sample_order(self, epoch: int) -> np.ndarray:
        return self.proxy_sampler.order(self.epoch)  # dataset indices, as FFCV's own orders give
