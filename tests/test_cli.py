"""The proxyfast command, run in-process (and once as ``python -m proxyfast``)."""

import os
import subprocess
import sys

import pytest

from proxyfast.cli import main
from proxyfast.io import read_entropy_list, write_entropy_list
from proxyfast.proxyset import ProxySet
from proxyfast.scoring import Scores

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def entropy_file(tmp_path, rng):
    path = tmp_path / "entropy.txt"
    scores = Scores.from_entropy(10.0 ** rng.normal(-3, 2, size=3000), labels=rng.integers(0, 10, size=3000))
    write_entropy_list(path, scores)
    return path


def table_rows(out):
    """The per-bin rows of a printed table: the lines between the two rules."""
    lines = out.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    return lines[rules[0] + 1 : rules[1]], lines[rules[1] + 1]


def test_select_prints_the_table_and_writes_a_loadable_proxy(capsys, tmp_path, entropy_file):
    out_path = tmp_path / "proxy.proxyset"
    plot_path = tmp_path / "hist.png"
    argv = ["select", "--entropy-file", str(entropy_file), "--method", "p1", "--fraction", "0.1",
            "--seed", "3", "--bin-width", "0.5", "--out", str(out_path), "--plot", str(plot_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    proxy = ProxySet.load(out_path, scores=read_entropy_list(entropy_file))
    rows, total = table_rows(out)
    assert len(rows) == proxy.histogram.n_bins
    assert total.split() == ["total", "3000", "300", "10.00%"]
    assert [line.split()[-3:-1] for line in rows] == [[str(r.examples), str(r.selected)] for r in proxy.table()]
    assert "p1: selected 300 of 3,000 examples in " in out and " ms on cpu" in out
    assert f"wrote {out_path}" in out and f"wrote {plot_path}" in out
    assert plot_path.read_bytes()[:4] == b"\x89PNG"
    assert proxy.params == {"seed": 3, "bin_width": 0.5, "fraction": 0.1}


def test_select_with_k_round_to_and_another_method(capsys, tmp_path, entropy_file):
    out_path = tmp_path / "proxy.proxyset"
    argv = ["select", "--entropy-file", str(entropy_file), "--method", "deterministic", "--k", "1234",
            "--round-to", "500", "--beta", "0.8", "--out", str(out_path), "--device", "cpu"]
    assert main(argv) == 0
    proxy = ProxySet.load(out_path)
    assert proxy.k == 1000 and proxy.method == "deterministic" and proxy.params["beta"] == 0.8


def test_info_prints_the_header(capsys, tmp_path, entropy_file):
    out_path = tmp_path / "proxy.proxyset"
    main(["select", "--entropy-file", str(entropy_file), "--k", "10", "--method", "random", "--out", str(out_path)])
    capsys.readouterr()
    assert main(["info", str(out_path)]) == 0
    out = capsys.readouterr().out
    proxy = ProxySet.load(out_path)
    assert "method       random" in out and "k            10" in out and proxy.fingerprint in out
    assert table_rows(out)[1].split() == ["total", "3000", "10", "0.33%"]


def test_demo_selects_and_writes_its_files(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--n", "20000", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    proxy = ProxySet.load(out_dir / "proxy_p1.proxyset")
    assert proxy.n == 20000 and proxy.k == 2000 and proxy.method == "p1"
    assert proxy.histogram.bin_width == 0.25
    assert (out_dir / "histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert "p1: selected 2,000 of 20,000 examples in " in out and "not ImageNet scores" in out
    assert table_rows(out)[1].split() == ["total", "20000", "2000", "10.00%"]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["select", "--k", "3", "--out", "x"], "the following arguments are required: --entropy-file"),
        (["select", "--entropy-file", "{entropy}", "--out", "x"], "one of the arguments --fraction --k is required"),
        (["select", "--entropy-file", "{entropy}", "--k", "3", "--fraction", "0.5", "--out", "x"], "not allowed with"),
        (["select", "--entropy-file", "{entropy}", "--k", "three", "--out", "x"], "invalid int value: 'three'"),
        (["select", "--entropy-file", "{entropy}", "--fraction", "1.5", "--out", "x"], r"fraction must be in (0, 1]"),
        (["select", "--entropy-file", "{entropy}", "--k", "5000", "--out", "x"], "k = 5000 exceeds"),
        (["select", "--entropy-file", "{entropy}", "--k", "-2", "--out", "x"], "--k must be at least 0, got -2"),
        (["select", "--entropy-file", "{entropy}", "--k", "3", "--method", "p9", "--out", "x"], "unknown method 'p9'"),
        (["select", "--entropy-file", "{entropy}", "--k", "3", "--beta", "2", "--out", "x"], "beta must be in [0, 1]"),
        (["select", "--entropy-file", "{missing}", "--k", "3", "--out", "x"], "No such file or directory"),
        (["select", "--entropy-file", "{entropy}", "--k", "3", "--device", "gpu0", "--out", "x"], "device 'gpu0'"),
        (["info", "{entropy}"], "not a proxyfast proxy set file"),
        (["demo", "--n", "0"], "--n must be at least 1, got 0"),
    ],
)
def test_errors_are_one_line_on_stderr_with_status_2(capsys, tmp_path, entropy_file, argv, message):
    argv = [arg.format(entropy=entropy_file, missing=tmp_path / "missing.txt") for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err
    assert lines[0].startswith("proxyfast")


def test_python_dash_m_runs_the_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "proxyfast", "info", str(tmp_path / "absent.proxyset")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("proxyfast info: error: ") and len(result.stderr.splitlines()) == 1
    version = subprocess.run([sys.executable, "-m", "proxyfast", "--version"], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == "proxyfast 0.1.0"


def test_importing_proxyfast_does_not_load_matplotlib():
    code = "import sys, proxyfast, proxyfast.cli; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0
