"""ProxySet: split, the file format (round trip, atomic writes, every load error), report."""

import hashlib
import json
import os
import struct
import sys

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast import proxyset as proxyset_module
from proxyfast.proxyset import FORMAT_VERSION, MAGIC, ProxySet
from proxyfast.report import bin_table, plot_histogram
from proxyfast.data import ImageArrayDataset
from proxyfast.scoring import DatasetMismatchError, Scores


@pytest.fixture
def scores(rng):
    return Scores.from_log10_entropy(rng.normal(-3, 2, size=5000))


@pytest.fixture
def proxy(scores):
    return proxyfast.select(scores, fraction=0.1, method="p1", seed=42, bin_width=0.5)


@pytest.fixture
def saved(tmp_path, proxy):
    path = tmp_path / "proxy.proxyset"
    proxy.save(path)
    return path


@pytest.mark.parametrize("k", [0, 1, 7, 500])
@pytest.mark.parametrize("portion", [0.0, 0.3, 0.5, 0.999, 1.0])
def test_split_is_disjoint_covers_the_proxy_and_has_the_right_sizes(scores, k, portion):
    proxy = proxyfast.select(scores, k=k, method="random", seed=1)
    train, arch = proxy.split(portion)
    assert len(train) == int(np.floor(portion * k)) and len(train) + len(arch) == k
    assert not set(train.tolist()) & set(arch.tolist())
    assert torch.equal(torch.cat([train, arch]), proxy.indices)


def test_split_default_is_halves(proxy):
    train, arch = proxy.split()
    assert len(train) == 250 and len(arch) == 250


@pytest.mark.parametrize("portion", [-0.1, 1.1, float("nan")])
def test_split_rejects_a_portion_outside_0_1(proxy, portion):
    with pytest.raises(ValueError, match=r"train_portion must be in \[0, 1\]"):
        proxy.split(portion)


def test_len_repr_to_and_table(proxy):
    assert len(proxy) == 500
    assert "method='p1'" in repr(proxy) and "k=500" in repr(proxy) and "n=5000" in repr(proxy)
    assert proxy.to("cpu").indices.device == torch.device("cpu")
    rows = proxy.table()
    assert len(rows) == proxy.histogram.n_bins
    assert sum(row.examples for row in rows) == 5000 and sum(row.selected for row in rows) == 500
    for row in rows:
        assert row.hi - row.lo == pytest.approx(0.5)
        assert row.percent == (100.0 * row.selected / row.examples if row.examples else 0.0)


def test_save_load_round_trip_preserves_everything(saved, proxy, scores):
    loaded = ProxySet.load(saved, scores=scores)
    assert torch.equal(loaded.indices, proxy.indices)
    assert (loaded.n, loaded.k, loaded.method, loaded.params) == (proxy.n, proxy.k, proxy.method, proxy.params)
    np.testing.assert_array_equal(loaded.histogram.edges, proxy.histogram.edges)
    np.testing.assert_array_equal(loaded.histogram.counts, proxy.histogram.counts)
    assert loaded.histogram.bin_width == proxy.histogram.bin_width
    np.testing.assert_array_equal(loaded.selected_per_bin, proxy.selected_per_bin)
    assert loaded.fingerprint == proxy.fingerprint == scores.fingerprint()
    assert loaded.created == proxy.created and loaded.proxyfast_version == proxyfast.__version__
    assert [tuple(r) for r in loaded.table()] == [tuple(r) for r in proxy.table()]
    assert all(torch.equal(a, b) for a, b in zip(loaded.split(), proxy.split()))


def test_empty_proxy_round_trips(tmp_path, scores):
    path = tmp_path / "empty.proxyset"
    proxyfast.select(scores, k=0).save(path)
    assert ProxySet.load(path).k == 0


def test_file_layout_matches_the_documented_format(saved, proxy):
    data = saved.read_bytes()
    magic, version, header_size = struct.unpack_from("<8sIQ", data)
    assert magic == MAGIC == b"PXYSET\0\0" and version == FORMAT_VERSION == 1
    header = json.loads(data[20 : 20 + header_size])
    assert {"n", "k", "method", "params", "histogram", "selected_per_bin", "fingerprint",
            "proxyfast_version", "created"} <= set(header)
    indices = np.frombuffer(data, dtype="<i8", count=header["k"], offset=20 + header_size)
    np.testing.assert_array_equal(indices, proxy.indices.numpy())
    assert len(data) == 20 + header_size + 8 * header["k"] + 32


def test_fingerprint_is_computed_only_when_needed(monkeypatch, scores, tmp_path):
    calls = []
    original = Scores.fingerprint
    monkeypatch.setattr(Scores, "fingerprint", lambda self: calls.append(1) or original(self))
    proxy = proxyfast.select(scores, k=10)
    assert calls == []
    proxy.save(tmp_path / "p.proxyset")
    assert len(calls) == 1


def test_load_rejects_scores_that_are_not_the_ones_selected_from(saved, scores, rng):
    other = Scores.from_log10_entropy(scores.log10_entropy.numpy() + np.float32(1e-3))
    with pytest.raises(ValueError, match="proxy.proxyset: this proxy set was selected from different scores"):
        ProxySet.load(saved, scores=other)
    with pytest.raises(ValueError, match="selected from different scores"):
        ProxySet.load(saved, scores=Scores.from_log10_entropy(rng.normal(size=10)))


def test_load_accepts_the_same_scores_built_another_way(saved, scores):
    # The fingerprint does not depend on how the scores were built.
    rebuilt = Scores.from_log10_entropy(scores.log10_entropy.tolist())
    assert ProxySet.load(saved, scores=rebuilt).k == 500


def test_truncated_files_are_reported(tmp_path, saved):
    data = saved.read_bytes()
    header_size = struct.unpack_from("<Q", data, 12)[0]
    for cut in sorted({0, 3, 8, 12, 19, 20, 20 + header_size // 2, 20 + header_size, 20 + header_size + 31,
                       20 + header_size + 40, len(data) - 32, len(data) - 1}):
        path = tmp_path / f"cut{cut}.proxyset"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=rf"cut{cut}.proxyset: truncated proxy set file"):
            ProxySet.load(path)


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path, saved):
    data = bytearray(saved.read_bytes())
    struct.pack_into("<I", data, 8, FORMAT_VERSION + 1)
    path = tmp_path / "newer.proxyset"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="newer.proxyset: written by a newer proxyfast .*upgrade"):
        ProxySet.load(path)


@pytest.mark.parametrize("where", ["header", "indices", "checksum"])
def test_a_flipped_byte_is_a_checksum_error(tmp_path, saved, where):
    data = bytearray(saved.read_bytes())
    header_size = struct.unpack_from("<Q", data, 12)[0]
    position = {"header": 20 + header_size // 2, "indices": 20 + header_size + 13, "checksum": len(data) - 5}[where]
    data[position] ^= 0x10
    path = tmp_path / "flipped.proxyset"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"flipped.proxyset: corrupt proxy set file \(checksum mismatch\)"):
        ProxySet.load(path)


def test_a_file_of_another_kind_is_not_a_proxy_set(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some text, long enough to hold a header\n")
    with pytest.raises(ValueError, match="notes.txt: not a proxyfast proxy set file"):
        ProxySet.load(path)


def test_save_never_leaves_a_partial_file(monkeypatch, tmp_path, saved, scores):
    before = saved.read_bytes()
    other = proxyfast.select(scores, k=77, method="random")

    def fail(*args):
        raise OSError("disk full")

    # The failure comes after the body has been written to the temporary file.
    monkeypatch.setattr(proxyset_module.hashlib, "sha256", fail)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved.name]
    other.save(saved)
    assert ProxySet.load(saved).k == 77


def test_bin_table_lists_every_bin_and_the_totals(proxy):
    lines = bin_table(proxy).splitlines()
    assert lines[0].split() == ["log10", "entropy", "examples", "selected", "percent"]
    assert len(lines) == proxy.histogram.n_bins + 4  # header, two rules, total
    assert lines[-1].split() == ["total", "5000", "500", "10.00%"]
    assert len({len(line) for line in lines}) == 1  # aligned
    rows = lines[2:-2]
    assert rows[-1].startswith(f"[{proxy.histogram.edges[-2]:g}, {proxy.histogram.edges[-1]:g}]")
    for line, row in zip(rows, proxy.table()):
        assert line.split()[-3:-1] == [str(row.examples), str(row.selected)]


def test_plot_histogram_writes_a_png(tmp_path, proxy, scores):
    path = tmp_path / "hist.png"
    plot_histogram(proxy, scores, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    others = [proxy, proxyfast.select(scores, fraction=0.1, method="p2", bin_width=0.25)]
    plot_histogram(others, scores, path)
    plot_histogram(proxy, None, tmp_path / "stored.svg")
    assert b"<svg" in (tmp_path / "stored.svg").read_bytes()[:500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hist.png", "stored.svg"]


def test_plot_histogram_checks_its_inputs(tmp_path, proxy, rng):
    with pytest.raises(ValueError, match="scores has 10 examples"):
        plot_histogram(proxy, Scores.from_log10_entropy(rng.normal(size=10)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="proxysets is empty"):
        plot_histogram([], None, tmp_path / "x.png")


def test_plot_histogram_without_matplotlib_says_how_to_install_it(monkeypatch, tmp_path, proxy):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install proxyfast\[plot\]"):
        plot_histogram(proxy, None, tmp_path / "x.png")


def test_the_dataset_fingerprint_of_the_scores_travels_with_the_proxy(tmp_path, rng):
    images = rng.integers(0, 256, size=(300, 4, 4, 1), dtype=np.uint8)
    dataset = ImageArrayDataset(images, rng.integers(0, 3, size=300), name="mine")
    other = ImageArrayDataset(images[::-1].copy(), rng.integers(0, 3, size=300), name="theirs")
    scores = Scores.from_log10_entropy(rng.normal(-3, 2, size=300))
    scores = scores.replace(meta={"dataset": {"fingerprint": dataset.fingerprint()}})
    proxy = proxyfast.select(scores, fraction=0.1, method="p1", seed=1)
    path = tmp_path / "proxy.proxyset"
    proxy.save(path)
    loaded = ProxySet.load(path)
    assert loaded.dataset_fingerprint == dataset.fingerprint() == proxy.dataset_fingerprint
    loaded.check_dataset(dataset)
    with pytest.raises(DatasetMismatchError, match="scores of another dataset.*theirs"):
        loaded.check_dataset(other)
    with pytest.raises(DatasetMismatchError, match="300 examples.*holds 299"):
        loaded.check_dataset(ImageArrayDataset(images[:299], np.zeros(299, dtype=np.int64), name="short"))


def test_a_proxy_without_a_dataset_fingerprint_is_checked_by_size_only(tmp_path, saved, rng):
    loaded = ProxySet.load(saved)
    assert loaded.dataset_fingerprint is None
    images = rng.integers(0, 256, size=(loaded.n, 2, 2, 1), dtype=np.uint8)
    loaded.check_dataset(ImageArrayDataset(images, np.zeros(loaded.n, dtype=np.int64), name="any"))
    # Files written before the key existed read the same way.
    data = bytearray(saved.read_bytes())
    header_size = struct.unpack_from("<Q", data, 12)[0]
    header = json.loads(data[20:20 + header_size])
    del header["dataset_fingerprint"]
    body = json.dumps(header, separators=(",", ":")).encode()
    rest = bytes(data[20 + header_size:-32])
    rebuilt = bytes(data[:12]) + struct.pack("<Q", len(body)) + body + rest
    old = tmp_path / "old.proxyset"
    old.write_bytes(rebuilt + hashlib.sha256(rebuilt).digest())
    assert ProxySet.load(old).dataset_fingerprint is None
