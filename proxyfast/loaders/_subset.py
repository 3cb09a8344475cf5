"""Which indices a loader streams: a proxy, or one of its two halves, checked against the data."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

from ..selection import ProxySet

__all__ = ["PARTS", "subset_indices"]

PARTS = ("all", "train", "val")


def subset_indices(
    proxyset: ProxySet | Sequence[int] | np.ndarray | torch.Tensor,
    part: str,
    train_portion: float,
    data_size: int,
    data_name: str,
) -> np.ndarray:
    """The int64 indices of ``part`` of ``proxyset``, checked against a data set of ``data_size``.

    ``part`` is ``"all"`` (the whole proxy), ``"train"`` (the first ``floor(train_portion * k)``
    indices, which train the weights in a bi-level search) or ``"val"`` (the rest, which
    train the architecture), as in :meth:`ProxySet.split`. A plain sequence of indices is
    taken as a proxy in its given order. ``data_name`` names the data in error messages.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(map(repr, PARTS))}, got {part!r}")
    if isinstance(proxyset, ProxySet):
        if proxyset.n != data_size:
            raise ValueError(
                f"the proxy set was selected from {proxyset.n:,} examples but {data_name} holds "
                f"{data_size:,}: they are not the same data"
            )
        train, val = proxyset.split(train_portion)
        indices = {"all": proxyset.indices, "train": train, "val": val}[part]
        indices = indices.detach().cpu().numpy()
    else:
        indices = proxyset.detach().cpu().numpy() if isinstance(proxyset, torch.Tensor) else np.asarray(proxyset)
        if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
            raise TypeError(f"indices must be a 1-D sequence of integers, got {indices.dtype} {indices.shape}")
        if part != "all":
            # The same rule as ProxySet.split, for a bare list of indices.
            if isinstance(train_portion, bool) or not isinstance(train_portion, numbers.Real):
                raise TypeError(f"train_portion must be a number, got {type(train_portion).__name__}")
            if not 0 <= train_portion <= 1:
                raise ValueError(f"train_portion must be in [0, 1], got {train_portion!r}")
            n_train = int(np.floor(train_portion * len(indices)))
            indices = indices[:n_train] if part == "train" else indices[n_train:]
    indices = indices.astype(np.int64, copy=False)
    if indices.size and (indices.min() < 0 or indices.max() >= data_size):
        bad = int(indices.max()) if indices.max() >= data_size else int(indices.min())
        raise ValueError(f"index {bad} is out of range for {data_name} of {data_size:,} examples")
    if len(np.unique(indices)) != len(indices):
        raise ValueError("the proxy indices contain duplicates; a proxy holds each example once")
    return indices
