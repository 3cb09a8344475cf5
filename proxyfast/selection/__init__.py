"""Proxy selection: :func:`select` and the registry of methods behind it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import ops
from .._checks import check_bin_width, check_device, check_fraction, check_int, check_real
from .binning import Histogram, histogram
from .proxyset import ProxySet
from ..scoring import Scores, as_scores
from . import forgetting, kcenter, methods  # noqa: F401  (register the built-in methods)
from .registry import METHODS, SelectionContext, available_methods, check_method, register_method

__all__ = ["Histogram", "METHODS", "ProxySet", "SelectionContext", "available_methods", "check_method", "histogram",
           "register_method", "select"]

# The stream of ops.weighted_sample that orders the selected indices; methods use stream 0.
SHUFFLE_STREAM = 1


def _proxy_size(n: int, k: Any, fraction: Any, round_to: Any) -> int:
    if (k is None) == (fraction is None):
        raise ValueError(f"give exactly one of k and fraction, got k={k!r} and fraction={fraction!r}")
    if fraction is not None:
        k = math.floor(check_fraction("fraction", fraction) * n)
    else:
        k = check_int("k", k, 0)
        if k > n:
            raise ValueError(f"k = {k} exceeds the number of examples ({n})")
    if round_to is not None:
        k -= k % check_int("round_to", round_to)
    return k


def _target_device(device: torch.device | str) -> torch.device:
    device = check_device("device", device)
    if device.type == "cuda" and not ops.has_cuda_kernels():
        raise ValueError(
            f"device {str(device)!r}: this proxyfast build has no CUDA kernels; rebuild it with a CUDA build of "
            "torch and CUDA_HOME set"
        )
    return device


def _shuffle(indices: torch.Tensor, seed: int) -> torch.Tensor:
    """``indices`` in a seeded random order, the same on every device."""
    if indices.numel() < 2:
        return indices
    # Equal weights, k = all: ops.weighted_sample's checks cannot fail, so the op is called as it is.
    if indices.device.type == "cpu":  # numpy's single-threaded passes: k items, no thread-pool start-up
        ones = torch.from_numpy(np.ones(indices.numel()))
        order = torch.ops.proxyfast.weighted_sample.default(ones, indices.numel(), seed, SHUFFLE_STREAM)
        return torch.from_numpy(indices.numpy()[order.numpy()])
    ones = torch.ones(indices.numel(), dtype=torch.float64, device=indices.device)
    return indices[torch.ops.proxyfast.weighted_sample.default(ones, indices.numel(), seed, SHUFFLE_STREAM)]


def _count_per_bin(bin_ids: torch.Tensor, indices: torch.Tensor, n_bins: int) -> np.ndarray:
    """Selected examples per bin; on the CPU by numpy's single-threaded passes (k items:
    starting a thread pool would cost more than the work)."""
    if bin_ids.device.type == "cpu":
        return np.bincount(bin_ids.numpy()[indices.numpy()], minlength=n_bins)
    return torch.bincount(bin_ids[indices].to(torch.int64), minlength=n_bins).cpu().numpy()


def select(
    scores: Scores | torch.Tensor | Any,
    k: int | None = None,
    fraction: float | None = None,
    method: str = "p1",
    seed: int = 0,
    bin_width: float = 0.5,
    beta: float = 0.9,
    device: torch.device | str | None = None,
    round_to: int | None = None,
) -> ProxySet:
    """Selects a proxy subset of ``k`` examples (docs/design.md, "Selection methods").

    Args:
        scores: a :class:`Scores`, a 2-D tensor of logits [N, C], or a 1-D tensor, ndarray
            or list of entropies in nats. Entropies given in float64 (or as integers or a
            list) are binned by their float64 log10, as the paper's code bins them; a
            Scores by the log10 entropies it holds (float64 when made from float64
            entropies or read from an entropy list, float32 when scored from logits).
        k: the proxy size, an integer in [0, N]. Give this or ``fraction``.
        fraction: the proxy size as a fraction of N in (0, 1]; ``k = floor(fraction * N)``.
        method: one of :func:`available_methods` (``p1``, the paper's main method, by default).
        seed: seeds the sampling and the final order; same seed, same proxy, on any device.
        bin_width: width of the log10-entropy bins (the paper: 0.5 CIFAR-10, 0.25 CIFAR-100
            and ImageNet, 0.2 SVHN).
        beta: share of low-entropy examples for ``deterministic``, in [0, 1].
        device: where to compute; None keeps the device of ``scores``.
        round_to: round k down to a multiple of this (the paper used 1000 on ImageNet).

    Returns:
        A :class:`ProxySet` whose indices are in a seeded random order, so that
        :meth:`ProxySet.split` gives unbiased halves.
    """
    check_method(method)
    seed = ops.check_seed(seed)
    check_bin_width("bin_width", bin_width)
    beta = check_real("beta", beta, 0.0, 1.0)
    target = _target_device(device) if device is not None else None

    scores = as_scores(scores)
    if target is not None:
        scores = scores.to(target)
    k = _proxy_size(len(scores), k, fraction, round_to)

    ctx = SelectionContext(scores=scores, k=k, seed=seed, bin_width=float(bin_width), beta=beta)
    indices = METHODS[method](ctx)
    if indices.shape != (k,):
        raise RuntimeError(f"selection method {method!r} returned shape {tuple(indices.shape)}, expected ({k},)")
    indices = _shuffle(indices.to(torch.int64), seed)

    params: dict[str, Any] = {"seed": seed, "bin_width": float(bin_width)}
    if fraction is not None:
        params["fraction"] = float(fraction)
    if round_to is not None:
        params["round_to"] = int(round_to)
    if method == "deterministic":
        params["beta"] = beta
    hist = ctx.histogram  # every proxy carries the histogram of its data, for the report
    selected_per_bin = _count_per_bin(ctx.bin_ids, indices, hist.n_bins)
    return ProxySet(
        indices,
        n=len(scores),
        method=method,
        params=params,
        histogram=hist,
        selected_per_bin=selected_per_bin,
        scores=scores,
    )
