"""Forgetting events (Toneva et al., ICLR 2019): the k most forgotten examples."""

from __future__ import annotations

import torch

from .. import ops
from .registry import SelectionContext, register_method

__all__ = ["most_forgotten"]


@register_method("forgetting")
def most_forgotten(ctx: SelectionContext) -> torch.Tensor:
    """The k examples with the most forgetting events; never-learned examples (count
    ``inf``) first; ties in a random order drawn from the seed."""
    counts = ctx.scores.forgetting_counts
    if counts is None:
        raise ValueError(
            "method 'forgetting' needs scores with forgetting counts: compute them with "
            "proxyfast.forgetting(model, dataset) and attach them with "
            "scores.replace(forgetting_counts=result.counts)"
        )
    # A seeded permutation, then a stable sort: equal counts keep the permutation's order.
    order = ops.weighted_sample(torch.ones(ctx.n, dtype=torch.float64, device=ctx.device), ctx.n, ctx.seed, stream=0)
    ranked = torch.sort(counts[order], descending=True, stable=True).indices
    return order[ranked[: ctx.k]]
