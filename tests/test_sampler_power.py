"""The sampler's law through select(), with stated power, on both sampler paths.

Two bins A and B: every example of a bin carries the same weight, so the number X of
bin-A examples in a proxy has an exact law (a dynamic programme over the draws, in
tests/reference.py). The mean of X over T independent proxies is compared with its exact
expectation. T is computed so that a 5% error in bin A's inclusion probability
(E[X] off by 5%) fails with probability >= 0.99, while a correct sampler fails with
probability <= 2 * (1 - Phi(4)) = 6.3e-5.
"""

import math

import numpy as np
import pytest
from scipy import stats

import proxyfast
from proxyfast.scoring import Scores
from reference import successive_sampling_probabilities, two_group_count_distribution

FALSE_ALARM_Z = 4.0
POWER = 0.99
RELATIVE_ERROR = 0.05


def trials_for_power(mean, sd_null, sd_alternative):
    """Smallest T with P(|mean of T draws under the alternative - mean| > z sd_null / sqrt(T))
    >= POWER when the alternative's mean is off by RELATIVE_ERROR * mean (normal approximation)."""
    z_power = stats.norm.ppf(POWER)
    return math.ceil(((FALSE_ALARM_Z * sd_null + z_power * sd_alternative) / (RELATIVE_ERROR * mean)) ** 2)


def two_bin_scores(rng, n_a, n_b):
    values = np.concatenate([rng.uniform(0.05, 0.45, size=n_a), rng.uniform(0.55, 0.95, size=n_b)]).astype(np.float32)
    order = rng.permutation(n_a + n_b)
    return Scores.from_log10_entropy(values[order]), order < n_a


def test_count_law_matches_enumeration():
    """The dynamic programme against the enumeration of every draw sequence."""
    weights = [2.5, 2.5, 2.5, 1.0, 1.0, 1.0, 1.0]
    for k in range(len(weights) + 1):
        _, sets = successive_sampling_probabilities(weights, k)
        enumerated = np.zeros(k + 1)
        for subset, p in sets.items():
            enumerated[sum(1 for i in subset if i < 3)] += p
        assert np.allclose(two_group_count_distribution(3, 2.5, 4, 1.0, k), enumerated, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("method", ["p2", "p3"])
@pytest.mark.parametrize(
    "n_a, n_b, k",
    [
        (1000, 5000, 600),  # N <= 65,536: every positive weight is a candidate
        (10_000, 60_000, 1000),  # N > 65,536: candidates pruned by a sampled clock threshold
    ],
)
def test_bin_inclusion_has_the_exact_mean_with_stated_power(rng, method, n_a, n_b, k):
    weight = {"p2": lambda h: 1.0 / h, "p3": lambda h: 1.0 / h**2}[method]
    law = two_group_count_distribution(n_a, weight(n_a), n_b, weight(n_b), k)
    counts = np.arange(k + 1)
    mean = float(law @ counts)
    sd_null = math.sqrt(float(law @ (counts - mean) ** 2))
    # Inclusion indicators of sampling without replacement are negatively correlated, so
    # the binomial variance bounds the count's; checked here under the null, and used
    # for the alternative, where bin A's inclusion probability is 5% higher.
    inclusion = mean / n_a
    assert sd_null <= math.sqrt(n_a * inclusion * (1 - inclusion))
    alternative = inclusion * (1 + RELATIVE_ERROR)
    trials = trials_for_power(mean, sd_null, math.sqrt(n_a * alternative * (1 - alternative)))
    assert trials <= 60, "the setting is too weak for a fast test"
    scores, in_a = two_bin_scores(rng, n_a, n_b)
    assert proxyfast.histogram(scores.log10_entropy, 0.5)[0].counts.tolist() == [n_a, n_b]
    observed = [
        int(in_a[proxyfast.select(scores, k=k, method=method, seed=int(seed)).indices.numpy()].sum())
        for seed in rng.integers(0, 2**62, size=trials)
    ]
    z = (np.mean(observed) - mean) / (sd_null / math.sqrt(trials))
    assert abs(z) <= FALSE_ALARM_Z, (np.mean(observed), mean, trials)
