"""Per-example scores of a baseline model: the input of every selection method.

A :class:`Scores` holds the data entropy of each example (DESIGN.md section 2.1) in nats
and its log10, the quantity the selection histogram is built on. The log10 entropy is
the authoritative value: an entropy can underflow fp32 where its log10 is still exact,
so the methods and the fingerprint use ``log10_entropy``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import ops

__all__ = ["Scores", "as_scores"]


def _as_real_tensor(name: str, values: Any) -> torch.Tensor:
    """``values`` (tensor, ndarray or sequence) as a 1-D tensor of real numbers, device kept."""
    if not isinstance(values, torch.Tensor):
        try:
            array = np.asarray(values)
        except ValueError as error:  # ragged nested sequences
            raise ValueError(f"{name} must be a 1-D sequence of numbers: {error}") from None
        if array.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
        values = torch.from_numpy(np.ascontiguousarray(array))
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if values.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(values.shape)}")
    if values.numel() == 0:
        raise ValueError(f"{name} is empty")
    return values


def _first_bad_index(bad: torch.Tensor) -> int | None:
    # One scalar crosses to the host, never the N-sized mask.
    if not bool(bad.any()):
        return None
    return int(torch.argmax(bad.to(torch.uint8)))


def _as_labels(labels: Any, n: int, device: torch.device) -> torch.Tensor | None:
    if labels is None:
        return None
    labels = _as_real_tensor("labels", labels)
    if labels.is_floating_point():
        raise TypeError(f"labels must hold integers, got dtype {labels.dtype}")
    if labels.numel() != n:
        raise ValueError(f"labels has {labels.numel()} entries but there are {n} examples")
    return labels.to(device=device, dtype=torch.int64)


@dataclass(frozen=True, eq=False, repr=False)
class Scores:
    """Per-example scores of N examples, all tensors on one device.

    Attributes:
        entropy: float32 [N], softmax entropy in nats (0 where it underflows fp32).
        log10_entropy: float32 [N], finite; what the selection methods use.
        labels: int64 [N] class labels, or None.
        meta: free-form provenance (e.g. the file the scores came from); not fingerprinted.

    Build one with :meth:`from_logits`, :meth:`from_entropy` or :meth:`from_log10_entropy`.
    Treat the tensors as read-only: the fingerprint is computed once and cached.
    """

    entropy: torch.Tensor
    log10_entropy: torch.Tensor
    labels: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("entropy", "log10_entropy"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.dtype != torch.float32:
                raise TypeError(f"{name} must be a 1-D float32 tensor")
        n = self.entropy.numel()
        if n == 0:
            raise ValueError("scores are empty: there are no examples")
        if self.log10_entropy.numel() != n or self.log10_entropy.device != self.entropy.device:
            raise ValueError("entropy and log10_entropy must have the same length and device")
        if self.labels is not None and (
            self.labels.dtype != torch.int64 or self.labels.shape != (n,) or self.labels.device != self.entropy.device
        ):
            raise ValueError(f"labels must be an int64 tensor of shape ({n},) on {self.entropy.device}")

    @classmethod
    def from_logits(cls, logits: torch.Tensor, labels: Any = None) -> "Scores":
        """Scores of [N, C] fp32/fp16/bf16 logits, computed on their device by ``ops.entropy``."""
        entropy, log10_entropy = ops.entropy(logits)
        return cls(entropy, log10_entropy, _as_labels(labels, len(entropy), entropy.device))

    @classmethod
    def from_entropy(cls, entropy: Any, labels: Any = None) -> "Scores":
        """Scores of entropies in nats (tensor, ndarray or list; finite and positive).

        The log10 is taken in float64 from the values as given, then stored as fp32.
        """
        values = _as_real_tensor("entropy", entropy).to(torch.float64)
        bad = _first_bad_index(~(torch.isfinite(values) & (values > 0)))
        if bad is not None:
            raise ValueError(f"entropy must be finite and positive; entropy[{bad}] = {float(values[bad])!r}")
        labels = _as_labels(labels, len(values), values.device)
        return cls(values.to(torch.float32), torch.log10(values).to(torch.float32), labels)

    @classmethod
    def from_log10_entropy(cls, log10_entropy: Any, labels: Any = None) -> "Scores":
        """Scores of log10 entropies (finite); the entropy is ``10 ** log10_entropy``."""
        values = _as_real_tensor("log10_entropy", log10_entropy).to(torch.float64)
        bad = _first_bad_index(~torch.isfinite(values))
        if bad is not None:
            raise ValueError(f"log10_entropy must be finite; log10_entropy[{bad}] = {float(values[bad])!r}")
        labels = _as_labels(labels, len(values), values.device)
        return cls(torch.pow(10.0, values).to(torch.float32), values.to(torch.float32), labels)

    def __len__(self) -> int:
        return self.entropy.numel()

    def __repr__(self) -> str:
        labels = "yes" if self.labels is not None else "no"
        return f"Scores(n={len(self)}, device={self.device}, labels={labels})"

    @property
    def device(self) -> torch.device:
        return self.entropy.device

    def to(self, device: torch.device | str) -> "Scores":
        """A copy with every tensor field on ``device`` (self when already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        moved = {
            f.name: value.to(device)
            for f in dataclasses.fields(self)
            if f.init and isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        scores = dataclasses.replace(self, **moved, meta=dict(self.meta))
        object.__setattr__(scores, "_fingerprint", self._fingerprint)  # same values, same fingerprint
        return scores

    def fingerprint(self) -> str:
        """``"sha256:<hex>"`` over N (uint64, little-endian) then the N log10 entropies
        (float32, little-endian). Identical on every device; computed once."""
        if self._fingerprint is None:
            values = self.log10_entropy.detach().to("cpu").contiguous().numpy().astype("<f4", copy=False)
            digest = hashlib.sha256(struct.pack("<Q", len(values)))
            digest.update(values.tobytes())
            object.__setattr__(self, "_fingerprint", "sha256:" + digest.hexdigest())
        return self._fingerprint


def as_scores(values: Any) -> Scores:
    """A :class:`Scores` from a Scores, a 2-D tensor/ndarray of logits, or a 1-D
    tensor/ndarray/list of entropies in nats."""
    if isinstance(values, Scores):
        return values
    if isinstance(values, np.ndarray) and values.ndim == 2:
        values = torch.from_numpy(values)
    if isinstance(values, torch.Tensor) and values.dim() == 2:
        return Scores.from_logits(values)
    if isinstance(values, (torch.Tensor, np.ndarray)) and values.ndim != 1:
        raise ValueError(f"scores must be 1-D entropies or 2-D logits, got shape {tuple(values.shape)}")
    return Scores.from_entropy(values)
