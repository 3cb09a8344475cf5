"""proxyfast.select: every method's properties, exact rankings, P1-P3 statistics, errors."""

import math

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast import ops
from proxyfast.binning import histogram
from proxyfast.scoring import Scores
from proxyfast.selection import METHODS, available_methods, register_method
from reference import float32_crossing_entropy, histogram_reference, paper_log10_entropy

BUILTIN_METHODS = ["p1", "p2", "p3", "deterministic", "random", "entropy_top", "entropy_bottom"]
SAMPLED_METHODS = ["p1", "p2", "p3", "random"]
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def random_scores(rng, n):
    return Scores.from_log10_entropy(rng.uniform(-12, 0.5, size=n))


def tied_scores(rng, n):
    """Few distinct values, so rankings must break many ties."""
    return Scores.from_log10_entropy(rng.integers(-6, 1, size=n).astype(np.float64) / 2)


def sizes(n):
    return sorted({0, 1, n // 3, n})


def test_registry_lists_the_builtin_methods():
    assert set(BUILTIN_METHODS) <= set(available_methods())
    assert available_methods() == sorted(METHODS)


@pytest.mark.parametrize("method", BUILTIN_METHODS)
@pytest.mark.parametrize("n", [1, 7, 1000, 4097])
def test_exactly_k_distinct_indices_in_range_reproducibly(rng, method, n):
    scores = random_scores(rng, n)
    seed = int(rng.integers(0, 2**63 - 1))
    for k in sizes(n):
        proxy = proxyfast.select(scores, k=k, method=method, seed=seed)
        indices = proxy.indices
        assert indices.dtype == torch.int64 and indices.shape == (k,)
        assert len(proxy) == proxy.k == k and proxy.n == n
        assert len(set(indices.tolist())) == k
        assert k == 0 or 0 <= int(indices.min()) and int(indices.max()) < n
        again = proxyfast.select(scores, k=k, method=method, seed=seed)
        assert torch.equal(again.indices, indices)


@pytest.mark.parametrize("method", SAMPLED_METHODS)
def test_different_seeds_give_different_proxies(rng, method):
    scores = random_scores(rng, 1000)
    first = set(proxyfast.select(scores, k=100, method=method, seed=1).indices.tolist())
    second = set(proxyfast.select(scores, k=100, method=method, seed=2).indices.tolist())
    assert first != second


def lexicographic(values, descending):
    """Indices ordered by value (descending or ascending), ties by lower index."""
    keys = -values if descending else values
    return np.lexsort((np.arange(len(values)), keys))


@pytest.mark.parametrize("make_scores", [random_scores, tied_scores])
@pytest.mark.parametrize("n", [1, 7, 1000, 4097])
def test_rankings_select_exactly_the_right_sets(rng, make_scores, n):
    scores = make_scores(rng, n)
    values = scores.log10_entropy.numpy()
    for k in sizes(n):
        top = proxyfast.select(scores, k=k, method="entropy_top").indices.numpy()
        bottom = proxyfast.select(scores, k=k, method="entropy_bottom").indices.numpy()
        assert set(top) == set(np.argsort(-values, kind="stable")[:k])
        assert set(bottom) == set(np.argsort(values, kind="stable")[:k])
        for beta in (0.0, 0.5, 0.9, 1.0):
            n_low = math.floor(beta * k)
            low = set(lexicographic(values, descending=False)[:n_low])
            rest = [i for i in lexicographic(values, descending=True) if i not in low]
            expected = low | set(rest[: k - n_low])
            chosen = proxyfast.select(scores, k=k, method="deterministic", beta=beta).indices.numpy()
            assert set(chosen) == expected and len(chosen) == k


def test_deterministic_with_beta_extremes_matches_top_and_bottom(rng):
    scores = tied_scores(rng, 500)
    for beta, other in ((0.0, "entropy_top"), (1.0, "entropy_bottom")):
        ours = proxyfast.select(scores, k=123, method="deterministic", beta=beta, seed=3)
        assert torch.equal(ours.indices, proxyfast.select(scores, k=123, method=other, seed=3).indices)


def test_indices_are_put_in_a_seeded_random_order(rng):
    scores = random_scores(rng, 2000)
    proxy = proxyfast.select(scores, k=500, method="entropy_bottom", seed=11)
    ranked = torch.sort(scores.log10_entropy, stable=True).indices[:500]
    permutation = ops.weighted_sample(torch.ones(500, dtype=torch.float64), 500, 11, stream=1)
    assert torch.equal(proxy.indices, ranked[permutation])
    assert not torch.equal(proxy.indices, ranked)


def skewed_scores(rng, counts, bin_width=0.5):
    """log10 entropies with exactly counts[b] examples inside bin b of width bin_width."""
    offsets = [b * bin_width + rng.uniform(0.1, 0.9, size=c) * bin_width for b, c in enumerate(counts)]
    return Scores.from_log10_entropy(rng.permutation(np.concatenate(offsets)))


def expected_inclusions(weights, k):
    """Inclusion probabilities of successive sampling: 1 - exp(-w * t) with t such that
    they sum to k (the exponential-race approximation, accurate for large N)."""
    low, high = 0.0, 1.0
    while np.sum(-np.expm1(-weights * high)) < k:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if np.sum(-np.expm1(-weights * mid)) < k else (low, mid)
    return -np.expm1(-weights * low)


@pytest.mark.parametrize("method", ["p1", "p2", "p3"])
def test_selected_per_bin_follows_the_method_weights(rng, method):
    """A coarse check of the bin shares on five bins: it catches gross errors only (a 5%
    error in one bin's inclusion is about 1.3 standard errors of signal here). The exact
    weights are checked in test_selection_exact.py, the sampler's law with stated power
    in test_sampler_power.py."""
    counts = np.array([30, 100, 300, 1000, 3000])
    bin_weight = {"p1": counts.max() - counts + 1.0, "p2": np.ones(5), "p3": 1.0 / counts}[method]
    scores = skewed_scores(rng, counts)
    k, trials = 400, 20
    hist, bins = histogram(scores.log10_entropy, 0.5)
    assert hist.counts.tolist() == counts.tolist()
    bins = bins.numpy()
    weights = (bin_weight / counts)[bins]
    assert (weights > 0).all()
    inclusion = expected_inclusions(weights, k)
    expected = np.bincount(bins, weights=inclusion, minlength=5)
    variance = np.bincount(bins, weights=inclusion * (1 - inclusion), minlength=5)
    observed = np.zeros(5)
    for seed in range(trials):
        proxy = proxyfast.select(scores, k=k, method=method, seed=int(rng.integers(2**62)), bin_width=0.5)
        assert proxy.selected_per_bin.sum() == k
        observed += proxy.selected_per_bin / trials
    tolerance = 5 * np.sqrt(variance / trials) + 1.0
    assert np.all(np.abs(observed - expected) <= tolerance), (observed, expected, tolerance)
    # Relative to the data, rare entropies are over-represented and the largest bin under
    # (the rarest bins may be taken whole, so the ratio need only not increase).
    representation = (observed / k) / (counts / counts.sum())
    assert representation[0] > 1 > representation[-1]
    assert np.all(np.diff(representation) <= 0)


def test_proxyset_carries_the_histogram_and_the_selected_per_bin(rng):
    scores = random_scores(rng, 3000)
    for method in BUILTIN_METHODS:
        proxy = proxyfast.select(scores, fraction=0.25, method=method, bin_width=0.75, seed=5)
        hist, bins = histogram(scores.log10_entropy, 0.75)
        np.testing.assert_array_equal(proxy.histogram.edges, hist.edges)
        np.testing.assert_array_equal(proxy.histogram.counts, hist.counts)
        np.testing.assert_array_equal(proxy.selected_per_bin, np.bincount(bins[proxy.indices], minlength=hist.n_bins))
        assert proxy.k == 750 and proxy.method == method
        expected = {"seed": 5, "bin_width": 0.75, "fraction": 0.25}
        if method == "deterministic":
            expected["beta"] = 0.9
        assert proxy.params == expected


def test_fraction_and_round_to_give_k(rng):
    scores = random_scores(rng, 5000)
    assert proxyfast.select(scores, fraction=0.37).k == 1850
    assert proxyfast.select(scores, fraction=0.37, round_to=1000).k == 1000
    assert proxyfast.select(scores, k=999, round_to=1000).k == 0
    assert proxyfast.select(scores, fraction=1.0).k == 5000
    assert proxyfast.select(scores, fraction=1e-9).k == 0
    assert proxyfast.select(scores, k=np.int64(7)).k == 7


def test_every_input_form_gives_the_same_proxy(rng):
    logits = torch.from_numpy(rng.normal(0, 4, size=(600, 10)).astype(np.float32))
    from_logits = proxyfast.select(logits, k=60, seed=9)
    assert torch.equal(from_logits.indices, proxyfast.select(Scores.from_logits(logits), k=60, seed=9).indices)
    entropies = 10.0 ** rng.uniform(-8, 0, size=600)
    reference = proxyfast.select(entropies, k=60, seed=9).indices
    for form in (entropies.tolist(), torch.from_numpy(entropies), Scores.from_entropy(entropies)):
        assert torch.equal(proxyfast.select(form, k=60, seed=9, device="cpu").indices, reference)


def test_custom_methods_register_and_cannot_shadow(rng):
    with pytest.raises(ValueError, match="'p1' is already registered"):
        register_method("p1")(lambda ctx: None)

    @register_method("every_other")
    def every_other(ctx):
        weights = torch.zeros(ctx.n, dtype=torch.float64)
        weights[::2] = 1.0
        return ctx.sample(weights)

    try:
        assert proxyfast.select(random_scores(rng, 10), k=5, method="every_other").indices.remainder(2).eq(0).all()
        with pytest.raises(ValueError, match=r"k = 6 exceeds the number of positive weights \(5\)"):
            proxyfast.select(random_scores(rng, 10), k=6, method="every_other")
    finally:
        del METHODS["every_other"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"k": 11}, ValueError, r"k = 11 exceeds the number of examples \(10\)"),
        ({"k": -1}, ValueError, "k must be at least 0, got -1"),
        ({"k": 2.5}, TypeError, "k must be an integer"),
        ({"k": True}, TypeError, "k must be an integer"),
        ({}, ValueError, "exactly one of k and fraction"),
        ({"k": 3, "fraction": 0.5}, ValueError, "exactly one of k and fraction"),
        ({"fraction": 0.0}, ValueError, r"fraction must be in \(0, 1\], got 0.0"),
        ({"fraction": 1.5}, ValueError, r"fraction must be in \(0, 1\], got 1.5"),
        ({"fraction": float("nan")}, ValueError, r"fraction must be in \(0, 1\], got nan"),
        ({"fraction": -0.1}, ValueError, r"fraction must be in \(0, 1\]"),
        ({"fraction": "0.1"}, TypeError, "fraction must be a number"),
        ({"k": 3, "method": "p4"}, ValueError, "unknown method 'p4'; available methods: deterministic, "),
        ({"k": 3, "method": "deterministic", "beta": 1.5}, ValueError, r"beta must be in \[0, 1\], got 1.5"),
        ({"k": 3, "beta": -0.1}, ValueError, r"beta must be in \[0, 1\]"),
        ({"k": 3, "beta": float("nan")}, ValueError, r"beta must be in \[0, 1\], got nan"),
        ({"k": 3, "bin_width": 0}, ValueError, "bin_width must be a positive finite number"),
        ({"k": 3, "bin_width": float("inf")}, ValueError, "bin_width must be a positive finite number"),
        ({"k": 3, "seed": -1}, ValueError, r"seed must be an integer in \[0, 2\^63 - 1\], got -1"),
        ({"k": 3, "round_to": 0}, ValueError, "round_to must be at least 1, got 0"),
        ({"k": 3, "device": "nonsense"}, ValueError, "device 'nonsense' is not a valid device"),
    ],
)
def test_argument_errors_name_the_argument(rng, kwargs, error, match):
    with pytest.raises(error, match=match):
        proxyfast.select(random_scores(rng, 10), **kwargs)


def test_unknown_method_lists_every_available_method(rng):
    with pytest.raises(ValueError) as info:
        proxyfast.select(random_scores(rng, 10), k=1, method="kcentre")
    assert all(name in str(info.value) for name in BUILTIN_METHODS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the error without a CUDA device")
def test_unavailable_device_is_an_error(rng):
    with pytest.raises(ValueError, match="device 'cuda' is not available"):
        proxyfast.select(random_scores(rng, 10), k=3, device="cuda")


@pytest.mark.parametrize(
    "scores, error, match",
    [
        ([], ValueError, "entropy is empty"),
        (torch.empty(0, 10), ValueError, "logits is empty"),
        (torch.ones(3, 4, 5), ValueError, "scores must be 1-D entropies or 2-D logits"),
        (torch.tensor(1.0), ValueError, "scores must be 1-D entropies or 2-D logits"),
        (torch.zeros(5, 3, dtype=torch.float64), TypeError, "logits must be float32, float16 or bfloat16"),
        (torch.zeros(5, 3, dtype=torch.int64), TypeError, "logits must be float32, float16 or bfloat16"),
        (torch.tensor([1.0, 2.0j]), TypeError, "entropy must hold real numbers"),
        (torch.tensor([[0.0, 1.0], [float("inf"), 0.0]]), ValueError, "logits has non-finite values"),
        (torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), ValueError, "logits has non-finite values"),
        ([0.5, -1.0], ValueError, r"entropy\[1\]"),
    ],
)
def test_input_errors_name_the_input(scores, error, match):
    with pytest.raises(error, match=match):
        proxyfast.select(scores, k=1)


@requires_cuda
@pytest.mark.parametrize("method", BUILTIN_METHODS)
def test_cuda_selects_the_same_proxy_as_the_cpu(rng, method):
    scores = random_scores(rng, 100_003)
    cpu = proxyfast.select(scores, fraction=0.1, method=method, seed=4, bin_width=0.25)
    gpu = proxyfast.select(scores, fraction=0.1, method=method, seed=4, bin_width=0.25, device="cuda")
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.indices.cpu(), cpu.indices)
    np.testing.assert_array_equal(gpu.selected_per_bin, cpu.selected_per_bin)
    assert gpu.fingerprint == cpu.fingerprint


def reference_select(entropy: np.ndarray, k: int, method: str, seed: int, bin_width: float) -> torch.Tensor:
    """P1/P2/P3 the plain way: the paper's float64 log10 and the one-value-at-a-time
    histogram, N per-example weights, ops.weighted_sample, then its shuffle."""
    _, ids, counts = histogram_reference(paper_log10_entropy(entropy), bin_width)
    h = counts.astype(np.float64)
    bin_weight = {"p1": (h.max() - h + 1.0) / np.maximum(h, 1), "p2": 1.0 / np.maximum(h, 1),
                  "p3": 1.0 / np.maximum(h, 1) ** 2}[method]
    chosen = ops.weighted_sample(torch.from_numpy(bin_weight[ids]), k, seed, stream=0)
    if k < 2:
        return chosen
    return chosen[ops.weighted_sample(torch.ones(k, dtype=torch.float64), k, seed, stream=1)]


@pytest.mark.parametrize("method", ["p1", "p2", "p3"])
@pytest.mark.parametrize("n", [1, 2, 3, 17, 4097, 65_537, 200_003])
def test_bin_weighted_methods_equal_the_plain_reference(rng, method, n):
    entropy = 10.0 ** rng.uniform(-9, 0.5, size=n)
    if n > 3:
        entropy[: n // 4] = entropy[n // 4]  # a block of ties
        entropy[n // 4: n // 3] = 10.0 ** (np.round(np.log10(entropy[n // 4: n // 3]) * 4) / 4)  # near edges
        entropy[n // 3] = float32_crossing_entropy(-3.0)  # binned one bin up in float32
    bin_width = float(rng.choice([0.25, 0.5, 0.2]))
    for k in sorted({0, 1, n // 10, n - 1, n} & set(range(n + 1))):
        seed = int(rng.integers(2**63))
        got = proxyfast.select(entropy, k=k, method=method, seed=seed, bin_width=bin_width).indices
        assert torch.equal(got, reference_select(entropy, k, method, seed, bin_width)), (k, seed, bin_width)


@pytest.mark.parametrize("bad, match", [(np.nan, r"entropy\[2\]"), (np.inf, r"entropy\[2\]"), (0.0, r"entropy\[2\]"),
                                        (-1e-3, r"entropy\[2\]")])
def test_float64_array_errors_name_the_entry(bad, match):
    entropy = np.array([0.5, 0.1, bad, 0.2])
    with pytest.raises(ValueError, match=match):
        proxyfast.select(entropy, k=1)
    with pytest.raises(ValueError, match="k = 5 exceeds the number of examples"):
        proxyfast.select(np.array([0.5, 0.1, 0.3, 0.2]), k=5)
