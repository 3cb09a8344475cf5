"""Drop-in proxy loaders: stream exactly a proxy subset through PyTorch or FFCV.

- :func:`torch_loader`: a ``torch.utils.data.DataLoader`` over the proxy (or one half of
  it), a new seeded order each epoch, sharded over ``torch.distributed`` ranks.
- :func:`cycle_loader`: batches forever, for the architecture half of a bi-level search.
- :func:`write_beton` and :func:`ffcv_loader`: the same epochs through FFCV's
  ``Loader(indices=...)``; FFCV is optional (``pip install 'proxyfast[ffcv]'``).
"""

from ._subset import PARTS
from .ffcv import INSTALL_HINT as FFCV_INSTALL_HINT
from .ffcv import FFCVProxyLoader, ffcv_loader, write_beton
from .pytorch import CycleLoader, ProxySampler, cycle_loader, distributed_rank, torch_loader

__all__ = [
    "CycleLoader",
    "FFCVProxyLoader",
    "FFCV_INSTALL_HINT",
    "PARTS",
    "ProxySampler",
    "cycle_loader",
    "distributed_rank",
    "ffcv_loader",
    "torch_loader",
    "write_beton",
]
