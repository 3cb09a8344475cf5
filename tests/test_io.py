"""The entropy-list format: exact round trips, placement by index, every reading error."""

from decimal import Decimal
import gzip
from importlib import resources
import os

import numpy as np
import pytest
import torch

from proxyfast.data import builtin as datasets
from proxyfast.io import read_entropy_list, write_entropy_list
from proxyfast.scoring import Scores


def assert_same_scores(a, b, log10_dtype=torch.float64):
    """``a`` read back equal to ``b`` bit for bit, the log10 entropies compared in ``log10_dtype``."""
    assert a.log10_entropy.dtype == torch.float64  # a list is read in float64
    assert torch.equal(a.entropy, b.entropy)  # bit for bit
    assert torch.equal(a.log10_entropy.to(log10_dtype), b.log10_entropy.to(log10_dtype))
    assert (a.labels is None) == (b.labels is None)
    if a.labels is not None:
        assert torch.equal(a.labels, b.labels)
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("name", ["scores.txt", "scores.txt.gz"])
def test_round_trip_is_exact(tmp_path, rng, name):
    entropies = (10.0 ** rng.uniform(-21, 0.7, size=3001)).astype(np.float32)
    scores = Scores.from_entropy(entropies, labels=rng.integers(0, 1000, size=3001))
    path = tmp_path / name
    write_entropy_list(path, scores)
    back = read_entropy_list(path)
    assert scores.log10_entropy.dtype == torch.float32  # fp32 entropies: fp32 log10
    assert_same_scores(back, scores, torch.float32)
    # read back, the list gives the float64 log10 of the fp32 entropies, as the paper's code
    np.testing.assert_array_equal(back.log10_entropy.numpy(), np.log10(entropies.astype(np.float64)))
    assert back.meta["source"] == str(path)
    if name.endswith(".gz"):
        assert gzip.decompress(path.read_bytes()).startswith(b"0\t")


@pytest.mark.parametrize("make", ["float64 entropies", "log10 entropies"])
def test_scores_from_float64_values_read_back_bit_for_bit(tmp_path, rng, make):
    # Neither fp32 value alone determines the other here: the writer must find a decimal
    # that gives both, and for float64 log10 entropies a float64 whose log10 is exactly each.
    log10 = rng.uniform(-40, 0.7, size=5000)
    scores = Scores.from_entropy(10.0**log10) if make == "float64 entropies" else Scores.from_log10_entropy(log10)
    assert scores.log10_entropy.dtype == torch.float64
    write_entropy_list(tmp_path / "e.txt", scores)
    back = read_entropy_list(tmp_path / "e.txt")
    if make == "float64 entropies":
        assert_same_scores(back, scores)
        return
    # Not every float64 is the log10 of a float64 (near 0 they are denser than the
    # entropies): those read back as the same fp32 rounding, the rest bit for bit.
    assert_same_scores(back, scores, torch.float32)
    exact = back.log10_entropy == scores.log10_entropy
    assert bool(exact[torch.from_numpy(np.abs(log10) > 1)].all()) and exact.float().mean() > 0.95


def test_scores_from_logits_keep_their_log10_entropy(tmp_path, rng):
    # Margins of up to 900 nats: the entropy underflows fp32 and, past ~700 nats, float64;
    # its log10 does not, and it is what must survive the file.
    logits = torch.from_numpy(rng.normal(0, 3, size=(500, 10)).astype(np.float32))
    logits[:100, 0] += torch.linspace(50, 900, 100)
    scores = Scores.from_logits(logits)
    assert (scores.entropy == 0).any() and scores.log10_entropy.min() < -330
    write_entropy_list(tmp_path / "l.txt", scores)
    back = read_entropy_list(tmp_path / "l.txt")
    assert torch.equal(back.log10_entropy.float(), scores.log10_entropy)
    assert back.fingerprint() == scores.fingerprint()


def test_entropies_below_the_float64_range_are_read_through_their_text(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("0 2.5e-400 1\n1 1e-310 1\n2 0.5 1\n")
    scores = read_entropy_list(path)
    expected = [float(Decimal("2.5e-400").log10()), -310.0, np.log10(0.5)]
    np.testing.assert_array_equal(scores.log10_entropy.numpy(), expected)
    assert scores.entropy.tolist()[:2] == [0.0, 0.0]


def test_builtin_list_is_written_back_byte_for_byte(tmp_path):
    scores = datasets.builtin_entropy_list()
    assert len(scores) == 50_000 and scores.labels.min() == 0 and scores.labels.max() == 99
    path = tmp_path / "cifar100.txt.gz"
    write_entropy_list(path, scores)
    packaged = resources.files("proxyfast.data").joinpath(datasets.BUILTIN_ENTROPY_LIST)
    with gzip.open(packaged, "rb") as original, gzip.open(path, "rb") as written:
        assert written.read() == original.read()


def test_entries_are_placed_by_index_in_any_order_with_any_whitespace(tmp_path):
    path = tmp_path / "shuffled.txt"
    path.write_text("2 0.25 7\n\n0\t1.5\t3\n  1   2e-20   5  \n")
    scores = read_entropy_list(path)
    np.testing.assert_array_equal(scores.entropy.numpy(), np.float32([1.5, 2e-20, 0.25]))
    assert scores.labels.tolist() == [3, 5, 7]


def test_a_list_without_labels(tmp_path):
    path = tmp_path / "nolabels.txt"
    path.write_text("1 0.5\n0 0.25\n")
    scores = read_entropy_list(path)
    assert scores.labels is None and scores.entropy.tolist() == [0.25, 0.5]
    write_entropy_list(tmp_path / "again.txt", scores)
    assert (tmp_path / "again.txt").read_text() == "0\t0.25\n1\t0.5\n"
    write_entropy_list(tmp_path / "labelled.txt", scores, labels=[4, 2])
    assert (tmp_path / "labelled.txt").read_text() == "0\t0.25\t4\n1\t0.5\t2\n"


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "the entropy list is empty"),
        ("\n  \n", "the entropy list is empty"),
        ("0 0.5 1\n1 0.5\n", r"line 2: expected 'index entropy label' \(3 fields\), got 2"),
        ("0 0.5 1 9\n", "line 1: expected 'index entropy label'"),
        ("0 0.5 1\n1 abc 1\n", "line 2: cannot parse '1 abc 1'"),
        ("0 0.5 1\n1.0 0.5 1\n", "line 2: cannot parse"),
        ("0 0.5 1\n1 0.5 x\n", "line 2: cannot parse"),
        ("0 0.5 1\n1 0 1\n", "line 2: entropy must be finite and positive, got 0"),
        ("0 -0.5 1\n", "line 1: entropy must be finite and positive"),
        ("0 nan 1\n", "line 1: entropy must be finite and positive"),
        ("0 inf 1\n", "line 1: entropy must be finite and positive"),
        ("0 -1e-400 1\n", "line 1: entropy must be finite and positive"),
        ("0 -0 1\n", "line 1: entropy must be finite and positive"),
        ("0 0.5 1\n1 0.5 1\n1 0.7 1\n", r"line 3: index 1 repeats line 2 \(and index 2 is missing\)"),
        ("0 0.5 1\n2 0.5 1\n3 0.7 1\n", r"line 3: index 3 is outside \[0, 3\)"),
        ("-1 0.5 1\n", r"line 1: index -1 is outside"),
    ],
)
def test_reading_errors_name_the_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match="bad.txt: " + match):
        read_entropy_list(path)


def test_write_checks_labels(tmp_path):
    scores = Scores.from_entropy([0.5, 0.25])
    with pytest.raises(ValueError, match="labels must be 2 integers"):
        write_entropy_list(tmp_path / "x.txt", scores, labels=[1, 2, 3])
    with pytest.raises(ValueError, match="labels must be 2 integers"):
        write_entropy_list(tmp_path / "x.txt", scores, labels=[0.5, 1.5])


def test_write_is_atomic(monkeypatch, tmp_path):
    path = tmp_path / "scores.txt"
    path.write_text("0\t0.5\n")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_entropy_list(path, Scores.from_entropy([0.25, 0.75, 1.0]))
    assert path.read_text() == "0\t0.5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.txt"]
