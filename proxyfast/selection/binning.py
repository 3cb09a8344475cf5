"""The log-entropy histogram of the paper (docs/design.md, "The histogram").

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

from .. import ops
from .._checks import check_bin_width

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


def _walk_to(start: float, target: float, step: float) -> float:
    """The paper's edge loop, ``x = start; while x is beyond target: x += step``
    (beyond: above ``target`` for a negative step, below it for a positive one), without
    a loop whose end depends on floating-point steps: the number of steps comes from a
    closed form, and the walk itself is replayed as one sequential cumulative sum, so
    every value is rounded exactly as the loop rounds it."""
    beyond = (lambda x: target < x) if step < 0 else (lambda x: target > x)
    if not beyond(start):
        return start
    steps = math.ceil(abs(start - target) / abs(step))
    # A few steps more than the closed form, for the rounding of the repeated additions.
    walk = np.add.accumulate(np.concatenate(([start], np.full(steps + 3, step))))
    arrived = np.flatnonzero(~beyond(walk))
    if len(arrived) == 0:  # the step is lost in the rounding of values this large
        raise ValueError(
            f"bin_width {abs(step)!r} is too small for log10 entropies around {target:g}: "
            "stepping the edges by it does not move them"
        )
    return float(walk[arrived[0]])


def histogram_edges(min_value: float, max_value: float, bin_width: float) -> np.ndarray:
    """The bin edges for data spanning [min_value, max_value] (docs/design.md, "The histogram").

    Identical to the paper's loops; the number of bins is checked before any edge is
    stepped, so a tiny ``bin_width`` fails at once."""
    bin_width = check_bin_width("bin_width", bin_width)
    if not (math.isfinite(min_value) and math.isfinite(max_value)) or min_value > max_value:
        raise ValueError(f"the data range [{min_value}, {max_value}] must be finite and ordered")
    lo = float(round(min_value))  # Python's round is half to even, as numpy's
    hi = float(round(max_value))
    # lo only moves down to min_value and hi up to max_value, a step past at most.
    span = (max(hi, max_value) - min(lo, min_value)) / bin_width
    if span > MAX_BINS + 2:
        raise ValueError(
            f"bin_width {bin_width!r} gives about {span:.3g} bins over [{min_value}, {max_value}]; "
            f"at most {MAX_BINS} allowed"
        )
    lo = _walk_to(lo, min_value, -bin_width)
    hi = _walk_to(hi, max_value, bin_width)
    n_bins = max(1, round((hi - lo) / bin_width))
    if n_bins > MAX_BINS:
        raise ValueError(
            f"bin_width {bin_width!r} gives {n_bins} bins over [{min_value}, {max_value}]; at most {MAX_BINS} allowed"
        )
    edges = lo + np.arange(n_bins + 1, dtype=np.float64) * bin_width
    # hi is reached by repeated addition, lo + n * w by one product: they may differ in
    # the last bits, and the top edge must hold the maximum.
    edges[-1] = max(edges[-1], max_value)
    return edges


def histogram(log10_entropy: torch.Tensor, bin_width: float = 0.5) -> tuple[Histogram, torch.Tensor]:
    """Bins log10 entropies: returns the Histogram and the int32 bin of each example,
    computed on the device of ``log10_entropy``. float64 values are binned as they are,
    as the paper's code bins its float64 log10 entropies; other dtypes as float32."""
    if not isinstance(log10_entropy, torch.Tensor):
        log10_entropy = torch.as_tensor(np.asarray(log10_entropy))
    if log10_entropy.dim() != 1:
        raise ValueError(f"log10_entropy must be 1-D, got shape {tuple(log10_entropy.shape)}")
    if log10_entropy.numel() == 0:
        raise ValueError("log10_entropy is empty")
    dtype = torch.float64 if log10_entropy.dtype == torch.float64 else torch.float32
    values = log10_entropy.to(dtype).contiguous()
    if values.device.type == "cpu":  # numpy's single-threaded passes: no thread-pool start-up
        array = values.detach().numpy()
        min_value, max_value = float(array.min()), float(array.max())
    else:
        lo_hi = torch.aminmax(values)
        min_value, max_value = float(lo_hi.min), float(lo_hi.max)
    if not (math.isfinite(min_value) and math.isfinite(max_value)):
        raise ValueError("log10_entropy must be finite (an entropy of exactly 0 has no log10)")
    edges = histogram_edges(min_value, max_value, bin_width)
    bin_ids, counts = ops.histogram_bins(values, float(edges[0]), float(bin_width), len(edges) - 1, float(edges[-1]))
    return Histogram(edges, counts.cpu().numpy(), float(bin_width)), bin_ids
