"""A selected proxy subset and its file format.

File format, version 1 (all integers little-endian)::

    offset          size          field
    0               8             magic b"PXYSET\\0\\0"
    8               4             uint32 format version (1)
    12              8             uint64 L, the length of the header in bytes
    20              L             header: a UTF-8 JSON object (below)
    20 + L          8 * k         the k selected indices, int64, in the proxy's order
    20 + L + 8k     32            SHA-256 of every byte before it

Header keys: ``n`` (examples in the full data), ``k`` (selected), ``method``, ``params``
(``seed``, ``bin_width`` and, where used, ``fraction``, ``round_to``, ``beta``),
``histogram`` (``edges``, ``counts``, ``bin_width``), ``selected_per_bin``,
``fingerprint`` (``Scores.fingerprint()`` of the scores it was selected from),
``dataset_fingerprint`` (the fingerprint of the dataset those scores were computed on, or
null when unknown; optional, files without it read as null), ``proxyfast_version`` and
``created`` (ISO 8601, UTC). Readers ignore keys they do not
know; a change that old readers cannot ignore increments the format version. Files are
written atomically: a temporary file in the same directory, fsynced, then renamed.
The same specification is in docs/proxyset-format.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np
import torch

from .._atomic import atomic_write
from .._fileformat import DIGEST_SIZE as _DIGEST_SIZE
from .._fileformat import PREAMBLE as _PREAMBLE
from .._fileformat import read_preamble
from .._version import __version__
from .binning import Histogram
from ..data import dataset_fingerprint as _dataset_fingerprint
from ..scoring import DatasetMismatchError, Scores

__all__ = ["ProxySet", "BinRow", "MAGIC", "FORMAT_VERSION"]

MAGIC = b"PXYSET\0\0"
FORMAT_VERSION = 1


class BinRow(NamedTuple):
    """One histogram bin: the range [lo, hi), its examples and how many were selected."""

    lo: float
    hi: float
    examples: int
    selected: int
    percent: float


class ProxySet:
    """The indices of a proxy subset of N examples, with how they were selected.

    Attributes:
        indices: int64 [k], distinct, in a seeded random order.
        n: the number of examples the proxy was selected from.
        method: the selection method's name.
        params: the selection parameters (seed, bin_width, and fraction, round_to, beta
            where they were used).
        histogram: the log10-entropy histogram of all N examples.
        selected_per_bin: int64 [n_bins], selected examples per histogram bin.
    """

    def __init__(
        self,
        indices: torch.Tensor,
        *,
        n: int,
        method: str,
        params: dict[str, Any],
        histogram: Histogram,
        selected_per_bin: np.ndarray,
        scores: Scores | None = None,
        fingerprint: str | None = None,
        dataset_fingerprint: str | None = None,
        created: str | None = None,
        proxyfast_version: str = __version__,
    ) -> None:
        if scores is None and fingerprint is None:
            raise ValueError("a ProxySet needs the scores it was selected from or their fingerprint")
        self.indices = indices
        self.n = int(n)
        self.method = method
        self.params = dict(params)
        self.histogram = histogram
        self.selected_per_bin = np.asarray(selected_per_bin, dtype=np.int64)
        self.created = created or datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.proxyfast_version = proxyfast_version
        # The fingerprint hashes all N scores on the host; it is computed only when needed.
        self._scores = scores
        self._fingerprint = fingerprint
        if dataset_fingerprint is None and scores is not None:
            dataset_fingerprint = scores.dataset_fingerprint
        self.dataset_fingerprint = dataset_fingerprint

    @property
    def k(self) -> int:
        return self.indices.numel()

    @property
    def device(self) -> torch.device:
        return self.indices.device

    @property
    def fingerprint(self) -> str:
        """``Scores.fingerprint()`` of the scores this proxy was selected from."""
        if self._fingerprint is None:
            self._fingerprint = self._scores.fingerprint()
        return self._fingerprint

    def __len__(self) -> int:
        return self.k

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"ProxySet(method={self.method!r}, k={self.k}, n={self.n}, {params}, device={self.device})"

    def to(self, device: torch.device | str) -> "ProxySet":
        """A copy with the indices on ``device``."""
        copy = object.__new__(ProxySet)
        copy.__dict__.update(self.__dict__)
        copy.indices = self.indices.to(device)
        return copy

    def split(self, train_portion: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight-training indices, architecture indices): the first
        ``floor(train_portion * k)`` indices and the rest. The indices are in random order,
        so both parts are unbiased samples of the proxy."""
        if isinstance(train_portion, bool) or not isinstance(train_portion, (int, float)):
            raise TypeError(f"train_portion must be a number, got {type(train_portion).__name__}")
        if not 0 <= train_portion <= 1:  # also false for nan
            raise ValueError(f"train_portion must be in [0, 1], got {train_portion!r}")
        n_train = math.floor(train_portion * self.k)
        return self.indices[:n_train], self.indices[n_train:]

    def table(self) -> list[BinRow]:
        """Per-bin rows: range, examples, selected, percent of the bin's examples selected."""
        edges, counts = self.histogram.edges, self.histogram.counts
        rows = []
        for b, selected in enumerate(self.selected_per_bin.tolist()):
            examples = int(counts[b])
            percent = 100.0 * selected / examples if examples else 0.0
            rows.append(BinRow(float(edges[b]), float(edges[b + 1]), examples, selected, percent))
        return rows

    def header(self) -> dict[str, Any]:
        """The file header of this proxy set (computes the fingerprint if needed)."""
        return {
            "n": self.n,
            "k": self.k,
            "method": self.method,
            "params": self.params,
            "histogram": self.histogram.to_dict(),
            "selected_per_bin": self.selected_per_bin.tolist(),
            "fingerprint": self.fingerprint,
            "dataset_fingerprint": self.dataset_fingerprint,
            "proxyfast_version": self.proxyfast_version,
            "created": self.created,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Writes the proxy set to ``path`` atomically (format in the module docstring)."""
        header = json.dumps(self.header(), allow_nan=False, separators=(",", ":")).encode("utf-8")
        body = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header)) + header
        body += self.indices.detach().to("cpu", torch.int64).contiguous().numpy().astype("<i8", copy=False).tobytes()
        with atomic_write(path) as file:
            file.write(body)
            file.write(hashlib.sha256(body).digest())

    @classmethod
    def load(cls, path: str | os.PathLike, scores: Scores | None = None) -> "ProxySet":
        """Reads a proxy set written by :meth:`save`; indices on the CPU.

        With ``scores``, also checks that the proxy was selected from these scores.
        Raises ValueError naming the file when it is not a proxy set file, is truncated
        or corrupt, or was written by a newer proxyfast.
        """
        with open(path, "rb") as file:
            data = file.read()
        header, indices = _parse(os.fspath(path), data)
        proxy = cls(
            torch.from_numpy(indices),
            n=header["n"],
            method=header["method"],
            params=header["params"],
            histogram=Histogram.from_dict(header["histogram"]),
            selected_per_bin=np.asarray(header["selected_per_bin"], dtype=np.int64),
            fingerprint=header["fingerprint"],
            dataset_fingerprint=header.get("dataset_fingerprint"),
            created=header["created"],
            proxyfast_version=header["proxyfast_version"],
        )
        if scores is not None:
            proxy.check_scores(scores, source=os.fspath(path))
        return proxy

    def check_scores(self, scores: Scores, source: str = "the proxy set") -> None:
        """Raises ValueError unless this proxy was selected from ``scores``."""
        if len(scores) != self.n or scores.fingerprint() != self.fingerprint:
            raise ValueError(
                f"{source}: this proxy set was selected from different scores "
                f"(n = {self.n}, fingerprint {self.fingerprint}; the scores given have "
                f"n = {len(scores)}, fingerprint {scores.fingerprint()})"
            )

    def check_dataset(self, dataset, source: str = "the proxy set") -> None:
        """Raises :class:`DatasetMismatchError` unless this proxy indexes ``dataset``: the
        same number of examples and, where both are known, the same dataset fingerprint."""
        actual = _dataset_fingerprint(dataset)
        name = getattr(dataset, "name", type(dataset).__name__)
        if self.n != len(dataset):
            raise DatasetMismatchError(
                f"{source} was selected from {self.n:,} examples, but the dataset given ({name}) holds "
                f"{len(dataset):,}: it is a proxy of another dataset"
            )
        if self.dataset_fingerprint is not None and actual is not None and self.dataset_fingerprint != actual:
            raise DatasetMismatchError(
                f"{source} was selected from scores of another dataset (fingerprint {self.dataset_fingerprint}); "
                f"the dataset given ({name}) has fingerprint {actual}"
            )


_HEADER_KEYS = ("n", "k", "method", "params", "histogram", "selected_per_bin", "fingerprint",
                "proxyfast_version", "created")


def _parse(path: str, data: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """Checks a proxy set file's bytes and returns its header and indices."""
    _, header_size = read_preamble(path, data, MAGIC, "proxy set", FORMAT_VERSION)
    header_end = _PREAMBLE.size + header_size
    if len(data) < header_end + _DIGEST_SIZE:
        raise ValueError(f"{path}: truncated proxy set file ({len(data)} bytes; the header alone needs {header_end})")
    intact = hashlib.sha256(data[:-_DIGEST_SIZE]).digest() == data[-_DIGEST_SIZE:]
    try:
        header = json.loads(data[_PREAMBLE.size:header_end].decode("utf-8"))
        k = header["k"]
        if not _is_int(k) or k < 0:
            raise ValueError
        expected = header_end + 8 * k + _DIGEST_SIZE
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        if intact:
            raise ValueError(f"{path}: malformed proxy set header") from None
        raise ValueError(f"{path}: corrupt proxy set file (checksum mismatch)") from None
    if len(data) < expected:
        raise ValueError(f"{path}: truncated proxy set file ({len(data)} bytes, expected {expected})")
    if not intact or len(data) != expected:
        raise ValueError(f"{path}: corrupt proxy set file (checksum mismatch)")
    missing = [key for key in _HEADER_KEYS if key not in header]
    if missing:
        raise ValueError(f"{path}: malformed proxy set header (missing {', '.join(missing)})")
    indices = np.frombuffer(data, dtype="<i8", count=k, offset=header_end).astype(np.int64)
    # The checksum proves the bytes are as written, not that their writer was proxyfast.
    problem = _header_problem(header) or _indices_problem(indices, header["n"])
    if problem:
        raise ValueError(f"{path}: malformed proxy set ({problem})")
    return header, indices


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_list_problem(name: str, values: Any, length: int) -> str | None:
    if not isinstance(values, list) or len(values) != length:
        return f"{name} must be a list of {length} counts"
    if not all(_is_int(v) and v >= 0 for v in values):
        return f"{name} must hold non-negative integers"
    return None


def _header_problem(header: dict[str, Any]) -> str | None:
    """What is wrong with a proxy set header, or None."""
    n, k = header["n"], header["k"]
    if not _is_int(n) or n < 1:
        return f"n must be a positive integer, got {n!r}"
    if not _is_int(k) or not 0 <= k <= n:
        return f"k must be an integer in [0, n = {n}], got {k!r}"
    for key in ("method", "fingerprint", "created", "proxyfast_version"):
        if not isinstance(header[key], str):
            return f"{key} must be a string"
    if not isinstance(header.get("dataset_fingerprint"), (str, type(None))):
        return "dataset_fingerprint must be a string or null"
    if not isinstance(header["params"], dict):
        return "params must be an object"
    histogram = header["histogram"]
    if not isinstance(histogram, dict) or not {"edges", "counts", "bin_width"} <= set(histogram):
        return "the histogram must hold edges, counts and bin_width"
    edges, counts, bin_width = histogram["edges"], histogram["counts"], histogram["bin_width"]
    if not _is_number(bin_width) or bin_width <= 0:
        return f"the histogram's bin_width must be a positive number, got {bin_width!r}"
    if not isinstance(edges, list) or len(edges) < 2 or not all(_is_number(e) for e in edges):
        return "the histogram's edges must be at least 2 finite numbers"
    if any(b <= a for a, b in zip(edges, edges[1:])):
        return "the histogram's edges must increase"
    n_bins = len(edges) - 1
    problem = _int_list_problem("the histogram's counts", counts, n_bins) or _int_list_problem(
        "selected_per_bin", header["selected_per_bin"], n_bins)
    if problem:
        return problem
    if sum(counts) != n:
        return f"the histogram counts {sum(counts)} examples, but n = {n}"
    selected = header["selected_per_bin"]
    if sum(selected) != k:
        return f"selected_per_bin counts {sum(selected)} selected examples, but k = {k}"
    if any(s > c for s, c in zip(selected, counts)):
        return "selected_per_bin selects more examples from a bin than it holds"
    return None


def _indices_problem(indices: np.ndarray, n: int) -> str | None:
    if not len(indices):
        return None
    if indices.min() < 0 or indices.max() >= n:
        return f"an index is outside [0, {n})"
    if len(np.unique(indices)) != len(indices):
        return "an index appears more than once"
    return None
