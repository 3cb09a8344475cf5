"""Every selection rule against a reference that computes as the paper's sampler does:
the per-example weights handed to the sampler compared exactly (float64, to rounding),
and the chosen indices compared exactly where the rule is deterministic."""

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast.scoring import Scores
from proxyfast.selection import SelectionContext
from reference import paper_example_probabilities, paper_histogram, ranking_reference

# Bin-count patterns with bins above and below the mean count, empty bins inside the
# range, single-example bins and one dominant bin.
COUNT_PATTERNS = [
    [30, 100, 300, 1000, 3000],
    [1, 500, 0, 7, 2, 0, 90, 1],
    [400, 400, 3, 400, 1],
    [5],
]


def scores_with_counts(rng, counts, bin_width=0.5, low=-3.0):
    """float32-exact log10 entropies with counts[b] examples well inside bin b (no value
    within 1% of a bin width of an edge), in a random order."""
    values = [low + (b + rng.uniform(0.05, 0.95, size=c)) * bin_width for b, c in enumerate(counts)]
    values = np.concatenate(values).astype(np.float32)
    return rng.permutation(values)


@pytest.fixture
def sampled_weights(monkeypatch):
    """The weights every selection method hands to the sampler, recorded on the way in
    (the real sampler still draws)."""
    recorded = []
    sample, sample_by_bin = SelectionContext.sample, SelectionContext.sample_by_bin

    def recording_sample(ctx, weights):
        recorded.append(weights.detach().to("cpu", torch.float64).numpy().copy())
        return sample(ctx, weights)

    def recording_sample_by_bin(ctx, bin_weights):
        per_example = bin_weights.index_select(0, ctx.bin_ids.to(torch.int64))
        recorded.append(per_example.detach().to("cpu", torch.float64).numpy().copy())
        return sample_by_bin(ctx, bin_weights)

    monkeypatch.setattr(SelectionContext, "sample", recording_sample)
    monkeypatch.setattr(SelectionContext, "sample_by_bin", recording_sample_by_bin)
    return recorded


def test_binning_agrees_with_the_paper(rng):
    for counts in COUNT_PATTERNS + [list(rng.integers(0, 50, size=12)) + [3]]:
        for bin_width in (0.5, 0.25, 0.2):
            values = scores_with_counts(rng, counts, bin_width, low=float(rng.integers(-8, 1)))
            hist, bins = proxyfast.histogram(torch.from_numpy(values), bin_width)
            edges, paper_bins, paper_counts = paper_histogram(values, bin_width)
            # The paper's np.arange may add one empty bin past the top edge.
            assert hist.counts.tolist() == paper_counts[: hist.n_bins].tolist()
            assert paper_counts[hist.n_bins:].sum() == 0
            assert np.array_equal(bins.numpy(), paper_bins)
            assert np.allclose(hist.edges, edges[: hist.n_bins + 1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("method, sampling_type", [("p1", 1), ("p2", 2), ("p3", 3)])
@pytest.mark.parametrize("pattern", range(len(COUNT_PATTERNS) + 1))
def test_example_weights_equal_the_papers(rng, sampled_weights, method, sampling_type, pattern):
    counts = COUNT_PATTERNS[pattern] if pattern < len(COUNT_PATTERNS) else list(rng.integers(0, 300, size=9)) + [1]
    values = scores_with_counts(rng, counts)
    n = len(values)
    k = max(1, n // 10)
    proxy = proxyfast.select(Scores.from_log10_entropy(values), k=k, method=method, seed=int(rng.integers(2**40)))
    _, bins, paper_counts = paper_histogram(values, 0.5)
    want = paper_example_probabilities(bins, paper_counts, sampling_type)
    (weights,) = sampled_weights
    assert weights.shape == (n,)
    assert np.allclose(weights / weights.sum(), want, rtol=1e-12, atol=0), method
    # Every chosen example has a positive probability, and the bins are reported right.
    assert (want[proxy.indices.numpy()] > 0).all()
    assert proxy.selected_per_bin.tolist() == np.bincount(bins[proxy.indices.numpy()], minlength=len(paper_counts))[
        : len(proxy.selected_per_bin)].tolist()


def test_random_weighs_every_example_alike(rng, sampled_weights):
    values = scores_with_counts(rng, COUNT_PATTERNS[0])
    proxyfast.select(Scores.from_log10_entropy(values), k=100, method="random", seed=3)
    (weights,) = sampled_weights
    assert weights.shape == values.shape and np.all(weights == weights[0]) and weights[0] > 0


@pytest.mark.parametrize(
    "method, beta",
    [("entropy_top", 0.9), ("entropy_bottom", 0.9)] + [("deterministic", b) for b in (0.0, 0.37, 0.9, 1.0)],
)
def test_rankings_choose_exactly_the_reference_set(rng, method, beta):
    # Few distinct values: many ties, which go to the lower index.
    values = np.round(rng.normal(-2, 1, size=700), 1).astype(np.float32)
    for k in (0, 1, 137, 700):
        proxy = proxyfast.select(Scores.from_log10_entropy(values), k=k, method=method, beta=beta, seed=1)
        assert set(proxy.indices.tolist()) == ranking_reference(values, k, method, beta), (method, beta, k)


def test_forgetting_ranks_by_count_then_a_seeded_order(rng):
    counts = rng.integers(0, 4, size=300).astype(np.float32)
    counts[rng.choice(300, size=20, replace=False)] = np.inf
    scores = Scores.from_entropy(rng.uniform(0.01, 1.0, size=300)).replace(forgetting_counts=torch.from_numpy(counts))
    for seed in (0, 7, int(rng.integers(2**40))):
        for k in (20, 75, 300):
            got = proxyfast.select(scores, k=k, method="forgetting", seed=seed).indices
            # Documented tie rule: equal counts in the order of the seeded permutation
            # weighted_sample(ones, N, seed), never-learned (inf) first.
            permutation = proxyfast.weighted_sample(torch.ones(300, dtype=torch.float64), 300, seed).tolist()
            position = {index: p for p, index in enumerate(permutation)}
            ranked = sorted(range(300), key=lambda i: (-counts[i], position[i]))
            assert set(got.tolist()) == set(ranked[:k]), (seed, k)


def brute_force_kcenter(features: np.ndarray, k: int, first: int) -> list[int]:
    """Greedy k-center over the full float64 distance matrix, ties to the lower index."""
    x = features.astype(np.float64)
    distances = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    chosen = [first]
    nearest = distances[first].copy()
    while len(chosen) < k:
        nearest[chosen] = -1.0
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, distances[chosen[-1]])
    return chosen


@pytest.mark.parametrize("coordinates", [5, 1000])
def test_kcenter_selects_the_brute_force_greedy_set(rng, coordinates):
    # Integer coordinates: squared distances are exact in float32, so float32 and float64
    # order them alike; a small range gives many ties.
    n, k, seed = 250, 40, int(rng.integers(2**40))
    features = rng.integers(0, coordinates, size=(n, 3)).astype(np.float32)
    scores = Scores.from_entropy(rng.uniform(0.01, 1.0, size=n)).replace(features=torch.from_numpy(features))
    got = proxyfast.select(scores, k=k, method="kcenter", seed=seed).indices
    first = int(proxyfast.weighted_sample(torch.ones(n, dtype=torch.float64), 1, seed)[0])
    assert set(got.tolist()) == set(brute_force_kcenter(features, k, first))
