"""Weighted sampling without replacement: exact distribution and properties."""

import numpy as np
import pytest
import torch
from scipy import stats

from proxyfast import ops
from reference import successive_sampling_probabilities

TRIALS = 20_000


def chi_square_p_value(observed: dict, expected_probability: dict, trials: int) -> float:
    keys = sorted(expected_probability, key=lambda key: sorted(key) if isinstance(key, frozenset) else key)
    assert set(observed) <= set(keys), "an outcome of probability zero was drawn"
    expected = np.array([expected_probability[key] * trials for key in keys])
    counts = np.array([observed.get(key, 0) for key in keys])
    assert expected.min() >= 5, "too few trials for a chi-square test"
    return stats.chisquare(counts, expected).pvalue


def draw_many(weights, k, trials, first_seed):
    w = torch.tensor(weights, dtype=torch.float64)
    return [tuple(ops.weighted_sample(w, k, seed).tolist()) for seed in range(first_seed, first_seed + trials)]


@pytest.mark.parametrize("weights, k", [([1.0, 2.0, 3.0, 4.0, 5.0, 0.5], 3), ([0.1, 10.0, 1.0, 0.0, 3.0], 2)])
def test_subset_distribution_is_successive_sampling(rng, weights, k):
    """Chi-square of the drawn subsets against their exact inclusion probabilities."""
    sequence_probability, set_probability = successive_sampling_probabilities(weights, k)
    draws = draw_many(weights, k, TRIALS, first_seed=int(rng.integers(0, 2**40)))
    observed_sets: dict = {}
    observed_sequences: dict = {}
    for draw in draws:
        observed_sets[frozenset(draw)] = observed_sets.get(frozenset(draw), 0) + 1
        observed_sequences[draw] = observed_sequences.get(draw, 0) + 1
    # Each test has a 1e-4 chance of a false alarm.
    assert chi_square_p_value(observed_sets, set_probability, TRIALS) > 1e-4
    # The order returned is the draw order, so sequences follow the same law.
    assert chi_square_p_value(observed_sequences, sequence_probability, TRIALS) > 1e-4


def test_inclusion_frequencies(rng):
    """Per-item inclusion frequencies against exact inclusion probabilities (N = 7, k = 4)."""
    weights = [0.2, 0.5, 1.0, 1.0, 2.0, 4.0, 8.0]
    k = 4
    _, set_probability = successive_sampling_probabilities(weights, k)
    inclusion = np.zeros(len(weights))
    for subset, p in set_probability.items():
        inclusion[list(subset)] += p
    assert inclusion.sum() == pytest.approx(k)
    counts = np.zeros(len(weights))
    for draw in draw_many(weights, k, TRIALS, first_seed=int(rng.integers(0, 2**40))):
        counts[list(draw)] += 1
    # Binomial z-scores per item: all within 4.5 standard deviations.
    z = (counts - TRIALS * inclusion) / np.sqrt(TRIALS * inclusion * (1 - inclusion))
    assert np.all(np.abs(z) < 4.5), z


def test_large_n_first_draw_follows_weights(rng):
    """The first draw of N = 20,000 items: bins of items by weight, chi-square."""
    n = 20_000
    weights = torch.from_numpy(rng.pareto(1.5, size=n) + 0.01)
    groups = torch.bucketize(weights, torch.quantile(weights, torch.linspace(0, 1, 11, dtype=torch.float64)[1:-1]))
    share = torch.zeros(10, dtype=torch.float64).index_add_(0, groups, weights) / weights.sum()
    counts = np.zeros(10)
    first_seed = int(rng.integers(0, 2**40))
    for seed in range(first_seed, first_seed + 3000):
        counts[int(groups[ops.weighted_sample(weights, 1, seed)[0]])] += 1
    assert stats.chisquare(counts, share.numpy() * 3000).pvalue > 1e-4


@pytest.mark.parametrize("n, k", [(1, 1), (1, 0), (10, 10), (1000, 1), (4097, 1000), (100_003, 50_000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_properties(rng, n, k, dtype):
    weights = torch.from_numpy(rng.uniform(0.001, 5, size=n)).to(dtype)
    seed = int(rng.integers(0, 2**63 - 1))
    indices = ops.weighted_sample(weights, k, seed)
    assert indices.dtype == torch.int64 and indices.shape == (k,)
    assert len(set(indices.tolist())) == k
    assert k == 0 or (indices.min() >= 0 and indices.max() < n)
    assert torch.equal(indices, ops.weighted_sample(weights, k, seed))
    if k < n and k > 1:
        assert not torch.equal(indices, ops.weighted_sample(weights, k, seed + 1))
        assert not torch.equal(indices, ops.weighted_sample(weights, k, seed, stream=1))


def test_zero_weights_never_drawn(rng):
    weights = torch.from_numpy(rng.uniform(0, 1, size=5000))
    weights[rng.choice(5000, 4000, replace=False)] = 0.0
    positive = set(torch.nonzero(weights).flatten().tolist())
    for seed in range(20):
        assert set(ops.weighted_sample(weights, 600, seed).tolist()) <= positive
    # k equal to the number of positive weights draws exactly those.
    assert set(ops.weighted_sample(weights, len(positive), 0).tolist()) == positive


def test_float32_and_float64_weights_agree(rng):
    weights = torch.from_numpy(rng.integers(1, 100, size=3000).astype(np.float64))
    assert torch.equal(ops.weighted_sample(weights, 700, 5), ops.weighted_sample(weights.float(), 700, 5))


def test_threads_do_not_change_results(rng):
    """One, two and four threads, set explicitly (and restored): the same indices, on the
    small-N and the pruned large-N path."""
    threads = torch.get_num_threads()
    for n, k in [(50_000, 5_000), (300_000, 30_000)]:
        weights = torch.from_numpy(rng.uniform(size=n))
        results = []
        try:
            for count in (1, 2, 4):
                torch.set_num_threads(count)
                assert torch.get_num_threads() == count
                results.append(ops.weighted_sample(weights, k, 11))
        finally:
            torch.set_num_threads(threads)
        assert all(torch.equal(results[0], other) for other in results[1:])


def test_uniform_weights_give_a_permutation(rng):
    order = ops.weighted_sample(torch.ones(1000, dtype=torch.float64), 1000, int(rng.integers(0, 2**40)))
    assert sorted(order.tolist()) == list(range(1000))


def test_beyond_multinomial_cap():
    """torch.multinomial refuses more than 2^24 categories; this op does not."""
    n = 2**24 + 5
    weights = torch.ones(n, dtype=torch.float32)
    weights[-1] = 1e9  # almost surely the first draw
    indices = ops.weighted_sample(weights, 3, 1)
    assert indices[0].item() == n - 1 and len(set(indices.tolist())) == 3


def test_bad_arguments():
    w = torch.ones(5)
    with pytest.raises(ValueError, match=r"k = 6 exceeds the number of positive weights \(5\)"):
        ops.weighted_sample(w, 6, 0)
    with pytest.raises(ValueError, match=r"k = 3 exceeds the number of positive weights \(2\)"):
        ops.weighted_sample(torch.tensor([0.0, 1.0, 0.0, 2.0]), 3, 0)
    with pytest.raises(ValueError, match="k must be at least 0, got -1"):
        ops.weighted_sample(w, -1, 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        ops.weighted_sample(w, 2.0, 0)
    with pytest.raises(ValueError, match="weights must be non-negative"):
        ops.weighted_sample(torch.tensor([1.0, -0.5]), 1, 0)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weights must be finite"):
            ops.weighted_sample(torch.tensor([1.0, bad]), 1, 0)
    with pytest.raises(ValueError, match="weights must be 1-D"):
        ops.weighted_sample(torch.ones(2, 2), 1, 0)
    with pytest.raises(TypeError, match="weights must be float32 or float64"):
        ops.weighted_sample(torch.ones(3, dtype=torch.int64), 1, 0)
    with pytest.raises(ValueError, match="weights is empty"):
        ops.weighted_sample(torch.ones(0), 0, 0)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\^63 - 1\], got -1"):
        ops.weighted_sample(w, 1, -1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        ops.weighted_sample(w, 1, 0.5)
    with pytest.raises(RuntimeError, match="weights must be finite and non-negative; 1 are not"):
        torch.ops.proxyfast.weighted_sample.default(torch.tensor([1.0, -1.0]), 1, 0, 0)


def test_tiny_positive_weights_can_be_drawn():
    """A weight so small that E / w overflows still counts as positive: drawn last."""
    weights = torch.tensor([1e-320, 1.0, 0.0, 1e-310], dtype=torch.float64)
    indices = ops.weighted_sample(weights, 3, 0)
    assert indices.tolist() == [1, 0, 3]  # both tiny clocks cap at the largest double: index order


# weighted_sample_by_bin: the same indices as weighted_sample on the gathered weights.


def by_bin_case(rng, n, n_bins, zero_bins=0):
    bin_ids = rng.integers(0, n_bins, size=n).astype(np.int32)
    bin_weights = rng.uniform(0.0, 3.0, size=n_bins) ** 3  # weights spanning orders of magnitude
    bin_weights[rng.choice(n_bins, size=zero_bins, replace=False)] = 0.0
    return torch.from_numpy(bin_ids), torch.from_numpy(bin_weights)


@pytest.mark.parametrize("n, n_bins, zero_bins", [(1, 1, 0), (2, 3, 1), (17, 2, 1), (4097, 5, 2), (65536, 40, 0),
                                                  (65537, 1, 0), (300_001, 70, 30), (300_001, 3000, 10)])
def test_by_bin_equals_weighted_sample_on_gathered_weights(rng, n, n_bins, zero_bins):
    bin_ids, bin_weights = by_bin_case(rng, n, n_bins, zero_bins)
    gathered = bin_weights.index_select(0, bin_ids.long())
    positive = int((gathered > 0).sum())
    for k in sorted({0, 1, positive // 10, positive // 2, positive} & set(range(positive + 1))):
        seed, stream = int(rng.integers(2**63)), int(rng.integers(2))
        got = ops.weighted_sample_by_bin(bin_ids, bin_weights, k, seed, stream)
        assert torch.equal(got, ops.weighted_sample(gathered, k, seed, stream)), (k, seed, stream)
        counts = torch.bincount(bin_ids, minlength=n_bins)
        assert torch.equal(ops.weighted_sample_by_bin(bin_ids, bin_weights, k, seed, stream, bin_counts=counts), got)


def test_by_bin_views_and_ties(rng):
    # Non-contiguous ids, every item in one bin (all weights tied), and a bin table with unused bins.
    ids = torch.zeros(20_000, dtype=torch.int32)[::2]
    weights = torch.tensor([2.5, 0.0, 7.0], dtype=torch.float64)
    got = ops.weighted_sample_by_bin(ids, weights, 10_000, 5)
    assert torch.equal(got, ops.weighted_sample(torch.full((10_000,), 2.5, dtype=torch.float64), 10_000, 5))
    assert torch.equal(got.sort().values, torch.arange(10_000))


def test_by_bin_bad_arguments():
    ids, weights = torch.tensor([0, 1, 1], dtype=torch.int32), torch.tensor([1.0, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"k = 2 exceeds the number of positive weights \(1\)"):
        ops.weighted_sample_by_bin(ids, weights, 2)
    with pytest.raises(ValueError, match=r"k = 2 exceeds the number of positive weights \(1\)"):
        ops.weighted_sample_by_bin(ids, weights, 2, bin_counts=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="bin_counts must have the shape of bin_weights"):
        ops.weighted_sample_by_bin(ids, weights, 1, bin_counts=torch.tensor([3]))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bin_weights must be"):
            ops.weighted_sample_by_bin(ids, torch.tensor([1.0, bad], dtype=torch.float64), 1)
    for bad_id in (-1, 2):
        with pytest.raises(ValueError, match=r"bin_ids must lie in \[0, 2\)"):
            ops.weighted_sample_by_bin(torch.tensor([0, bad_id], dtype=torch.int32), weights, 1)
    with pytest.raises(RuntimeError, match=r"bin_ids must lie in \[0, 2\)"):  # the op checks too
        torch.ops.proxyfast.weighted_sample_by_bin.default(torch.tensor([0, 5], dtype=torch.int32), weights, 1, 0, 0)
    with pytest.raises(TypeError, match="bin_ids must be a 1-D int32 tensor"):
        ops.weighted_sample_by_bin(ids.long(), weights, 1)
    with pytest.raises(TypeError, match="bin_weights must be a 1-D float64 tensor"):
        ops.weighted_sample_by_bin(ids, weights.float(), 1)
    with pytest.raises(ValueError, match="bin_ids is empty"):
        ops.weighted_sample_by_bin(torch.zeros(0, dtype=torch.int32), weights, 0)
    with pytest.raises(ValueError, match="k must be at least 0, got -1"):
        ops.weighted_sample_by_bin(ids, weights, -1)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\^63 - 1\], got -1"):
        ops.weighted_sample_by_bin(ids, weights, 1, seed=-1)
    with pytest.raises(ValueError, match=f"stream must be at most {2**32 - 1}, got {2**32}"):
        ops.weighted_sample_by_bin(ids, weights, 1, stream=2**32)


# The op against a plain reference: every clock computed in numpy (Philox4x32-10, the
# uniform from 52 bits, det_log's series, one division), the k smallest taken by a full
# stable sort. The op prunes, pre-filters with a bound and bucket-sorts; none of that may
# change an index.


def philox_uniforms(n: int, seed: int, stream: int) -> np.ndarray:
    mask = np.uint64(0xFFFFFFFF)
    pairs = np.arange((n + 1) // 2, dtype=np.uint64)
    c0, c1 = pairs & mask, pairs >> np.uint64(32)
    c2 = np.full_like(pairs, stream)
    c3 = np.zeros_like(pairs)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & mask, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & mask)
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
    words = np.stack([(c0 << np.uint64(32)) | c1, (c2 << np.uint64(32)) | c3], axis=1).reshape(-1)[:n]
    one_plus = ((words >> np.uint64(12)) | np.uint64(0x3FF0000000000000)).view(np.float64)
    return one_plus + -(1.0 - 2.0**-53)


def series_log(x: np.ndarray) -> np.ndarray:
    bits = x.view(np.uint64)
    mantissa = ((bits & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x3FF0000000000000)).view(np.float64)
    halve = mantissa > 1.4142135623730951
    m = np.where(halve, mantissa * 0.5, mantissa)
    exponent = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64) - 1023 + halve
    s = (m + -1.0) / (m + 1.0)
    z = s * s
    series = np.full_like(s, 1.0 / 25.0)
    for odd in range(23, 1, -2):
        series = series * z + 1.0 / odd
    log_m = (series * z) * (2.0 * s) + 2.0 * s
    e = exponent.astype(np.float64)
    return e * 6.93147180369123816490e-01 + (log_m + e * 1.90821492927058770002e-10)


def reference_sample(weights: np.ndarray, k: int, seed: int, stream: int) -> np.ndarray:
    weights = weights.astype(np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        clocks = np.minimum(-series_log(philox_uniforms(len(weights), seed, stream)) / weights, np.finfo(np.float64).max)
    clocks[weights == 0] = np.inf
    return np.argsort(clocks, kind="stable")[:k]


def test_reference_reproduces_known_draws():
    """The reference and the op against a draw pinned from the op before its pre-filter and
    bucket sort existed: indices for a seed never change."""
    known = [19, 3, 14, 17, 7, 6, 16, 18]
    weights = np.arange(1.0, 21.0)
    assert reference_sample(weights, 8, 12345, 0).tolist() == known
    assert ops.weighted_sample(torch.from_numpy(weights), 8, 12345).tolist() == known
    assert reference_sample(np.array([1e-320, 1.0, 1e300, 0.0]), 3, 3, 0).tolist() == [2, 1, 0]


@pytest.mark.parametrize("n", [1, 2, 3, 1023, 1025, 65_535, 65_536, 65_537, 4 * 16_384 + 1, 200_003])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_reference(rng, n, dtype):
    weights = rng.pareto(1.0, size=n) + 1e-3
    weights[rng.random(n) < 0.2] = 0.0
    weights[0] = 1.0
    weights = torch.from_numpy(weights).to(dtype)
    positive = int((weights > 0).sum())
    for k in sorted({0, 1, positive // 10, positive // 2, positive}):
        seed, stream = int(rng.integers(2**63)), int(rng.integers(2))
        got = ops.weighted_sample(weights, k, seed, stream).numpy()
        np.testing.assert_array_equal(got, reference_sample(weights.numpy(), k, seed, stream), err_msg=f"k={k}")


@pytest.mark.parametrize("case", ["equal", "powers_of_two", "extremes", "subnormal", "few_subnormal",
                                  "some_subnormal", "few_huge"])
def test_equals_reference_on_ties_and_extremes(rng, case):
    """Tied clocks (index order decides: a few or some capped to the largest double share a
    small or a middle-sized bucket, all of them one large one), weights over 600 orders of magnitude, the threshold
    itself at the cap, one bucket holding most candidates."""
    n = 150_001
    weights = {
        "equal": np.full(n, 0.5),
        "powers_of_two": 2.0 ** rng.integers(-60, 60, size=n),
        "extremes": np.where(rng.random(n) < 0.5, 1e300, 1e-300),
        "subnormal": np.full(n, 5e-324),
        "few_subnormal": np.where(np.arange(n) % 7919 == 0, 5e-324, 1.0),
        "some_subnormal": np.where(np.arange(n) % 997 == 0, 5e-324, 1.0),
        "few_huge": np.where(np.arange(n) % 97 == 0, 1e12, 1.0),
    }[case]
    for k in (1, n // 10, n // 2, n):
        seed = int(rng.integers(2**63))
        got = ops.weighted_sample(torch.from_numpy(weights), k, seed, 1).numpy()
        np.testing.assert_array_equal(got, reference_sample(weights, k, seed, 1), err_msg=f"k={k}")


def test_equals_reference_at_imagenet_size(rng):
    n, k = 1_281_167, 128_116
    weights = rng.uniform(0.0, 4.0, size=n) ** 2
    seed = int(rng.integers(2**63))
    np.testing.assert_array_equal(ops.weighted_sample(torch.from_numpy(weights), k, seed).numpy(),
                                  reference_sample(weights, k, seed, 0))
    bin_ids = rng.integers(0, 30, size=n).astype(np.int32)
    bin_weights = rng.uniform(0.0, 2.0, size=30)
    got = ops.weighted_sample_by_bin(torch.from_numpy(bin_ids), torch.from_numpy(bin_weights), k, seed, 1)
    np.testing.assert_array_equal(got.numpy(), reference_sample(bin_weights[bin_ids], k, seed, 1))
