"""The log-entropy histogram: edge rule, bin rule, the op against the reference."""

import numpy as np
import pytest
import torch

from proxyfast import ops
from proxyfast.binning import histogram, histogram_edges
from reference import histogram_reference


@pytest.mark.parametrize("n", [1, 2, 17, 1000, 65537])
@pytest.mark.parametrize("bin_width", [0.5, 0.25, 0.2, 0.3, 1.0])
def test_matches_reference(rng, n, bin_width):
    values = (rng.normal(size=n) * rng.uniform(0.1, 6) + rng.uniform(-20, 1)).astype(np.float32)
    if n > 1000:
        values[:500] = np.round(values[:500] / bin_width) * bin_width  # many values on edges
    hist, ids = histogram(torch.from_numpy(values), bin_width)
    edges, ref_ids, ref_counts = histogram_reference(values, bin_width)
    np.testing.assert_array_equal(hist.edges, edges)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_array_equal(hist.counts, ref_counts)


def test_large_input_bins_agree_with_edges(rng):
    values = (rng.normal(size=200_003) * 4 - 6).astype(np.float32)
    values[::7] = np.round(values[::7] * 4) / 4  # exactly on quarter edges
    hist, ids = histogram(torch.from_numpy(values), 0.25)
    ids = ids.numpy()
    v = values.astype(np.float64)
    assert np.all(v >= hist.edges[ids])
    last = ids == hist.n_bins - 1
    assert np.all(v[~last] < hist.edges[ids[~last] + 1])
    assert np.all(v[last] <= hist.edges[-1])
    np.testing.assert_array_equal(hist.counts, np.bincount(ids, minlength=hist.n_bins))


def test_edge_rule_examples():
    # min -20.3 -> round -20 -> lowered to -20.5; max 0.2 -> round 0 -> raised to 0.5.
    edges = histogram_edges(-20.3, 0.2, 0.5)
    assert edges[0] == -20.5 and edges[-1] == 0.5 and len(edges) == 43
    # Round half to even: -2.5 -> -2 -> lowered to -2.25 -> -2.5.
    edges = histogram_edges(-2.5, -1.5, 0.25)
    assert edges[0] == -2.5 and edges[-1] == -1.5
    # A width that does not divide 1.
    edges = histogram_edges(-3.33, 0.61, 0.3)
    assert edges[0] <= -3.33 and edges[-1] >= 0.61
    np.testing.assert_allclose(np.diff(edges[:-1]), 0.3)


def test_values_exactly_on_edges():
    edges = -3.0 + np.arange(9) * 0.25
    values = torch.tensor(edges, dtype=torch.float32)
    hist, ids = histogram(values, 0.25)
    assert hist.edges[0] == -3.0 and hist.edges[-1] == -1.0
    assert ids.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 7]  # the top edge belongs to the last bin
    assert hist.counts.tolist() == [1, 1, 1, 1, 1, 1, 1, 2]


@pytest.mark.parametrize("value", [-3.0, -2.7, 0.0, 1.3])
def test_all_equal_entropies(value):
    hist, ids = histogram(torch.full((10,), value), 0.5)
    assert hist.n_bins >= 1 and hist.counts.sum() == 10
    assert hist.edges[0] <= value <= hist.edges[-1]
    assert set(ids.tolist()) == {int(np.argmax(hist.counts))}


def test_bad_input():
    with pytest.raises(ValueError, match="log10_entropy is empty"):
        histogram(torch.zeros(0), 0.5)
    with pytest.raises(ValueError, match="log10_entropy must be finite"):
        histogram(torch.tensor([0.0, float("-inf")]), 0.5)
    with pytest.raises(ValueError, match="log10_entropy must be finite"):
        histogram(torch.tensor([0.0, float("nan")]), 0.5)
    with pytest.raises(ValueError, match="log10_entropy must be 1-D"):
        histogram(torch.zeros(2, 2), 0.5)
    for width in (0.0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bin_width must be a positive finite number"):
            histogram(torch.zeros(3), width)
    with pytest.raises(TypeError, match="bin_width must be a number"):
        histogram(torch.zeros(3), "0.5")
    with pytest.raises(ValueError, match="bins"):
        histogram(torch.tensor([-400.0, 1.0]), 1e-6)
    with pytest.raises(TypeError, match="values must be a 1-D float32 tensor"):
        ops.histogram_bins(torch.zeros(3, dtype=torch.float64), 0.0, 0.5, 2, 1.0)
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        ops.histogram_bins(torch.zeros(3), 0.0, 0.5, 0, 1.0)
