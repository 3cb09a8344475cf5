"""The arithmetic of a search's cost: how many steps it takes and how long they last.

A DARTS-family search shuffles its data (all training images, or a proxy) and splits
it into two halves: the first ``floor(train_portion * k)`` examples train the network
weights, the rest the architecture (docs/design.md, "Selection methods"). An epoch is
one pass over the weight half, one step per batch; the last, incomplete batch is a step too when it
holds at least two examples (batch norm trains on no fewer), as in
:func:`proxyfast.nas.search.search`. The architecture half is cycled alongside and does
not set the epoch's length. Each step updates the architecture and then the weights,
except during ``warmup_epochs`` (PC-DARTS), whose steps update the weights only. After
each epoch the search evaluates the supernet on the architecture half: one forward
pass per batch of it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real

from .._checks import check_int

__all__ = [
    "SECONDS_PER_DAY",
    "SECONDS_PER_HOUR",
    "SearchPlan",
    "days",
    "hours",
    "plan_search",
    "proxy_size",
    "search_seconds",
    "split_halves",
    "steps_per_epoch",
]

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0


def _check_fraction(name: str, value, low_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):  # also false for nan
        raise ValueError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
    return float(value)


def proxy_size(train_size: int, fraction: float) -> int:
    """``floor(fraction * train_size)``: the proxy's size, as :func:`proxyfast.select` computes it."""
    train_size = check_int("train_size", train_size)
    fraction = _check_fraction("fraction", fraction)
    return math.floor(fraction * train_size)


def split_halves(examples: int, train_portion: float = 0.5) -> tuple[int, int]:
    """``(weight half, architecture half)``: ``floor(train_portion * examples)`` and the rest."""
    examples = check_int("examples", examples)
    train_portion = _check_fraction("train_portion", train_portion, low_open=False)
    train = math.floor(train_portion * examples)
    return train, examples - train


def steps_per_epoch(train_examples: int, batch_size: int) -> int:
    """Steps in one pass over ``train_examples``: the full batches, and the last one
    when it holds at least two examples (``batch_size`` is at least 2 for the same reason)."""
    train_examples = check_int("train_examples", train_examples, 0)
    batch_size = check_int("batch_size", batch_size, 2)
    return train_examples // batch_size + (train_examples % batch_size >= 2)


@dataclass(frozen=True)
class SearchPlan:
    """The step counts of one search.

    Attributes:
        examples: the data searched (all training images, or the proxy).
        train_examples, val_examples: its weight and architecture halves.
        batch_size: examples per step.
        steps_per_epoch: steps of one epoch (one pass over the weight half).
        epochs: epochs of the search.
        warmup_epochs: the first epochs, whose steps update the weights only.
    """

    examples: int
    train_examples: int
    val_examples: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    warmup_epochs: int = 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def weight_only_steps(self) -> int:
        """Steps of the warm-up epochs (no architecture update)."""
        return min(self.warmup_epochs, self.epochs) * self.steps_per_epoch

    @property
    def arch_steps(self) -> int:
        """Steps that update the architecture and then the weights."""
        return self.total_steps - self.weight_only_steps

    @property
    def eval_batches_per_epoch(self) -> int:
        """Forward passes of the end-of-epoch evaluation on the architecture half."""
        return math.ceil(self.val_examples / self.batch_size)

    @property
    def eval_batches(self) -> int:
        return self.epochs * self.eval_batches_per_epoch

    def to_dict(self) -> dict:
        return {**asdict(self), "total_steps": self.total_steps, "arch_steps": self.arch_steps,
                "weight_only_steps": self.weight_only_steps, "eval_batches_per_epoch": self.eval_batches_per_epoch,
                "eval_batches": self.eval_batches}


def plan_search(examples: int, batch_size: int, epochs: int, warmup_epochs: int = 0,
                train_portion: float = 0.5) -> SearchPlan:
    """The :class:`SearchPlan` of a search over ``examples`` images."""
    train, val = split_halves(examples, train_portion)
    if train < 2 or val < 2:
        raise ValueError(f"{examples} examples with train_portion={train_portion} leave a half too small for a "
                         f"step ({train} for the weights, {val} for the architecture; a step needs 2)")
    steps = steps_per_epoch(train, batch_size)
    epochs = check_int("epochs", epochs)
    warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
    return SearchPlan(examples, train, val, int(batch_size), steps, epochs, warmup_epochs)


def search_seconds(plan: SearchPlan, step_seconds: float, weight_step_seconds: float | None = None,
                   eval_batch_seconds: float = 0.0) -> float:
    """The search's duration: its architecture steps at ``step_seconds`` each, its
    warm-up steps at ``weight_step_seconds`` each (needed only when there are some) and
    its evaluation batches at ``eval_batch_seconds`` each."""
    for name, value in (("step_seconds", step_seconds), ("weight_step_seconds", weight_step_seconds),
                        ("eval_batch_seconds", eval_batch_seconds)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)
                                  or not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if plan.weight_only_steps and weight_step_seconds is None:
        raise ValueError(f"the plan has {plan.weight_only_steps} weight-only warm-up steps: "
                         "give weight_step_seconds")
    warmup = plan.weight_only_steps * float(weight_step_seconds) if plan.weight_only_steps else 0.0
    return plan.arch_steps * float(step_seconds) + warmup + plan.eval_batches * float(eval_batch_seconds)


def hours(seconds: float) -> float:
    return seconds / SECONDS_PER_HOUR


def days(seconds: float) -> float:
    """Device-days (GPU-days on a GPU)."""
    return seconds / SECONDS_PER_DAY
