"""The log-entropy histogram: edge rule, bin rule, the op against the reference."""

import gzip
from importlib import resources

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast import ops
from proxyfast.cli import main
from proxyfast.io import read_entropy_list
from proxyfast.proxyset import ProxySet
from proxyfast.scoring.builtin import BUILTIN_ENTROPY_LIST, builtin_entropy_list
from proxyfast.binning import histogram, histogram_edges
from reference import float32_crossing_entropy, histogram_reference, paper_histogram, paper_log10_entropy


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
    for bad in (torch.zeros(3, dtype=torch.float16), torch.zeros(3, dtype=torch.int64), torch.zeros(2, 2)):
        with pytest.raises(TypeError, match="values must be a 1-D float32 or float64 tensor"):
            ops.histogram_bins(bad, 0.0, 0.5, 2, 1.0)
    with pytest.raises(ValueError, match="n_bins must be at least 1, got 0"):
        ops.histogram_bins(torch.zeros(3), 0.0, 0.5, 0, 1.0)


def below_edge_with_float32_on_it(edge: float) -> float:
    """A float64 just below ``edge`` whose float32 rounding is ``edge`` itself."""
    value = np.nextafter(edge, -np.inf)
    assert value < edge and float(np.float32(value)) == edge
    return float(value)


@pytest.mark.parametrize("n", [1, 2, 17, 1000, 65537])
@pytest.mark.parametrize("bin_width", [0.5, 0.25, 0.2, 0.3])
def test_float64_values_match_the_float64_reference(rng, n, bin_width):
    values = rng.normal(size=n) * rng.uniform(0.1, 6) + rng.uniform(-20, 1)
    if n > 2:  # values a hair either side of edges, and on them
        on_edges = np.round(values[: n // 3] / bin_width) * bin_width
        values[: n // 3] = on_edges + rng.choice([-1, 0, 1], size=len(on_edges)) * np.spacing(on_edges)
    hist, ids = histogram(torch.from_numpy(values), bin_width)
    edges, ref_ids, ref_counts = histogram_reference(values, bin_width)
    np.testing.assert_array_equal(hist.edges, edges)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_array_equal(hist.counts, ref_counts)


def test_float64_value_below_an_edge_stays_below():
    # -1.25 is an edge; the value just below it rounds onto it in float32, which would
    # move it one bin up.
    below = below_edge_with_float32_on_it(-1.25)
    values = np.array([-2.1, below, -1.1, -0.6])
    hist, ids = histogram(torch.from_numpy(values), 0.25)
    assert hist.edges[0] == -2.25 and hist.edges[4] == -1.25
    assert ids.tolist()[1] == 3
    _, paper_ids, paper_counts = paper_histogram(values, 0.25)
    assert ids.tolist() == paper_ids.tolist()
    assert hist.counts.tolist() == paper_counts[: hist.n_bins].tolist()
    # The same values rounded to float32 land on the edge: that is the float32 rule.
    _, ids32 = histogram(torch.from_numpy(values.astype(np.float32)), 0.25)
    assert ids32.tolist()[1] == 4


def entropies_with_a_float32_crossing(rng) -> np.ndarray:
    """400 float64 entropies binned at width 0.25 over edges -4 .. 0, entropy[7] just
    below the edge -1.5 (bin 9) with a float32 log10 on or above it."""
    entropy = 10.0 ** rng.uniform(-3.9, -0.1, size=400)
    entropy[[0, 1]] = [10.0 ** -3.95, 10.0 ** -0.05]  # edges -4 and 0 fixed
    entropy[7] = float32_crossing_entropy(-1.5)
    return entropy


def assert_bins_as_the_paper(proxy, entropy):
    """``proxy``'s histogram and its selected examples' bins are the paper's code's."""
    _, paper_ids, paper_counts = paper_histogram(paper_log10_entropy(entropy), 0.25)
    assert paper_ids[7] == 9 and proxy.histogram.edges[9:11].tolist() == [-1.75, -1.5]
    assert proxy.histogram.counts.tolist() == paper_counts[: proxy.histogram.n_bins].tolist()
    selected = np.bincount(paper_ids[proxy.indices.cpu().numpy()], minlength=proxy.histogram.n_bins)
    assert proxy.selected_per_bin.tolist() == selected.tolist()


@pytest.mark.parametrize("as_input", [np.asarray, torch.from_numpy, list, proxyfast.Scores.from_entropy])
def test_select_bins_float64_entropies_as_the_paper(rng, as_input):
    entropy = entropies_with_a_float32_crossing(rng)
    proxy = proxyfast.select(as_input(entropy), k=40, bin_width=0.25, seed=3)
    assert_bins_as_the_paper(proxy, entropy)
    # float32 log10 entropies (as scored from logits) put the crossing example one bin up.
    narrow = proxyfast.Scores.from_log10_entropy(paper_log10_entropy(entropy).astype(np.float32))
    from_float32 = proxyfast.select(narrow, k=40, bin_width=0.25, seed=3)
    assert (from_float32.histogram.counts - proxy.histogram.counts).tolist()[9:11] == [-1, 1]


def write_list(path, entropy) -> None:
    path.write_text("".join(f"{i}\t{value!r}\t{i % 10}\n" for i, value in enumerate(entropy.tolist())))


def test_scores_read_from_an_entropy_list_bin_as_the_paper(rng, tmp_path):
    entropy = entropies_with_a_float32_crossing(rng)
    path = tmp_path / "entropy.txt"
    write_list(path, entropy)
    scores = read_entropy_list(path)
    assert scores.log10_entropy.dtype == torch.float64
    np.testing.assert_array_equal(scores.log10_entropy.numpy(), paper_log10_entropy(np.loadtxt(path)[:, 1]))
    proxy = proxyfast.select(scores, k=40, bin_width=0.25, seed=3)
    assert_bins_as_the_paper(proxy, entropy)
    assert proxy.indices.tolist() == proxyfast.select(entropy, k=40, bin_width=0.25, seed=3).indices.tolist()
    # A saved and loaded copy keeps its float64 log10 entropies, so it bins the same.
    scores.save(tmp_path / "entropy.pxscores")
    loaded = proxyfast.Scores.load(tmp_path / "entropy.pxscores")
    assert loaded.log10_entropy.dtype == torch.float64 and torch.equal(loaded.log10_entropy, scores.log10_entropy)
    assert proxyfast.select(loaded, k=40, bin_width=0.25, seed=3).indices.tolist() == proxy.indices.tolist()


def test_cli_select_from_an_entropy_list_bins_as_the_paper(rng, tmp_path, capsys):
    entropy = entropies_with_a_float32_crossing(rng)
    path, out = tmp_path / "entropy.txt", tmp_path / "proxy.proxyset"
    write_list(path, entropy)
    argv = ["select", "--entropy-file", str(path), "--method", "p1", "--k", "40", "--bin-width", "0.25",
            "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    proxy = ProxySet.load(out)
    assert_bins_as_the_paper(proxy, entropy)
    assert proxy.indices.tolist() == proxyfast.select(entropy, k=40, bin_width=0.25, seed=3).indices.tolist()


@pytest.mark.parametrize("bin_width", [0.25, 0.5, 0.2])
def test_shipped_list_per_bin_counts_equal_the_papers(bin_width):
    # The list read as the paper's code reads it: float64 entropies, numpy log10.
    with resources.as_file(resources.files("proxyfast.data").joinpath(BUILTIN_ENTROPY_LIST)) as path:
        rows = np.loadtxt(gzip.open(path), dtype=np.float64)
    entropy = np.empty(len(rows))
    entropy[rows[:, 0].astype(np.int64)] = rows[:, 1]
    _, paper_ids, paper_counts = paper_histogram(paper_log10_entropy(entropy), bin_width)
    proxy = proxyfast.select(entropy, fraction=0.1, bin_width=bin_width)
    assert proxy.histogram.counts.tolist() == paper_counts[: proxy.histogram.n_bins].tolist()
    assert paper_counts[proxy.histogram.n_bins:].sum() == 0
    # The built-in Scores hold the same float64 log10 entropies: the same bins, the same proxy.
    scores = builtin_entropy_list()
    np.testing.assert_array_equal(scores.log10_entropy.numpy(), paper_log10_entropy(entropy))
    builtin = proxyfast.select(scores, fraction=0.1, bin_width=bin_width)
    assert builtin.histogram.counts.tolist() == proxy.histogram.counts.tolist()
    assert builtin.indices.tolist() == proxy.indices.tolist()
