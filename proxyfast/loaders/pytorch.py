"""Proxy loaders for plain PyTorch: a DataLoader over exactly the proxy subset.

    >>> proxy = proxyfast.select(scores, fraction=0.1, method="p1", seed=0)
    >>> train = torch_loader(dataset, proxy, part="train", batch_size=64, seed=0)
    >>> arch = cycle_loader(torch_loader(dataset, proxy, part="val", batch_size=64, seed=1))
    >>> for epoch in range(50):
    ...     for images, labels in train:              # a new order every epoch
    ...         arch_images, arch_labels = next(arch)  # never exhausted, never rebuilt per step
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .._checks import check_int, check_seed
from ..selection import ProxySet
from ._subset import subset_indices

__all__ = ["CycleLoader", "ProxySampler", "cycle_loader", "distributed_rank", "torch_loader"]


def distributed_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else those of the initialised
    ``torch.distributed`` process group, else ``(0, 1)``."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    world_size = check_int("world_size", world_size, 1)
    rank = check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, world_size = {world_size}), got {rank}")
    return rank, world_size


class ProxySampler(Sampler[int]):
    """Yields the given dataset indices, in a new seeded order every epoch, sharded over ranks.

    The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone: the same seed
    gives the same sequence of epochs on every run and on every rank. Like
    :class:`torch.utils.data.DistributedSampler`, :meth:`set_epoch` chooses the epoch of
    the next pass; unlike it, a pass without ``set_epoch`` moves on to the next epoch by
    itself, so a loop that never calls it still sees a new order each epoch.

    With ``world_size > 1``, the epoch's order is dealt out like cards: rank ``r`` gets
    positions ``r, r + world_size, ...``. Every rank gets the same number of indices:
    with ``drop_last=False`` the order is first padded with its own first indices up to a
    multiple of ``world_size`` (a few examples are seen twice per epoch, as with
    ``DistributedSampler``); with ``drop_last=True`` its last ``k % world_size`` indices
    are left out (each example is seen at most once). With one rank, every index is
    yielded exactly once per epoch either way.

    Args:
        indices: the dataset indices to draw from, each once.
        shuffle: a new random order each epoch; ``False`` keeps the given order.
        seed: a non-negative integer; the same on every rank.
        rank, world_size: this process's shard; default from ``torch.distributed`` when
            it is initialised, else one process.
        drop_last: drop rather than pad to share the indices evenly among ranks.
    """

    def __init__(
        self,
        indices: Sequence[int] | np.ndarray | torch.Tensor,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        indices = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
            raise TypeError(f"indices must be a 1-D sequence of integers, got {indices.dtype} {indices.shape}")
        self.indices = indices.astype(np.int64)
        self.shuffle = bool(shuffle)
        self.seed = check_seed("seed", seed)
        self.rank, self.world_size = distributed_rank(rank, world_size)
        self.drop_last = bool(drop_last)
        self.epoch = 0  # the epoch of the next pass

    def __len__(self) -> int:
        k, world = len(self.indices), self.world_size
        return k // world if self.drop_last else math.ceil(k / world)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass use epoch ``epoch``'s order (the one after that uses ``epoch + 1``)."""
        self.epoch = check_int("epoch", epoch, 0)

    def advance(self) -> int:
        """The epoch of the next pass; later passes use the ones after it."""
        epoch = self.epoch
        self.epoch = epoch + 1
        return epoch

    def order(self, epoch: int) -> np.ndarray:
        """This rank's indices for epoch ``epoch``, in order (int64)."""
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, epoch]).permutation(len(order))]
        world = self.world_size
        if world > 1:
            total = len(self) * world
            if total > len(order):  # pad, wrapping around as often as needed when k < world
                order = np.resize(order, total)
            order = order[self.rank:total:world]
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.advance()).tolist())

    def __repr__(self) -> str:
        return (f"ProxySampler(k={len(self.indices)}, shuffle={self.shuffle}, seed={self.seed}, rank={self.rank}, "
                f"world_size={self.world_size}, drop_last={self.drop_last}, epoch={self.epoch})")


def torch_loader(
    dataset: Dataset,
    proxyset: ProxySet | Sequence[int] | np.ndarray | torch.Tensor,
    part: str = "all",
    batch_size: int = 64,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    train_portion: float = 0.5,
    rank: int | None = None,
    world_size: int | None = None,
    **dataloader_kwargs: Any,
) -> DataLoader:
    """A :class:`~torch.utils.data.DataLoader` over exactly the proxy's examples of ``dataset``.

    Each pass over the loader is one epoch over ``part`` of the proxy: every example once,
    in a new order drawn from ``(seed, epoch)``. The loader's ``sampler`` is a
    :class:`ProxySampler`; call ``loader.sampler.set_epoch(epoch)`` to choose the epoch,
    as with ``DistributedSampler``, or let it advance by itself on each pass.

    Args:
        dataset: a map-style dataset of the N examples the proxy was selected from.
        proxyset: a :class:`~proxyfast.ProxySet` of those N examples (or its indices).
        part: ``"all"``, ``"train"`` (the first ``floor(train_portion * k)`` proxy indices:
            the weights' half of a bi-level search) or ``"val"`` (the rest: the
            architecture's half), as :meth:`ProxySet.split` divides them.
        batch_size: examples per batch.
        shuffle: a new order each epoch; ``False`` streams the proxy's own order.
        seed: seed of the epoch orders, and of the worker seeds unless a ``generator``
            is given; use the same seed on every rank.
        num_workers: loading processes, as for ``DataLoader``.
        drop_last: drop each epoch's last batch when it is incomplete; with several
            ranks, also share the examples out by dropping rather than padding (see
            :class:`ProxySampler`).
        train_portion: the share of the proxy in the ``"train"`` part.
        rank, world_size: this process's shard of the part; default from
            ``torch.distributed`` when it is initialised, else the whole part.
        **dataloader_kwargs: passed on to ``DataLoader`` (``pin_memory``,
            ``persistent_workers``, ``collate_fn``, ...), except ``sampler``,
            ``batch_sampler`` and ``shuffle``, which this loader sets.

    Raises:
        ValueError: the proxy was selected from a different number of examples than
            ``dataset`` holds, or an index is out of range for it.
    """
    for reserved in ("sampler", "batch_sampler", "shuffle"):
        if reserved in dataloader_kwargs:
            raise TypeError(f"torch_loader sets the DataLoader's {reserved!r} itself; it cannot be passed")
    batch_size = check_int("batch_size", batch_size, 1)
    if isinstance(proxyset, ProxySet):
        proxyset.check_dataset(dataset)
    indices = subset_indices(proxyset, part, train_portion, len(dataset), f"the dataset ({type(dataset).__name__})")
    sampler = ProxySampler(indices, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
    # Worker seeds come from this generator: random transforms in workers are reproducible too.
    dataloader_kwargs.setdefault("generator", torch.Generator().manual_seed(sampler.seed))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last,
        **dataloader_kwargs,
    )


class CycleLoader(Iterator):
    """An endless iterator over a loader's batches: pass after pass, each a new epoch.

    One iterator of the underlying loader is made per pass, not per batch, so workers
    (and with ``persistent_workers=True``, the same worker processes) keep prefetching
    across steps. Each pass draws a new order when the loader's sampler advances its
    epoch by itself, as :class:`ProxySampler` and :func:`ffcv_loader`'s loaders do.

    Attributes:
        passes: the number of passes started so far.
    """

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self.passes = 0
        self._iterator: Iterator | None = None

    def __iter__(self) -> "CycleLoader":
        return self

    def __next__(self):
        if self._iterator is not None:
            try:
                return next(self._iterator)
            except StopIteration:
                pass
        self._iterator = iter(self.loader)
        self.passes += 1
        try:
            return next(self._iterator)
        except StopIteration:
            raise ValueError(f"cannot cycle over an empty loader ({type(self.loader).__name__} yields no batch)") from None


def cycle_loader(loader: Iterable) -> CycleLoader:
    """``loader``'s batches forever, reshuffled on each pass (see :class:`CycleLoader`)."""
    return CycleLoader(loader)
