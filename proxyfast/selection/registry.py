"""The registry of selection methods and the context they share.

A method is a function ``method(ctx: SelectionContext) -> torch.Tensor`` that returns
``ctx.k`` distinct int64 indices on ``ctx.device``, registered by name::

    @register_method("my_method")
    def my_method(ctx):
        return ctx.sample(my_weights(ctx.scores))

The context computes shared intermediate results (the histogram, the bin ids) once, on
first use, so a method pays only for what it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from .. import ops
from .binning import Histogram, histogram
from ..scoring import Scores

__all__ = ["METHODS", "SelectionContext", "available_methods", "check_method", "register_method"]


@dataclass(frozen=True, eq=False)
class SelectionContext:
    """What a selection method may read: the scores, the proxy size and the parameters."""

    scores: Scores
    k: int
    seed: int
    bin_width: float
    beta: float

    @property
    def log10_entropy(self) -> torch.Tensor:
        """The log10 entropies the methods bin and rank, in the scores' dtype: float64 where
        the scores came from float64 entropies, float32 where from logits."""
        return self.scores.log10_entropy

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def device(self) -> torch.device:
        return self.scores.device

    @cached_property
    def _binned(self) -> tuple[Histogram, torch.Tensor]:
        return histogram(self.log10_entropy, self.bin_width)

    @property
    def histogram(self) -> Histogram:
        """The log10-entropy histogram of all N examples (docs/design.md, "The histogram")."""
        return self._binned[0]

    @property
    def bin_ids(self) -> torch.Tensor:
        """int32 [N], the bin of each example, on ``device``."""
        return self._binned[1]

    @cached_property
    def bin_counts(self) -> torch.Tensor:
        """int64 [n_bins], examples per bin, on ``device``."""
        return torch.as_tensor(self.histogram.counts, device=self.device)

    def sample(self, weights: torch.Tensor) -> torch.Tensor:
        """``k`` indices drawn without replacement in proportion to ``weights`` (stream 0)."""
        return ops.weighted_sample(weights, self.k, self.seed, stream=0)

    def sample_by_bin(self, bin_weights: torch.Tensor) -> torch.Tensor:
        """``sample(bin_weights[bin_ids])``, the same indices, without N-sized weights:
        ``bin_weights`` float64 [n_bins], the weight of each example of the bin."""
        return ops.weighted_sample_by_bin(self.bin_ids, bin_weights, self.k, self.seed, stream=0,
                                          bin_counts=self.bin_counts)


Method = Callable[[SelectionContext], torch.Tensor]

METHODS: dict[str, Method] = {}


def register_method(name: str) -> Callable[[Method], Method]:
    """Decorator that registers a selection method under ``name``."""

    def register(method: Method) -> Method:
        if name in METHODS:
            raise ValueError(f"a selection method named {name!r} is already registered")
        METHODS[name] = method
        return method

    return register


def available_methods() -> list[str]:
    """The registered method names, sorted."""
    return sorted(METHODS)


def check_method(value: Any) -> str:
    """The name of a registered selection method."""
    if not isinstance(value, str) or value not in METHODS:
        raise ValueError(f"unknown method {value!r}; available methods: {', '.join(available_methods())}")
    return value
