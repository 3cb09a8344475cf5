"""Bad input is refused with one clear line before any long work starts, or gets the
right behaviour: each test below is one way the library and the commands were fed bad
input (argument values, paths, files that are crafted, truncated or not text)."""

import gzip
import hashlib
import json
import math
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast import ops
from proxyfast._atomic import atomic_write
from proxyfast.baseline import ForgettingTracker
from proxyfast.binning import MAX_BINS, histogram_edges
from proxyfast.cli import main
from proxyfast.data import digits
from proxyfast.distributed import score_sharded
from proxyfast.io import read_entropy_list, write_entropy_list
from proxyfast.models import CifarResNet
from proxyfast.nas import get_genotype
from proxyfast.pipeline import PipelineConfig, run_pipeline
from proxyfast.pretrain import train
from proxyfast.proxyset import ProxySet
from proxyfast.selection.kcenter import kcenter_greedy
from reference import entropy_reference
from proxyfast.scoring import DatasetMismatchError, Scores, score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(capsys, argv):
    """``proxyfast argv`` in this process: (exit status, the one line on stderr)."""
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert "Traceback" not in captured.err
    return status, (lines[0] if len(lines) == 1 else captured.err)


def assert_one_line_error(capsys, argv, *fragments):
    status, line = run_cli(capsys, argv)
    verb = argv[0] if argv[0] != "bench" else "bench search"
    assert status == 2, line
    assert line.startswith(f"proxyfast {verb}: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.fixture
def entropy_file(tmp_path, rng):
    path = tmp_path / "entropy.txt"
    write_entropy_list(path, Scores.from_log10_entropy(rng.normal(-3, 1.5, size=300)))
    return path


# --- histogram edges: no loop whose end depends on floating-point steps -----------------


def paper_loop_edges(min_value, max_value, bin_width):
    """The edge rule as the paper's code runs it: step the bounds one width at a time."""
    lo = float(round(min_value))
    while min_value < lo:
        lo -= bin_width
    hi = float(round(max_value))
    while max_value > hi:
        hi += bin_width
    n_bins = max(1, round((hi - lo) / bin_width))
    edges = lo + np.arange(n_bins + 1, dtype=np.float64) * bin_width
    edges[-1] = max(edges[-1], max_value)
    return edges


def test_histogram_edges_equal_the_paper_loop_on_random_ranges(rng):
    widths = [0.5, 0.25, 0.2, 0.3, 0.1, 1.0, 0.05, 0.01]
    for _ in range(3000):
        bin_width = float(rng.choice(widths)) if rng.random() < 0.6 else float(10 ** rng.uniform(-3, 0.5))
        low, high = np.sort(rng.normal(size=2) * rng.uniform(0.01, 20) + rng.uniform(-40, 5))
        if rng.random() < 0.3:  # on an edge, or half way between integers
            low = round(low / bin_width) * bin_width
        if rng.random() < 0.3:
            high = math.floor(high) + 0.5
        low, high = float(np.float32(min(low, high))), float(np.float32(max(low, high)))
        try:
            edges = histogram_edges(low, high, bin_width)
        except ValueError as error:  # too many bins: the loop would have built them
            assert "bins" in str(error) and (high - low) / bin_width > MAX_BINS / 2
            continue
        np.testing.assert_array_equal(edges, paper_loop_edges(low, high, bin_width))


def test_tiny_bin_widths_fail_at_once(tmp_path, entropy_file):
    # In a child process: a regression would loop for ever, and the timeout catches it.
    # The last range: stepping 1e15 by 0.01 leaves it unchanged, so that loop has no end.
    code = (
        "import sys, time\n"
        "from proxyfast.binning import histogram_edges\n"
        "from proxyfast.cli import main\n"
        "for low, high, width, message in ((-3.3, 0.4, 1e-12, 'bins'), (-3.3, 0.4, 1e-17, 'bins'),\n"
        "                                  (-3.3, 0.4, 5e-324, 'bins'),\n"
        "                                  (1e15 + 0.125, 1e15 + 0.25, 0.01, 'too small for log10 entropies')):\n"
        "    started = time.perf_counter()\n"
        "    try:\n"
        "        histogram_edges(low, high, width)\n"
        "    except ValueError as error:\n"
        "        assert message in str(error) and time.perf_counter() - started < 1, error\n"
        "    else:\n"
        "        sys.exit('no error')\n"
        f"sys.exit(main(['select', '--entropy-file', {str(entropy_file)!r}, '--k', '5', '--bin-width', '1e-17',\n"
        f"               '--out', {str(tmp_path / 'p.proxyset')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("proxyfast select: error: bin_width 1e-17 gives about")
    assert not (tmp_path / "p.proxyset").exists()


# --- an output path that is also an input -----------------------------------------------


def test_select_refuses_to_write_over_its_entropy_list(capsys, tmp_path, entropy_file):
    before = entropy_file.read_bytes()
    link = tmp_path / "link.txt"
    link.symlink_to(entropy_file)
    for out in (entropy_file, link, tmp_path / "." / "entropy.txt"):
        assert_one_line_error(capsys, ["select", "--entropy-file", entropy_file, "--k", "5", "--out", out],
                              "is also the input --entropy-file")
    assert_one_line_error(capsys, ["select", "--entropy-file", entropy_file, "--k", "5", "--out", tmp_path / "p",
                                   "--plot", tmp_path / "p"], "--out and --plot are the same file")
    assert entropy_file.read_bytes() == before


def test_score_refuses_to_write_over_its_checkpoint(capsys, tmp_path):
    checkpoint = tmp_path / "base.ckpt"
    checkpoint.write_bytes(b"trained weights")
    for option in ("--out", "--entropy-list"):
        others = ["--out", tmp_path / "s.pxscores"] if option == "--entropy-list" else []
        assert_one_line_error(capsys, ["score", "--checkpoint", checkpoint, "--dataset", "digits", option, checkpoint,
                                       *others], f"{option} '{checkpoint}' is also the input --checkpoint")
    assert_one_line_error(capsys, ["score", "--checkpoint", checkpoint, "--dataset", "digits", "--out",
                                   tmp_path / "s", "--work-dir", checkpoint], "--work-dir", "is not a directory")
    assert checkpoint.read_bytes() == b"trained weights"


def test_search_and_train_refuse_an_input_their_outputs_would_replace(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    proxy = out / "genotype.txt"
    proxy.write_bytes(b"a proxy set")
    assert_one_line_error(capsys, ["search", "--algo", "darts", "--dataset", "digits", "--proxy", proxy, "--out", out],
                          "--proxy", "would be replaced by its genotype.txt")
    arch = out / "model.pt"
    arch.write_text(str(get_genotype("DARTS_V2")))
    assert_one_line_error(capsys, ["train", "--arch", arch, "--dataset", "digits", "--epochs", "1", "--out", out],
                          "--arch", "would be replaced by its model.pt")
    assert proxy.read_bytes() == b"a proxy set"


@pytest.mark.parametrize("argv", [
    ["pretrain", "--dataset", "digits", "--out", "{dir}"],
    ["select", "--entropy-file", "{list}", "--k", "3", "--out", "{dir}"],
    ["beton", "--dataset", "digits", "--out", "{dir}"],
    ["pipeline", "--out", "{file}"],
    ["bench", "search", "--out", "{file}"],
    ["demo", "--n", "100", "--out", "{file}"],
])
def test_an_output_of_the_wrong_kind_is_refused_up_front(capsys, tmp_path, entropy_file, argv):
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"kept")
    argv = [arg.format(dir=tmp_path, file=a_file, list=entropy_file) for arg in argv]
    line = assert_one_line_error(capsys, argv)
    assert "is not a regular file" in line or "is not a directory" in line
    assert a_file.read_bytes() == b"kept"


# --- the pipeline and the other long commands check every argument first ----------------


@pytest.mark.parametrize("option, value, fragment", [
    ("--fraction", "2", "--fraction must be in (0, 1], got 2.0"),
    ("--fraction", "0", "--fraction must be in (0, 1]"),
    ("--bin-width", "-1", "--bin-width must be a positive finite number, got -1.0"),
    ("--bin-width", "nan", "--bin-width must be a positive finite number"),
    ("--epochs", "0", "--epochs must be at least 1"),
    ("--seed", "-1", "--seed must be an integer in [0, 2^63 - 1], got -1"),
    ("--device", "bogus", "--device 'bogus' is not a valid device"),
    ("--threads", "0", "--threads must be at least 1"),
])
def test_pipeline_rejects_bad_arguments_before_reading_or_training(capsys, tmp_path, option, value, fragment):
    # A data root that does not exist: the argument must be refused before the data is read.
    out = tmp_path / "run"
    started = time.perf_counter()
    assert_one_line_error(capsys, ["pipeline", "--out", out, "--data-root", tmp_path / "no-data", option, value],
                          fragment)
    assert time.perf_counter() - started < 10 and not out.exists()


@pytest.mark.parametrize("changes, fragment", [
    ({"fraction": 2.0}, "fraction must be in (0, 1]"),
    ({"bin_width": -1.0}, "bin_width must be a positive finite number"),
    ({"methods": ["p1", "p9"]}, "unknown method 'p9'"),
    ({"methods": []}, "methods must be a non-empty list"),
    ({"device": "bogus"}, "device 'bogus' is not a valid device"),
    ({"lr": float("inf")}, "lr must be in (0, inf)"),
])
def test_run_pipeline_checks_its_config_before_anything(tmp_path, changes, fragment):
    config = PipelineConfig(out=str(tmp_path / "run"), data_root=str(tmp_path / "no-data"), **changes)
    with pytest.raises(ValueError) as info:
        run_pipeline(config, log=None)
    assert fragment in str(info.value) and not (tmp_path / "run").exists()


def test_a_fraction_that_selects_nothing_stops_the_pipeline_before_training(tmp_path, rng):
    from test_data import write_fashion_mnist

    write_fashion_mnist(tmp_path, rng, n_train=40, n_test=10)
    config = PipelineConfig(out=str(tmp_path / "run"), data_root=str(tmp_path), fraction=0.01, progress=False)
    with pytest.raises(ValueError, match="fraction 0.01 of the 40 training images selects none"):
        run_pipeline(config, log=lambda _: None)
    assert not (tmp_path / "run" / "baseline.ckpt").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["pretrain", "--lr", "-1"], "--lr must be in (0, inf), got -1.0"),
    (["pretrain", "--batch-size", "1"], "--batch-size must be at least 2"),
    (["pretrain", "--image-size", "32"], "--image-size applies to --dataset imagefolder only"),
    (["score", "--checkpoint", "{ckpt}", "--shard-size", "0"], "--shard-size must be at least 1, got 0"),
    (["score", "--checkpoint", "{ckpt}", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["score", "--checkpoint", "{missing}"], "missing.ckpt': no such file"),
    (["search", "--algo", "darts", "--epochs", "0"], "epochs must be at least 1"),
    (["search", "--algo", "darts", "--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
    (["search", "--algo", "darts", "--scores", "{ckpt}"], "--scores checks the proxy"),
    (["train", "--arch", "DARTS_V2", "--epochs", "1", "--drop-path", "1"], "--drop-path must be in [0, 1), got 1.0"),
    (["train", "--arch", "DARTS_V2", "--epochs", "0"], "--epochs must be at least 1"),
    (["beton", "--dataset", "digits", "--jpeg-quality", "101"], "--jpeg-quality must be at most 100"),
])
def test_long_commands_reject_bad_arguments_before_reading_data(capsys, tmp_path, argv, fragment):
    checkpoint = tmp_path / "base.ckpt"
    checkpoint.write_bytes(b"x")
    argv = [arg.format(ckpt=checkpoint, missing=tmp_path / "missing.ckpt") for arg in argv]
    # The data root does not exist: an error about the argument shows it was checked first.
    argv += ["--out", tmp_path / "out"] + (["--data-root", tmp_path / "no-data"] if argv[0] != "beton" else [])
    assert_one_line_error(capsys, argv, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", ["score", "pipeline", "search", "train", "pretrain", "bench", "select"])
def test_a_bogus_device_is_a_one_line_error(capsys, tmp_path, entropy_file, verb):
    argv = {
        "score": ["score", "--checkpoint", entropy_file, "--out", tmp_path / "s"],
        "pipeline": ["pipeline", "--out", tmp_path / "p"],
        "search": ["search", "--algo", "darts", "--dataset", "digits", "--out", tmp_path / "s"],
        "train": ["train", "--arch", "DARTS_V2", "--dataset", "digits", "--epochs", "1", "--out", tmp_path / "t"],
        "pretrain": ["pretrain", "--dataset", "digits", "--out", tmp_path / "b.ckpt"],
        "bench": ["bench", "search", "--out", tmp_path / "b"],
        "select": ["select", "--entropy-file", entropy_file, "--k", "3", "--out", tmp_path / "p.proxyset"],
    }[verb]
    for device in ("bogus", "cuda:x", "tpu"):
        assert_one_line_error(capsys, argv + ["--device", device], f"--device '{device}' is not a valid device")
    assert sorted(os.listdir(tmp_path)) == ["entropy.txt"]


# --- the atomic writer --------------------------------------------------------------------


def test_the_writer_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "secret.proxyset"
    path.write_bytes(b"old")
    path.chmod(0o600)
    with atomic_write(path) as file:
        file.write(b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_writer_writes_through_a_symbolic_link(tmp_path):
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "real.txt"
    target.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "data" / "new.txt")
    for path in (link, dangling):
        with atomic_write(path) as file:
            file.write(b"new")
        assert path.is_symlink() and path.read_bytes() == b"new"
    assert target.read_bytes() == b"new" and (tmp_path / "data" / "new.txt").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path / "data")) == ["new.txt", "real.txt"]


def test_the_writer_refuses_to_replace_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a named pipe"), (tmp_path, "a directory"), ("/dev/null", "a character device")):
        with pytest.raises(ValueError, match=f"is not a regular file \\({kind}\\): refusing to replace it"):
            with atomic_write(path) as file:
                file.write(b"x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe"]


def test_the_writer_leaves_nothing_behind_on_an_error(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as file:
            file.write(b"half")
            raise RuntimeError("failed mid-write")
    assert os.listdir(tmp_path) == ["out.bin"] and path.read_bytes() == b"old"


_SLOW_WRITER = """
import sys, time
from proxyfast._atomic import atomic_write
from proxyfast.baseline import ForgettingTracker
with atomic_write(sys.argv[1]) as file:
    file.write(b"x" * 100000)
    file.flush()
    print("writing", flush=True)
    time.sleep(120)
"""


def _default_signal_dispositions():
    # A runner started under nohup, or in the background of a script, ignores SIGHUP or SIGINT, and
    # its children inherit that; the writer must see the signals as a process started from a shell does.
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_writer_stopped_by_a_signal_removes_its_temporary_file(tmp_path, signum):
    path = tmp_path / "big.pxscores"
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, preexec_fn=_default_signal_dispositions)
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert len(os.listdir(tmp_path)) == 1  # the temporary file
        writer.send_signal(signum)
        assert writer.wait(timeout=60) == -signum  # the signal still ends the process
    finally:
        writer.kill()
        writer.wait()
    assert os.listdir(tmp_path) == []


def test_the_next_write_removes_the_temporary_file_of_a_killed_writer(tmp_path):
    path = tmp_path / "big.pxscores"
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, preexec_fn=_default_signal_dispositions)
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.kill()
        writer.wait()
    [stale] = os.listdir(tmp_path)
    # A temporary file of a live writer (this test's parent process) and one of another
    # host are left alone: they may still be written.
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    live = f".big.pxscores.{host}-{os.getppid()}.00aa11bb22cc.tmp"
    other_host = f".big.pxscores.{'0' * 8 if host != '0' * 8 else '1' * 8}-{writer.pid}.00aa11bb22cc.tmp"
    for name in (live, other_host):
        (tmp_path / name).write_bytes(b"")
    with atomic_write(path) as file:
        file.write(b"done")
    assert sorted(os.listdir(tmp_path)) == sorted(["big.pxscores", live, other_host])
    assert stale not in os.listdir(tmp_path)


# --- files: one clear line naming the file, never a traceback ---------------------------


def test_a_huge_index_in_an_entropy_list_names_the_line(capsys, tmp_path):
    path = tmp_path / "huge.txt"
    path.write_text("0\t0.5\t1\n99999999999999999999999\t0.3\t2\n")
    with pytest.raises(ValueError, match=r"huge.txt: line 2: index 99999999999999999999999 is outside \[0, 2\)"):
        read_entropy_list(path)
    assert_one_line_error(capsys, ["select", "--entropy-file", path, "--k", "1", "--out", tmp_path / "p"],
                          "line 2: index 99999999999999999999999")


def test_a_truncated_gzip_list_names_the_file(capsys, tmp_path, entropy_file):
    whole = gzip.compress(entropy_file.read_bytes())
    path = tmp_path / "cut.txt.gz"
    for cut in (len(whole) // 2, 15, len(whole) - 4):
        path.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match="cut.txt.gz: truncated or corrupt gzip file"):
            read_entropy_list(path)
    assert_one_line_error(capsys, ["select", "--entropy-file", path, "--k", "1", "--out", tmp_path / "p"],
                          "cut.txt.gz: truncated or corrupt gzip file")


def test_non_utf8_files_name_the_file_and_the_line(capsys, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"0\t0.5\t1\n1\t0.25\t2\n2\t0.1\t\xe9\n")
    with pytest.raises(ValueError, match=r"latin1.txt: line 3: not UTF-8 text \(byte 0xe9"):
        read_entropy_list(path)
    gzipped = tmp_path / "latin1.txt.gz"
    gzipped.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(ValueError, match=r"latin1.txt.gz: line 3: not UTF-8 text"):
        read_entropy_list(gzipped)
    arch = tmp_path / "genotype.txt"
    arch.write_bytes(b"Genotype(normal=[('sep_conv_3x3', 0)]\n\xff")
    assert_one_line_error(capsys, ["train", "--arch", arch, "--epochs", "1", "--out", tmp_path / "run"],
                          "genotype.txt: line 2: not UTF-8 text")


def rewrite_proxy_set(path, change_header=None, indices=None):
    """Rewrites a proxy set file with a changed header or indices and a valid checksum."""
    data = path.read_bytes()
    _, version, header_size = struct.unpack_from("<8sIQ", data)
    header = json.loads(data[20:20 + header_size])
    if indices is None:
        indices = np.frombuffer(data, dtype="<i8", count=header["k"], offset=20 + header_size)
    if change_header is not None:
        change_header(header)
    header_bytes = json.dumps(header).encode()
    body = struct.pack("<8sIQ", b"PXYSET\0\0", version, len(header_bytes)) + header_bytes
    body += np.asarray(indices, dtype="<i8").tobytes()
    path.write_bytes(body + hashlib.sha256(body).digest())


@pytest.fixture
def saved_proxy(tmp_path, rng):
    proxy = proxyfast.select(Scores.from_log10_entropy(rng.normal(-3, 1, size=400)), k=40, seed=3)
    path = tmp_path / "p.proxyset"
    proxy.save(path)
    return path, proxy


def _set(key, value):
    def change(header):
        header[key] = value
    return change


def _set_histogram(key, value):
    def change(header):
        header["histogram"][key] = value
    return change


@pytest.mark.parametrize("change, fragment", [
    (_set("histogram", {}), "the histogram must hold edges, counts and bin_width"),
    (_set_histogram("edges", []), "edges must be at least 2 finite numbers"),
    (_set_histogram("bin_width", -0.5), "bin_width must be a positive number"),
    (_set_histogram("counts", [400]), "the histogram's counts must be a list of"),
    (_set("selected_per_bin", []), "selected_per_bin must be a list of"),
    (_set("n", 0), "n must be a positive integer"),
    (_set("n", "400"), "n must be a positive integer"),
    (_set("method", None), "method must be a string"),
    (_set("params", []), "params must be an object"),
    (_set("dataset_fingerprint", 7), "dataset_fingerprint must be a string or null"),
])
def test_a_checksummed_proxy_set_with_a_broken_header_is_refused(capsys, saved_proxy, change, fragment):
    path, _ = saved_proxy
    rewrite_proxy_set(path, change)
    with pytest.raises(ValueError, match="malformed proxy set") as info:
        ProxySet.load(path)
    assert fragment in str(info.value)
    assert_one_line_error(capsys, ["info", path], "malformed proxy set")


def test_a_crafted_proxy_set_with_duplicate_indices_is_refused(saved_proxy):
    path, proxy = saved_proxy
    indices = proxy.indices.numpy().copy()
    indices[1] = indices[0]
    rewrite_proxy_set(path, indices=indices)
    with pytest.raises(ValueError, match="an index appears more than once"):
        ProxySet.load(path)


@pytest.mark.parametrize("k", [39, 41, -1, 40.0])
def test_a_crafted_proxy_set_with_an_inconsistent_k_is_refused(saved_proxy, k):
    path, proxy = saved_proxy
    indices = proxy.indices.numpy()
    if k == 39:
        indices = indices[:39]
    elif k == 41:  # one more index, not yet selected
        indices = np.append(indices, np.setdiff1d(np.arange(400), indices)[0])
    rewrite_proxy_set(path, _set("k", k), indices=indices)
    with pytest.raises(ValueError, match="malformed proxy set"):
        ProxySet.load(path)


def test_a_checksummed_scores_file_with_unusable_values_is_refused(tmp_path, rng):
    scores = Scores.from_log10_entropy(rng.normal(-3, 1, size=50))
    log10 = scores.log10_entropy.clone()
    log10[7] = float("nan")
    crafted = Scores(scores.entropy, log10)
    path = tmp_path / "s.pxscores"
    crafted.save(path)  # a writer that checks nothing, with a valid checksum and fingerprint
    with pytest.raises(ValueError, match="malformed scores file \\(a log10 entropy is not finite\\)"):
        Scores.load(path)


# --- accepted when they should not be, or computed wrongly ------------------------------


def test_select_refuses_to_write_an_empty_proxy(capsys, tmp_path, entropy_file):
    out = tmp_path / "p.proxyset"
    for size in (["--k", "0"], ["--fraction", "0.001"], ["--k", "99", "--round-to", "100"]):
        assert_one_line_error(capsys, ["select", "--entropy-file", entropy_file, *size, "--out", out],
                              "the proxy would be empty", "of 300 examples selects none; nothing was written")
    assert not out.exists()
    assert_one_line_error(capsys, ["demo", "--n", "50", "--fraction", "0.01", "--out", tmp_path / "demo"],
                          "the proxy would be empty")


def test_weighted_sample_refuses_a_fractional_or_out_of_range_stream():
    weights = torch.ones(10, dtype=torch.float64)
    with pytest.raises(TypeError, match="stream must be an integer, got float"):
        ops.weighted_sample(weights, 3, 0, stream=1.5)
    for stream in (-1, 2**32):
        with pytest.raises(ValueError, match=f"stream must be at (least 0|most {2**32 - 1}), got {stream}"):
            ops.weighted_sample(weights, 3, 0, stream=stream)
    assert ops.weighted_sample(weights, 3, 0, stream=2**32 - 1).shape == (3,)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.has_cuda_kernels()), reason="needs a GPU and the CUDA kernels"))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_logits_at_the_ends_of_the_range_give_a_finite_entropy(dtype, device):
    big = torch.finfo(dtype).max
    rows = [[-3e38, 3e38], [3e38, -3e38, -3e38], [-3e38, 3e38, 3e38], [-big, big, 0.0], [big, big, -big],
            [-big, -big], [3e38, 1.0, -3e38]]
    logits = torch.tensor([row + [row[-1]] * (3 - len(row)) for row in rows], dtype=torch.float32).to(dtype)
    entropy, log10 = (value.cpu() for value in ops.entropy(logits.to(device)))
    assert bool(torch.isfinite(log10).all())
    expected_entropy, expected_log10 = entropy_reference(logits.float().numpy().astype(np.float64))
    np.testing.assert_allclose(log10.numpy(), expected_log10, rtol=1e-6)
    np.testing.assert_allclose(entropy.numpy(), expected_entropy, rtol=1e-6, atol=1e-30)
    scores = Scores.from_logits(logits)  # and the selection takes them
    assert proxyfast.select(scores, k=2, bin_width=1e38).k == 2


def _train_checkpoint(path, dataset, in_channels=1):
    torch.manual_seed(0)
    model = CifarResNet(depth=8, num_classes=10, in_channels=in_channels, width=2)
    train(model, dataset, epochs=1, batch_size=256, checkpoint=str(path), progress=False, device="cpu")
    return model


def test_a_digits_checkpoint_does_not_score_fashion_mnist(capsys, tmp_path, rng):
    from test_data import write_fashion_mnist

    write_fashion_mnist(tmp_path, rng, n_train=30, n_test=10)
    checkpoint = tmp_path / "digits.ckpt"
    _train_checkpoint(checkpoint, digits(train=True))
    for split in ("train", "test"):
        assert_one_line_error(capsys, ["score", "--checkpoint", checkpoint, "--dataset", "fashion-mnist",
                                       "--data-root", tmp_path, "--split", split, "--out", tmp_path / "s.pxscores"],
                              f"--checkpoint '{checkpoint}' was trained on other data (1,438 examples",
                              "than the fashion-mnist training set (30 examples")
    assert not (tmp_path / "s.pxscores").exists()
    # Its own dataset's test split is scored.
    status, _ = run_cli(capsys, ["score", "--checkpoint", checkpoint, "--dataset", "digits", "--split", "test",
                                 "--out", tmp_path / "s.pxscores", "--quiet", "--device", "cpu"])
    assert status == 0 and len(Scores.load(tmp_path / "s.pxscores")) == 359


def test_score_refuses_a_bad_device_and_a_model_that_does_not_fit_the_dataset(tmp_path):
    dataset = digits(train=False)
    model = CifarResNet(depth=8, num_classes=10, in_channels=1, width=2)
    for device in ("bogus", "cuda:x"):
        with pytest.raises(ValueError, match=f"device '{device}' is not a valid device"):
            score(model, dataset, device=device)
        with pytest.raises(ValueError, match=f"device '{device}' is not a valid device"):
            score_sharded(model, dataset, tmp_path / "work", device=device)
    assert not (tmp_path / "work").exists()
    with pytest.raises(DatasetMismatchError, match=r"takes 3-channel images, but the dataset \(digits-test\) holds "
                                                   "1-channel images"):
        score(CifarResNet(depth=8, num_classes=10, in_channels=3, width=2), dataset)
    with pytest.raises(DatasetMismatchError, match=r"the model classifies 5 classes, but the dataset \(digits-test\) "
                                                   "has 10"):
        score(CifarResNet(depth=8, num_classes=5, in_channels=1, width=2), dataset)


_COUNT_CALLS = {
    "ForgettingTracker(n)": lambda n: ForgettingTracker(n),
    "kcenter_greedy(k)": lambda k: kcenter_greedy(torch.zeros(5, 2), k),
    "CifarResNet(width)": lambda width: CifarResNet(width=width),
    "select(k)": lambda k: proxyfast.select(np.linspace(0.1, 1.0, 50), k=k),
}


@pytest.mark.parametrize("call", sorted(_COUNT_CALLS))
def test_every_count_is_checked_in_one_wording(call):
    # One check for every count or size: the same words, and a non-integer is caught as
    # TypeError or as ValueError, whichever a caller catches.
    run = _COUNT_CALLS[call]
    name = call[call.index("(") + 1:-1]
    minimum = 0 if name == "k" else 1
    with pytest.raises(ValueError, match=f"^{name} must be at least {minimum}, got {minimum - 1}$"):
        run(minimum - 1)
    for caught in (TypeError, ValueError):
        with pytest.raises(caught, match=f"^{name} must be an integer, got float$"):
            run(2.5)
