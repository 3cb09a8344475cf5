"""Plain numpy / Python reference implementations of the proxyfast operators, for the tests.

They are slow and simple on purpose. The ``paper_*`` functions compute as the paper's
public sampler does (float64, strict bin membership, per-bin probabilities divided among
the bin's examples), not as the library does.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "entropy_reference",
    "histogram_reference",
    "paper_edges",
    "paper_histogram",
    "paper_example_probabilities",
    "ranking_reference",
    "two_group_count_distribution",
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
    """Edges, bin ids and counts of docs/design.md ("The histogram"), one value at a time,
    compared in float64 as the paper's code compares: float32 values as they are, float64
    values unrounded."""
    values = [float(v) for v in np.asarray(log10_entropy)]
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



def paper_log10_entropy(entropy) -> np.ndarray:
    """log10 of entropies as the paper's code takes it: numpy, float64."""
    return np.log10(np.asarray(entropy, dtype=np.float64))


def float32_crossing_entropy(edge: float) -> float:
    """An entropy whose float64 log10 lies below ``edge`` and rounds to ``edge`` or above
    in float32: binning the float32 value moves it one bin up."""
    entropy = 10.0 ** edge
    for _ in range(200):
        entropy = np.nextafter(entropy, 0.0)
        log10 = paper_log10_entropy([entropy])[0]
        if log10 < edge and float(np.float32(log10)) >= edge:
            return float(entropy)
    raise AssertionError(f"no such entropy near 10 ** {edge}")


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


def paper_histogram(log_entropy, bin_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges, bin ids and counts as the paper's sampler builds them: an example belongs to
    bin i when edges[i] < v < edges[i + 1]; a value on an edge is an error there."""
    values = np.asarray(log_entropy, dtype=np.float64)
    edges = paper_edges(values, bin_width)
    if np.isin(values, edges).any():
        raise ValueError("a value lies on a bin edge: the paper's sampler rejects it")
    ids = np.searchsorted(edges, values, side="left") - 1
    return edges, ids, np.bincount(ids, minlength=len(edges) - 1)


def paper_example_probabilities(bin_ids, counts, sampling_type: int) -> np.ndarray:
    """The paper's per-example selection probabilities: a probability per bin (P1:
    (max h - h + 1) for non-empty bins, P2: the same for every bin, P3: 1 / h), shared
    equally by the bin's examples, normalised over the examples."""
    histo = np.asarray(counts, dtype=np.float64)
    if sampling_type == 1:
        bin_probability = (histo.max() - histo + 1.0) * (histo != 0)
        bin_probability = bin_probability / bin_probability.sum()
    elif sampling_type == 2:
        bin_probability = np.full(len(histo), 1.0 / len(histo))
    elif sampling_type == 3:
        bin_probability = np.array([1.0 / h if h != 0 else 0.0 for h in histo])
    else:
        raise ValueError(f"unknown sampling type {sampling_type!r}")
    bin_ids = np.asarray(bin_ids)
    per_example = bin_probability[bin_ids] / histo[bin_ids]
    return per_example / per_example.sum()


def ranking_reference(values, k: int, method: str, beta: float = 0.9) -> set:
    """The index set of entropy_top / entropy_bottom / deterministic, ties to the lower
    index, by Python's stable sort of (value, index) pairs in float64."""
    values = [float(v) for v in np.asarray(values, dtype=np.float64)]
    ascending = sorted(range(len(values)), key=lambda i: (values[i], i))
    descending = sorted(range(len(values)), key=lambda i: (-values[i], i))
    if method == "entropy_bottom":
        return set(ascending[:k])
    if method == "entropy_top":
        return set(descending[:k])
    if method == "deterministic":
        n_low = math.floor(beta * k)
        low = ascending[:n_low]
        taken = set(low)
        high = [i for i in descending if i not in taken][: k - n_low]
        return taken | set(high)
    raise ValueError(f"unknown ranking {method!r}")


def two_group_count_distribution(n_a: int, w_a: float, n_b: int, w_b: float, k: int) -> np.ndarray:
    """Exact law of the number of group-A items among k drawn one at a time without
    replacement, each draw proportional to the weights left (n_a items of weight w_a,
    n_b of weight w_b): p[a] = P(a items of A drawn), a = 0..k. O(k^2)."""
    if not 0 <= k <= n_a + n_b:
        raise ValueError("k must be in [0, n_a + n_b]")
    p = np.zeros(k + 1)
    p[0] = 1.0
    for drawn in range(k):
        a = np.arange(drawn + 1)
        left_a = np.maximum(n_a - a, 0) * float(w_a)
        left_b = np.maximum(n_b - (drawn - a), 0) * float(w_b)
        total = left_a + left_b
        to_a = np.divide(left_a, total, out=np.zeros_like(total), where=total > 0)
        nxt = np.zeros(k + 1)
        nxt[1:drawn + 2] += p[:drawn + 1] * to_a
        nxt[:drawn + 1] += p[:drawn + 1] * (1.0 - to_a)
        p = nxt
    return p
