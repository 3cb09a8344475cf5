"""The log-entropy histogram of the paper (DESIGN.md section 2.2).

Edges: ``lo = round(min l)`` (half to even), lowered by ``bin_width`` while it is above
``min l``; ``hi = round(max l)``, raised by ``bin_width`` while it is below ``max l``;
``n_bins = round((hi - lo) / bin_width)``; edge b is ``lo + b * bin_width``. Bin b holds
``edge[b] <= l < edge[b + 1]`` and the last bin also holds its top edge. Unlike the
paper's code, a value exactly on an edge is binned, not rejected. When every value is
the same integer the rule gives no bin at all; proxyfast then uses the one bin
``[lo, lo + bin_width]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import ops

__all__ = ["Histogram", "histogram", "histogram_edges"]

# More bins than this means bin_width is far too small for the data.
MAX_BINS = 1 << 20


@dataclass(frozen=True)
class Histogram:
    """Edges (float64, n_bins + 1) and per-bin counts (int64, n_bins) of log10 entropies."""

    edges: np.ndarray
    counts: np.ndarray
    bin_width: float

    @property
    def n_bins(self) -> int:
        return len(self.counts)

    @property
    def lo(self) -> float:
        return float(self.edges[0])

    @property
    def top(self) -> float:
        return float(self.edges[-1])

    def to_dict(self) -> dict:
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist(), "bin_width": self.bin_width}

    @classmethod
    def from_dict(cls, d: dict) -> "Histogram":
        return cls(np.asarray(d["edges"], dtype=np.float64), np.asarray(d["counts"], dtype=np.int64), float(d["bin_width"]))


def _check_bin_width(bin_width) -> float:
    if isinstance(bin_width, bool) or not isinstance(bin_width, (int, float)):
        raise TypeError(f"bin_width must be a number, got {type(bin_width).__name__}")
    bin_width = float(bin_width)
    if not (math.isfinite(bin_width) and bin_width > 0):
        raise ValueError(f"bin_width must be positive and finite, got {bin_width}")
    return bin_width


def histogram_edges(min_value: float, max_value: float, bin_width: float) -> np.ndarray:
    """The bin edges for data spanning [min_value, max_value] (DESIGN.md section 2.2)."""
    bin_width = _check_bin_width(bin_width)
    if not (math.isfinite(min_value) and math.isfinite(max_value)) or min_value > max_value:
        raise ValueError(f"the data range [{min_value}, {max_value}] must be finite and ordered")
    lo = float(round(min_value))  # Python's round is half to even, as numpy's
    while min_value < lo:
        lo -= bin_width
    hi = float(round(max_value))
    while max_value > hi:
        hi += bin_width
    n_bins = max(1, round((hi - lo) / bin_width))
    if n_bins > MAX_BINS:
        raise ValueError(
            f"bin_width {bin_width} gives {n_bins} bins over [{min_value}, {max_value}]; at most {MAX_BINS} allowed"
        )
    edges = lo + np.arange(n_bins + 1, dtype=np.float64) * bin_width
    # hi is reached by repeated addition, lo + n * w by one product: they may differ in
    # the last bits, and the top edge must hold the maximum.
    edges[-1] = max(edges[-1], max_value)
    return edges


def histogram(log10_entropy: torch.Tensor, bin_width: float = 0.5) -> tuple[Histogram, torch.Tensor]:
    """Bins log10 entropies: returns the Histogram and the int32 bin of each example,
    computed on the device of ``log10_entropy``."""
    if not isinstance(log10_entropy, torch.Tensor):
        log10_entropy = torch.as_tensor(np.asarray(log10_entropy))
    if log10_entropy.dim() != 1:
        raise ValueError(f"log10_entropy must be 1-D, got shape {tuple(log10_entropy.shape)}")
    if log10_entropy.numel() == 0:
        raise ValueError("log10_entropy is empty")
    values = log10_entropy.to(torch.float32).contiguous()
    lo_hi = torch.aminmax(values)
    min_value, max_value = float(lo_hi.min), float(lo_hi.max)
    if not (math.isfinite(min_value) and math.isfinite(max_value)):
        raise ValueError("log10_entropy must be finite (an entropy of exactly 0 has no log10)")
    edges = histogram_edges(min_value, max_value, bin_width)
    bin_ids, counts = ops.histogram_bins(values, float(edges[0]), float(bin_width), len(edges) - 1, float(edges[-1]))
    return Histogram(edges, counts.cpu().numpy(), float(bin_width)), bin_ids
