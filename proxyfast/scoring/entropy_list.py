"""The paper's entropy-list text format.

One example a line, ``index entropy label`` separated by whitespace (the paper's files
use tabs), the entropy in nats; the label column may be left out in every line. Indices
run over 0..N-1, each exactly once, in any order. Paths ending in ``.gz`` are gzip
compressed.

Reading takes numpy's float64 log10 of each entropy, as the paper's code and
:meth:`Scores.from_entropy` do, and keeps it in float64, so selection bins as the paper;
entropies below the float64 range (under 2.2e-308 nats, from logits with margins of
hundreds of nats) are read through their decimal text, so their log10 stays exact.
Writing picks for each example a decimal that reads back to the same fp32 entropy and
log10 entropy: ``read_entropy_list(write_entropy_list(p, s))`` returns ``s`` bit for bit
when ``s`` was read from a list or made from float64 entropies. Otherwise it returns
float64 log10 entropies whose float32 rounding is ``s``'s, so the same fingerprint: for
float32 log10 entropies (scores from logits), and for float64 ones that are the log10 of
no float64 (some values given to :meth:`Scores.from_log10_entropy`). Where no float64
entropy gives both (a fp32 entropy that underflowed), the log10 entropy, which the
selection uses, is the one kept.
"""

from __future__ import annotations

import gzip
import math
import os
import sys
from decimal import Decimal
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write
from .._fileformat import read_text
from .scores import Scores, paper_log10

__all__ = ["read_entropy_list", "write_entropy_list"]

# Below this a float64 loses precision (subnormal) or becomes 0.
_FLOAT64_TINY = sys.float_info.min
# How many float64 neighbours of 10 ** log10 each side the writer tries for an entropy
# whose log10 is exactly a stored float64 log10 entropy.
_NEIGHBOURS = 4


def _is_gzip(path: str | os.PathLike) -> bool:
    return os.fspath(path).endswith(".gz")


def _tiny_log10(text: str) -> float | None:
    """log10 of a positive decimal too small for a float64, or None if it is not positive."""
    value = Decimal(text)
    return float(value.log10()) if value > 0 else None


def read_entropy_list(path: str | os.PathLike) -> Scores:
    """Reads an entropy list into :class:`Scores` (CPU), each entry placed by its index.

    Raises ValueError, naming the file and line, on a malformed line, a non-positive or
    non-finite entropy, a duplicate or missing index, bytes that are not UTF-8, or an
    empty file; naming the file, on a truncated or corrupt ``.gz`` file.
    """
    lines = read_text(path, gzipped=_is_gzip(path)).splitlines()
    where = os.fspath(path)
    indices, entropies, labels, line_numbers = [], [], [], []
    tiny: dict[int, float] = {}  # entry -> log10 entropy, for entropies below the float64 range
    columns = None
    for line_number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if columns is None:
            columns = len(fields)
        if len(fields) != columns or columns not in (2, 3):
            raise ValueError(
                f"{where}: line {line_number}: expected 'index entropy label' "
                f"({columns if columns in (2, 3) else 3} fields), got {len(fields)} fields"
            )
        try:
            index, value = int(fields[0]), float(fields[1])
            label = int(fields[2]) if columns == 3 else 0
        except ValueError:
            raise ValueError(f"{where}: line {line_number}: cannot parse {line.strip()!r}") from None
        if 0 <= value < _FLOAT64_TINY and (log10 := _tiny_log10(fields[1])) is not None:
            tiny[len(entropies)] = log10
        elif not (value > 0 and value != math.inf):  # also rejects nan
            raise ValueError(f"{where}: line {line_number}: entropy must be finite and positive, got {fields[1]}")
        indices.append(index)
        entropies.append(value)
        labels.append(label)
        line_numbers.append(line_number)
    if not indices:
        raise ValueError(f"{where}: the entropy list is empty")

    n = len(indices)
    try:
        order = np.asarray(indices, dtype=np.int64)
        in_range = bool(np.all((order >= 0) & (order < n)))
    except OverflowError:  # an index beyond int64
        in_range = False
    if not in_range:
        i = next(i for i, index in enumerate(indices) if not 0 <= index < n)
        raise ValueError(f"{where}: line {line_numbers[i]}: index {indices[i]} is outside [0, {n}) for {n} entries")
    seen = np.zeros(n, dtype=bool)
    seen[order] = True
    if not seen.all():
        # n entries in [0, n) with one missing means another is duplicated: report both.
        missing = int(np.flatnonzero(~seen)[0])
        first: dict[int, int] = {}
        for i, index in enumerate(indices):
            if index in first:
                raise ValueError(
                    f"{where}: line {line_numbers[i]}: index {index} repeats line {first[index]} "
                    f"(and index {missing} is missing)"
                )
            first[index] = line_numbers[i]

    entropy = torch.empty(n, dtype=torch.float64)
    entropy[order] = torch.tensor(entropies, dtype=torch.float64)
    log10 = paper_log10(entropy)  # the same float64 log10 as Scores.from_entropy
    if tiny:
        log10[order[list(tiny)]] = torch.tensor(list(tiny.values()), dtype=torch.float64)
    label_tensor = None
    if columns == 3:
        label_tensor = torch.empty(n, dtype=torch.int64)
        label_tensor[order] = torch.tensor(labels, dtype=torch.int64)
    return Scores(entropy.to(torch.float32), log10, label_tensor, meta={"source": where})


def _midpoints(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 bounds of the interval that rounds to each fp32 value."""
    below = torch.nextafter(values, torch.tensor(-math.inf)).to(torch.float64)
    above = torch.nextafter(values, torch.tensor(math.inf)).to(torch.float64)
    wide = values.to(torch.float64)
    return (wide + below) / 2, (wide + above) / 2


def _float64_entropies(entropy: torch.Tensor, log10: torch.Tensor) -> torch.Tensor:
    """For float64 log10 entropies: a float64 entropy whose log10 is exactly each one: the
    fp32 entropy itself where it is (always, for lists of fp32 values), else the nearest
    float64 neighbour of ``10 ** log10`` that also rounds to the fp32 entropy, else one
    that does not, else ``10 ** log10``."""
    center = torch.pow(10.0, log10)
    candidates, below, above = [entropy.to(torch.float64), center], center, center
    for _ in range(_NEIGHBOURS):
        below = torch.nextafter(below, torch.tensor(0.0, dtype=torch.float64))
        above = torch.nextafter(above, torch.tensor(math.inf, dtype=torch.float64))
        candidates += [below, above]
    chosen, found = center, torch.zeros(len(log10), dtype=torch.bool)
    for keep_entropy in (True, False):
        for candidate in candidates:
            # Entropies below the float64 range are written from their log10 instead.
            exact = paper_log10(torch.where(candidate < _FLOAT64_TINY, 1.0, candidate)) == log10
            if keep_entropy:
                exact &= candidate.to(torch.float32) == entropy
            take = exact & ~found
            chosen, found = torch.where(take, candidate, chosen), found | take
    return chosen


def _entropy_texts(scores: Scores) -> list[str]:
    """For each example, a decimal entropy that reads back to its fp32 entropy and log10
    entropy (see the module docstring)."""
    entropy = scores.entropy.detach().cpu()
    log10 = scores.log10_entropy.detach().cpu()
    if log10.dtype == torch.float64:
        return _texts(_float64_entropies(entropy, log10), log10)

    def reads_back(candidate: torch.Tensor) -> torch.Tensor:
        return paper_log10(candidate).to(torch.float32) == log10

    # 1. The fp32 entropy itself: always right for lists read from such a file.
    chosen = entropy.to(torch.float64)
    exact = reads_back(chosen)
    if not bool(exact.all()):
        # 2. A float64 rounding to both stored values: the middle of the overlap of their
        #    rounding intervals (it exists for scores made from float64 entropies).
        entropy_low, entropy_high = _midpoints(entropy)
        log10_low, log10_high = _midpoints(log10)
        low = torch.maximum(entropy_low, torch.pow(10.0, log10_low))
        high = torch.minimum(entropy_high, torch.pow(10.0, log10_high))
        middle = (low + high) / 2
        both = (low < high) & (middle.to(torch.float32) == entropy) & reads_back(middle)
        # 3. Otherwise keep the log10 entropy: 10 ** log10 in float64.
        chosen = torch.where(exact, chosen, torch.where(both, middle, torch.pow(10.0, log10.to(torch.float64))))
    return _texts(chosen, log10)


def _texts(chosen: torch.Tensor, log10: torch.Tensor) -> list[str]:
    """The decimal of each chosen float64 entropy; those below the float64 range from
    their log10 entropy."""
    texts = [repr(value) for value in chosen.tolist()]
    # Entropies below the float64 range are written from their log10 as "m e-E".
    for i in torch.nonzero(chosen < _FLOAT64_TINY).flatten().tolist():
        exponent = math.floor(float(log10[i]))
        texts[i] = f"{10.0 ** (float(log10[i]) - exponent)!r}e{exponent}"
    return texts


def write_entropy_list(path: str | os.PathLike, scores: Scores, labels: Any = None) -> None:
    """Writes ``scores`` as an entropy list (``index<TAB>entropy<TAB>label``), atomically.

    ``labels`` (length N) overrides ``scores.labels``; with neither, the label column is
    left out. Reading the file back gives the same scores (see the module docstring).
    """
    if labels is None:
        labels = scores.labels
    texts = _entropy_texts(scores)
    if labels is not None:
        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if labels.shape != (len(scores),) or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be {len(scores)} integers, got shape {labels.shape} dtype {labels.dtype}")
        rows = (f"{i}\t{text}\t{label}\n" for i, (text, label) in enumerate(zip(texts, labels.tolist())))
    else:
        rows = (f"{i}\t{text}\n" for i, text in enumerate(texts))
    data = "".join(rows).encode("utf-8")
    if _is_gzip(path):
        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0: same scores, same bytes
    with atomic_write(path) as file:
        file.write(data)
