"""k-center greedy (Sener & Savarese, ICLR 2018) on penultimate-layer features.

Start from one seeded random example; repeatedly add the example farthest from its
nearest chosen center. Only the running minimum distance of every example to the
chosen centers is kept: O(N) memory besides the features, never an N x k distance
matrix (657 GB at 10% of ImageNet). Each step is one batched pass over the features
(distance to the new center, running minimum, argmax) on their device.
"""

from __future__ import annotations

import torch

from .. import ops
from .._checks import check_int
from .registry import SelectionContext, register_method

__all__ = ["kcenter", "kcenter_greedy"]

# Rows per distance pass: bounds the temporaries of one step to a few MB.
_CHUNK_ROWS = 1 << 20


def _distances_to(features: torch.Tensor, center: torch.Tensor, out: torch.Tensor) -> None:
    """out[i] = ||features[i] - center|| for a center [1, D], computed directly (no
    ||x||^2 - 2x.c + ||c||^2 cancellation), ``_CHUNK_ROWS`` rows at a time."""
    for start in range(0, len(features), _CHUNK_ROWS):
        rows = features[start:start + _CHUNK_ROWS]
        out[start:start + _CHUNK_ROWS] = torch.cdist(
            rows, center, compute_mode="donot_use_mm_for_euclid_dist"
        ).squeeze(1)


def kcenter_greedy(features: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``k`` k-center greedy picks from ``features`` [N, D], in pick order.

    The first pick is a seeded uniform draw (the same on every device); each later pick
    is the example with the largest distance to its nearest pick, ties to the lower
    index. Exact duplicates of picks are taken last, in index order. Runs on the
    features' device; fp16/bf16 features are compared in fp32.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or not features.is_floating_point():
        raise ValueError("features must be a 2-D floating-point tensor [N, D]")
    n = features.shape[0]
    check_int("k", k, 0, n)
    device = features.device
    selected = torch.empty(k, dtype=torch.int64, device=device)
    if k == 0:
        return selected
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()  # one conversion, not one per step
    features = features.contiguous()
    # The current center is a one-element device tensor throughout: no host round trip
    # (no synchronisation) per step on a GPU.
    center = ops.weighted_sample(torch.ones(n, dtype=torch.float64, device=device), 1, seed, stream=0)
    min_distance = torch.full((n,), torch.inf, dtype=features.dtype, device=device)
    distance = torch.empty_like(min_distance)
    for i in range(k):
        selected[i:i + 1] = center
        _distances_to(features, features.index_select(0, center), distance)
        torch.minimum(min_distance, distance, out=min_distance)
        # A chosen example is never chosen again, even when the rest are its duplicates.
        min_distance.index_fill_(0, center, -1.0)
        center = torch.argmax(min_distance).view(1)
    return selected


@register_method("kcenter")
def kcenter(ctx: SelectionContext) -> torch.Tensor:
    """k-center greedy on ``scores.features`` (from ``proxyfast.score(..., features=True)``)."""
    features = ctx.scores.features
    if features is None:
        raise ValueError(
            "method 'kcenter' needs scores with features: compute them with "
            "proxyfast.score(model, dataset, features=True)"
        )
    return kcenter_greedy(features, ctx.k, ctx.seed)
