"""Plain numpy / Python reference implementations of the proxyfast operators.

They are slow and simple on purpose: the tests compare the fast kernels against them,
and the benchmarks time the fast paths against the paper's numpy sampler.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "entropy_reference",
    "histogram_reference",
    "selection_weights_reference",
    "paper_edges",
    "paper_p_sampler",
    "successive_sampling_probabilities",
]


def _logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(values, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(peak, axis) + np.log(np.sum(np.exp(values - peak), axis=axis))


def entropy_reference(logits) -> tuple[np.ndarray, np.ndarray]:
    """Softmax entropy (nats) and log10 entropy of each row, in float64, in the log domain.

    With d_i = z_i - max z and delta = sum_{i != argmax} e^{d_i}:
    H = log1p(delta) + S / (1 + delta), S = sum_{i != argmax} e^{d_i} (-d_i), and
    log H = logaddexp(log log1p(delta), log S - log1p(delta)), where log delta and log S
    are log-sum-exps, so log H is exact to float64 precision for any finite margin.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError("logits must be 2-D")
    n, c = z.shape
    argmax = np.argmax(z, axis=1)
    d = z - z[np.arange(n), argmax][:, None]
    others = np.ones_like(d, dtype=bool)
    others[np.arange(n), argmax] = False
    d_others = d[others].reshape(n, c - 1)
    log_delta = _logsumexp(d_others, axis=1)
    with np.errstate(divide="ignore"):
        log_s = _logsumexp(np.where(d_others < 0, d_others + np.log(np.maximum(-d_others, 1e-300)), -np.inf), axis=1)
    delta = np.exp(log_delta)
    log1p_delta = np.log1p(delta)
    # log(log1p(delta)) without underflow: log1p(delta) = delta * (log1p(delta) / delta).
    ratio = np.where(delta > 0, log1p_delta / np.where(delta > 0, delta, 1.0), 1.0)
    log_first = log_delta + np.log(ratio)
    log_h = np.logaddexp(log_first, log_s - log1p_delta)
    return np.exp(log_h), log_h / math.log(10.0)


def histogram_reference(log10_entropy, bin_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges, bin ids and counts of DESIGN.md section 2.2, one value at a time."""
    values = [float(v) for v in np.asarray(log10_entropy, dtype=np.float32)]
    low, high = min(values), max(values)
    lo = float(round(low))
    while low < lo:
        lo -= bin_width
    hi = float(round(high))
    while high > hi:
        hi += bin_width
    n_bins = max(1, round((hi - lo) / bin_width))
    edges = [lo + b * bin_width for b in range(n_bins + 1)]
    edges[-1] = max(edges[-1], high)
    ids = []
    for v in values:
        bin_id = n_bins - 1  # the top edge belongs to the last bin
        for b in range(n_bins):
            if edges[b] <= v < edges[b + 1]:
                bin_id = b
                break
        ids.append(bin_id)
    ids = np.array(ids, dtype=np.int64)
    return np.array(edges), ids, np.bincount(ids, minlength=n_bins)


def selection_weights_reference(bin_ids, counts, method: str) -> np.ndarray:
    """Per-example weights of P1, P2 or P3 (DESIGN.md section 2.3), unnormalised."""
    counts = np.asarray(counts, dtype=np.float64)
    h = counts[np.asarray(bin_ids)]
    if method == "p1":
        return (counts.max() - h + 1.0) / h
    if method == "p2":
        return 1.0 / h
    if method == "p3":
        return 1.0 / h**2
    raise ValueError(f"unknown method {method!r}")


def paper_edges(log_entropy: np.ndarray, bin_width: float) -> np.ndarray:
    """The bin edges as the paper's code builds them (``np.arange`` up to the raised top)."""
    low, high = log_entropy.min(), log_entropy.max()
    lo = np.round(low)
    while low < lo:
        lo -= bin_width
    hi = np.round(high)
    while high > hi:
        hi += bin_width
    return np.arange(lo, hi + bin_width, bin_width)


def paper_p_sampler(entropy, fraction: float, sampling_type: int, bin_width: float, rng: np.random.Generator):
    """The paper's P1/P2/P3 selection written with numpy (histogram by searchsorted, then
    ``rng.choice(N, k, replace=False, p=...)`` and a shuffle): the speed baseline."""
    log_entropy = np.log10(np.asarray(entropy, dtype=np.float64))
    edges = paper_edges(log_entropy, bin_width)
    bin_ids = np.clip(np.searchsorted(edges, log_entropy, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(bin_ids, minlength=len(edges) - 1)
    weights = selection_weights_reference(bin_ids, counts, f"p{sampling_type}")
    k = int(np.floor(fraction * len(log_entropy)))
    indices = rng.choice(len(log_entropy), size=k, replace=False, p=weights / weights.sum())
    rng.shuffle(indices)
    return indices


def successive_sampling_probabilities(weights, k: int) -> tuple[dict, dict]:
    """Exact probabilities of drawing k items one at a time without replacement, each draw
    proportional to the weights not yet drawn: (ordered sequence -> p, frozenset -> p).
    Enumerates all sequences, so only for small N."""
    w = [float(x) for x in weights]
    sequences = {}
    for seq in itertools.permutations([i for i, x in enumerate(w) if x > 0], k):
        p, remaining = 1.0, sum(w)
        for i in seq:
            p *= w[i] / remaining
            remaining -= w[i]
        sequences[seq] = p
    sets: dict = {}
    for seq, p in sequences.items():
        key = frozenset(seq)
        sets[key] = sets.get(key, 0.0) + p
    return sequences, sets
