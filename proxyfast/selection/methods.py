"""The selection methods of docs/design.md, "Selection methods", one small function each.

P1, P2 and P3 weight every example through its histogram bin and draw without
replacement; the others rank by log10 entropy or draw uniformly. Ranking ties go to the
lower index (stable sorts), so the result does not depend on the device.
"""

from __future__ import annotations

import math

import torch

from .registry import SelectionContext, register_method

__all__ = ["p1", "p2", "p3", "deterministic", "random_subset", "entropy_top", "entropy_bottom"]


def _sample_by_bin(ctx: SelectionContext, bin_weight: torch.Tensor) -> torch.Tensor:
    # A per-example weight is a per-bin value: computed once per bin, never gathered.
    return ctx.sample_by_bin(bin_weight)


@register_method("p1")
def p1(ctx: SelectionContext) -> torch.Tensor:
    """The paper's main method: bin weight ``M - h_b + 1`` shared by the ``h_b`` examples of
    the bin (M the largest bin), so rare entropies are over-represented."""
    h = ctx.bin_counts.to(torch.float64)
    return _sample_by_bin(ctx, torch.where(h > 0, (h.max() - h + 1.0) / h, 0.0))


@register_method("p2")
def p2(ctx: SelectionContext) -> torch.Tensor:
    """Every non-empty bin the same weight: example weight ``1 / h_b``."""
    h = ctx.bin_counts.to(torch.float64)
    return _sample_by_bin(ctx, torch.where(h > 0, 1.0 / h, 0.0))


@register_method("p3")
def p3(ctx: SelectionContext) -> torch.Tensor:
    """Bin weight ``1 / h_b``: example weight ``1 / h_b^2``."""
    h = ctx.bin_counts.to(torch.float64)
    return _sample_by_bin(ctx, torch.where(h > 0, 1.0 / (h * h), 0.0))


@register_method("random")
def random_subset(ctx: SelectionContext) -> torch.Tensor:
    """k examples uniformly without replacement (the same on every device)."""
    return ctx.sample(torch.ones(ctx.n, dtype=torch.float64, device=ctx.device))


def _ascending(values: torch.Tensor) -> torch.Tensor:
    return torch.sort(values, stable=True).indices


def _descending(values: torch.Tensor) -> torch.Tensor:
    # A stable descending sort keeps equal values in index order: ties go to the lower index.
    return torch.sort(values, descending=True, stable=True).indices


@register_method("entropy_top")
def entropy_top(ctx: SelectionContext) -> torch.Tensor:
    """The k highest entropies."""
    return _descending(ctx.log10_entropy)[: ctx.k]


@register_method("entropy_bottom")
def entropy_bottom(ctx: SelectionContext) -> torch.Tensor:
    """The k lowest entropies."""
    return _ascending(ctx.log10_entropy)[: ctx.k]


@register_method("deterministic")
def deterministic(ctx: SelectionContext) -> torch.Tensor:
    """The ``floor(beta * k)`` lowest entropies plus the ``k - floor(beta * k)`` highest."""
    n_low = math.floor(ctx.beta * ctx.k)
    values = ctx.log10_entropy
    ascending = _ascending(values)
    # The highest are taken from the examples not already taken as lowest, so that ties
    # across the two groups cannot select an example twice.
    rest = ascending[n_low:]
    highest = rest[_descending(values[rest])[: ctx.k - n_low]]
    return torch.cat([ascending[:n_low], highest])
