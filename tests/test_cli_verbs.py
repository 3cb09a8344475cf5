"""The command line's smaller promises: built-in score lists by name, `info` on scores,
`export` of a proxy's indices, one line (never a traceback) on Ctrl-C, and errors that
name the path the user gave."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from proxyfast import ProxySet, Scores
from proxyfast._atomic import atomic_write
from proxyfast.cli import main
from proxyfast.scoring import builtin_entropy_list


def test_select_reads_the_builtin_list_by_name(tmp_path, capsys):
    out = tmp_path / "proxy.proxyset"
    assert main(["select", "--entropy-file", "builtin:cifar100-resnet56", "--fraction", "0.1", "--out", str(out)]) == 0
    proxy = ProxySet.load(out)
    assert (proxy.n, proxy.k) == (50_000, 5_000)
    proxy.check_scores(builtin_entropy_list())


def test_an_unknown_builtin_list_is_refused_with_the_known_names(tmp_path, capsys):
    out = tmp_path / "proxy.proxyset"
    assert main(["select", "--entropy-file", "builtin:imagenet", "--fraction", "0.1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--entropy-file 'builtin:imagenet' is not a built-in list" in err and "builtin:cifar100-resnet56" in err
    assert not out.exists()


def test_info_prints_the_header_of_a_scores_file(tmp_path, capsys):
    path = tmp_path / "train.pxscores"
    scores = Scores.from_log10_entropy(np.linspace(-3.0, 0.0, 101), labels=np.arange(101) % 7)
    scores.meta["model"] = {"class": "CifarResNet"}
    scores.save(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    fields = dict(line.split(None, 1) for line in out.splitlines() if line.strip() and not line.startswith("log10"))
    assert fields["kind"] == "scores" and fields["n"] == "101" and fields["arrays"] == "entropy, labels"
    assert "min -3.000, median -1.500, max 0.000" in out
    assert '{"class": "CifarResNet"}' in out


@pytest.mark.parametrize("part", ["all", "train", "val"])
def test_export_writes_the_proxy_indices_as_npy_and_txt(tmp_path, capsys, part):
    scores = Scores.from_log10_entropy(np.random.default_rng(3).normal(-1.0, 0.5, 1000))
    proxy = ProxySet.load(_saved_proxy(tmp_path, scores))
    train, val = proxy.split(0.3)
    expected = {"all": proxy.indices, "train": train, "val": val}[part].numpy()
    for name in ("idx.npy", "idx.txt"):
        out = tmp_path / name
        argv = ["export", str(tmp_path / "p.proxyset"), "--out", str(out), "--part", part, "--train-portion", "0.3"]
        assert main(argv) == 0
        written = np.load(out) if name.endswith(".npy") else np.loadtxt(out, dtype=np.int64, ndmin=1)
        assert written.dtype == np.int64 and np.array_equal(written, expected)


def test_export_refuses_an_unknown_format_before_writing(tmp_path, capsys):
    path = _saved_proxy(tmp_path, Scores.from_log10_entropy(np.zeros(10)))
    assert main(["export", path, "--out", str(tmp_path / "idx.csv")]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "idx.csv").exists()


def test_a_missing_output_directory_is_named_before_any_work(tmp_path, capsys):
    out = tmp_path / "missing" / "proxy.proxyset"
    assert main(["select", "--entropy-file", "builtin:cifar100-resnet56", "--fraction", "0.1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"the directory {str(out.parent)!r} does not exist" in err and ".tmp" not in err
    assert "selected" not in capsys.readouterr().out


def test_a_failed_atomic_write_names_the_target_not_its_temporary_file(tmp_path):
    target = tmp_path / "missing" / "file.bin"
    with pytest.raises(FileNotFoundError) as error:
        with atomic_write(target) as file:
            file.write(b"x")
    assert error.value.filename == str(target) and ".tmp" not in str(error.value)


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(tmp_path):
    checkpoint = tmp_path / "baseline.ckpt"
    command = [sys.executable, "-m", "proxyfast", "pretrain", "--dataset", "digits", "--epochs", "1000",
               "--batch-size", "64", "--width", "4", "--threads", "1", "--device", "cpu", "--quiet",
               "--out", str(checkpoint)]
    # SIGINT as a terminal's Ctrl-C: by default in the child, though a runner in the background of a script
    # ignores it, and Python would then never turn it into KeyboardInterrupt.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()[1]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "proxyfast pretrain: interrupted"


def _saved_proxy(tmp_path, scores) -> str:
    from proxyfast import select

    path = str(tmp_path / "p.proxyset")
    select(scores, fraction=0.5, method="random", seed=1).save(path)
    return path
