"""The registry of selection methods and the context they read (selection/registry.py)."""

import re

import numpy as np
import pytest
import torch

from proxyfast import ops
from proxyfast.scoring import Scores
from proxyfast.selection import METHODS, SelectionContext, available_methods, check_method, register_method
from proxyfast.selection.binning import histogram


def test_a_name_registers_once_and_the_decorator_returns_the_method():
    def method(ctx):
        return ctx.sample(torch.ones(ctx.n, dtype=torch.float64))

    assert "registry_test_method" not in METHODS
    try:
        assert register_method("registry_test_method")(method) is method
        assert METHODS["registry_test_method"] is method
        assert "registry_test_method" in available_methods()
        assert check_method("registry_test_method") == "registry_test_method"
        original = METHODS["p1"]
        with pytest.raises(ValueError, match=r"^a selection method named 'p1' is already registered$"):
            register_method("p1")(method)
        assert METHODS["p1"] is original
    finally:
        METHODS.pop("registry_test_method", None)


def test_an_unknown_method_is_refused_listing_every_method_sorted():
    listed = ", ".join(sorted(METHODS))
    assert available_methods() == sorted(METHODS)
    for value, shown in (("p9", "'p9'"), (3, "3"), (None, "None")):
        with pytest.raises(ValueError, match="^" + re.escape(f"unknown method {shown}; available methods: {listed}") + "$"):
            check_method(value)


@pytest.fixture
def context(rng):
    values = rng.normal(-2.0, 0.8, size=500)
    return SelectionContext(scores=Scores.from_log10_entropy(values), k=37, seed=int(rng.integers(2**31)),
                            bin_width=0.25, beta=0.5)


def test_the_context_bins_the_scores_once_with_its_bin_width(context):
    assert context.n == 500
    assert context.device == torch.device("cpu")
    assert context.log10_entropy is context.scores.log10_entropy
    expected_histogram, expected_ids = histogram(context.scores.log10_entropy, 0.25)
    assert context.histogram.bin_width == 0.25
    np.testing.assert_array_equal(context.histogram.edges, expected_histogram.edges)
    np.testing.assert_array_equal(context.histogram.counts, expected_histogram.counts)
    assert torch.equal(context.bin_ids, expected_ids)
    assert context.bin_counts.dtype == torch.int64
    assert context.bin_counts.tolist() == expected_histogram.counts.tolist()
    # Computed once: the same objects on every read.
    assert context.histogram is context.histogram and context.bin_ids is context.bin_ids
    assert context.bin_counts is context.bin_counts


def test_the_context_samples_with_its_k_and_seed_on_stream_0(context, rng):
    weights = torch.from_numpy(rng.random(500))
    drawn = context.sample(weights)
    assert torch.equal(drawn, ops.weighted_sample(weights, 37, context.seed, stream=0))
    assert not torch.equal(drawn, ops.weighted_sample(weights, 37, context.seed, stream=1))
    bin_weights = torch.from_numpy(rng.random(context.histogram.n_bins) + 0.1)
    by_bin = context.sample_by_bin(bin_weights)
    assert torch.equal(by_bin, context.sample(bin_weights[context.bin_ids.long()]))
    assert len(by_bin) == 37 and len(set(by_bin.tolist())) == 37
