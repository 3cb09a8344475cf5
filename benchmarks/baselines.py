"""Baselines the benchmarks compare against, written after the published algorithms.

The paper's histogram and sampling probabilities are the tests' reference
(``tests/reference.py``, on the path through ``benchmarks/conftest.py``): one copy of the
paper's sampler, checked there against the library and timed here.
"""

import numpy as np
import torch
from reference import paper_edges, paper_example_probabilities, paper_histogram, paper_log10_entropy


def textbook_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The usual one-liner: three N x C temporaries and underflow to 0 past margin ~100."""
    return -(torch.softmax(logits, dim=1) * torch.log_softmax(logits, dim=1)).sum(dim=1)


def paper_p1_loop(entropy: np.ndarray, fraction: float, bin_width: float, rng: np.random.RandomState) -> np.ndarray:
    """The paper's P1 selection as its public code runs it: each example is binned by a
    Python scan over the bins, then ``RandomState.choice(replace=False, p=...)``."""
    log_entropy = np.log10(entropy)
    edges = paper_edges(log_entropy, bin_width)
    members = [[] for _ in range(len(edges) - 1)]
    for index, value in enumerate(log_entropy):
        for b in range(len(edges) - 1):
            if edges[b] <= value < edges[b + 1] or b == len(edges) - 2:
                members[b].append(index)
                break
    counts = np.array([len(m) for m in members])
    bin_weight = (counts.max() - counts + 1) * (counts != 0)
    bin_weight = bin_weight / bin_weight.sum()
    order, probability = [], []
    for m, p in zip(members, bin_weight):
        if m:
            order += m
            probability += [p / len(m)] * len(m)
    probability = np.array(probability)
    k = int(np.floor(fraction * len(entropy)))
    chosen = rng.choice(order, size=k, replace=False, p=probability / probability.sum())
    rng.shuffle(chosen)
    return chosen


def paper_p_sampler(entropy, fraction: float, sampling_type: int, bin_width: float, rng: np.random.Generator):
    """The paper's P1/P2/P3 selection with numpy: its histogram and per-example
    probabilities (from the tests' reference), then ``rng.choice(N, k, replace=False,
    p=...)`` and a shuffle: the speed baseline."""
    log_entropy = paper_log10_entropy(entropy)
    _, bin_ids, counts = paper_histogram(log_entropy, bin_width)
    probabilities = paper_example_probabilities(bin_ids, counts, sampling_type)
    k = int(np.floor(fraction * len(log_entropy)))
    indices = rng.choice(len(log_entropy), size=k, replace=False, p=probabilities)
    rng.shuffle(indices)
    return indices
