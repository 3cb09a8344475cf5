"""Forgetting events (Toneva et al., ICLR 2019): how often training forgets each example.

A forgetting event is a presentation at which an example is misclassified after being
classified correctly at its previous presentation. Counting needs a model trained from
scratch with the correctness of every example recorded each time it is presented (on
its minibatch, in training mode, as in the paper). Examples that are never classified
correctly count as forgotten infinitely often, so they rank first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_int

__all__ = ["Forgetting", "ForgettingTracker"]


@dataclass(frozen=True)
class Forgetting:
    """Per-example forgetting statistics of one training run (CPU tensors).

    Attributes:
        events: int64 [N], correct-to-incorrect transitions between successive presentations.
        learned: bool [N], whether the example was ever classified correctly.
        presentations: int64 [N], how often the example was presented.
    """

    events: torch.Tensor
    learned: torch.Tensor
    presentations: torch.Tensor

    @property
    def counts(self) -> torch.Tensor:
        """float32 [N]: ``events``, or ``inf`` for examples never learned. This is what
        ``Scores.forgetting_counts`` holds and the ``forgetting`` method ranks by."""
        return torch.where(self.learned, self.events.to(torch.float32), torch.inf)

    @property
    def unforgettable(self) -> torch.Tensor:
        """bool [N]: learned and never forgotten."""
        return self.learned & (self.events == 0)


class ForgettingTracker:
    """Counts forgetting events from the correctness of examples at each presentation.

    >>> tracker = ForgettingTracker(n)
    >>> tracker.update(batch_indices, logits.argmax(1) == labels)   # every minibatch
    >>> result = tracker.result()
    """

    def __init__(self, n: int, device: torch.device | str = "cpu") -> None:
        check_int("n", n)
        self.n = n
        # On the training device: an update then needs no device-to-host copy.
        self.last_correct = torch.zeros(n, dtype=torch.bool, device=device)
        self.learned = torch.zeros(n, dtype=torch.bool, device=device)
        self.events = torch.zeros(n, dtype=torch.int64, device=device)
        self.presentations = torch.zeros(n, dtype=torch.int64, device=device)

    def update(self, indices: torch.Tensor, correct: torch.Tensor) -> None:
        """Records one presentation of the examples ``indices`` (distinct, int64 [B]) and
        whether each was classified correctly (bool [B]); tensors may be on any device."""
        device = self.events.device
        indices = torch.as_tensor(indices, dtype=torch.int64)
        correct = torch.as_tensor(correct).to(device, torch.bool, non_blocking=True)
        if indices.shape != correct.shape or indices.dim() != 1:
            raise ValueError(f"indices and correct must be 1-D of one length, got {tuple(indices.shape)} "
                             f"and {tuple(correct.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n):
            raise ValueError(f"an index is outside [0, {self.n})")
        indices = indices.to(device, non_blocking=True)
        forgotten = self.last_correct[indices] & ~correct
        self.events[indices] += forgotten.to(torch.int64)
        self.learned[indices] |= correct
        self.last_correct[indices] = correct
        self.presentations[indices] += 1

    def result(self) -> Forgetting:
        """The statistics so far, on the CPU."""
        return Forgetting(self.events.cpu().clone(), self.learned.cpu().clone(), self.presentations.cpu().clone())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"last_correct": self.last_correct, "learned": self.learned, "events": self.events,
                "presentations": self.presentations}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            if getattr(self, name).shape != value.shape:
                raise ValueError(f"forgetting state {name!r} has shape {tuple(value.shape)}, expected ({self.n},)")
            setattr(self, name, value.to(self.events.device).clone())
