"""The ``proxyfast pipeline`` command end to end, in its own process, on real Fashion-MNIST.

The installed training set takes minutes per epoch on a CPU, so the command reads the
first 3,000 training and 500 test images, written in the same IDX format."""

import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import proxyfast
from proxyfast.scoring import Scores
from proxyfast.selection import ProxySet, available_methods

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.isdir(proxyfast.data.FASHION_MNIST_ROOT), reason="needs the installed Fashion-MNIST"),
]

SPLITS = {"train": 3000, "t10k": 500}


def write_first_examples(root, out_dir):
    """The first examples of each installed IDX file, as a smaller IDX file of the same kind."""
    for prefix, count in SPLITS.items():
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            with gzip.open(os.path.join(root, f"{prefix}-{kind}.gz"), "rb") as f:
                data = f.read()
            dims = data[3]
            shape = list(struct.unpack(f">{dims}I", data[4:4 + 4 * dims]))
            item = int(np.prod(shape[1:], dtype=np.int64))
            body = data[4 + 4 * dims: 4 + 4 * dims + count * item]
            with gzip.open(os.path.join(out_dir, f"{prefix}-{kind}.gz"), "wb") as f:
                f.write(data[:4] + struct.pack(f">{dims}I", count, *shape[1:]) + body)


def test_pipeline_command_on_fashion_mnist(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_first_examples(proxyfast.data.FASHION_MNIST_ROOT, data)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "proxyfast", "pipeline", "--data-root", str(data), "--out", str(out),
               "--epochs", "1", "--width", "4", "--device", "cpu", "--threads", "2", "--quiet"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "stage times" in finished.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["test_accuracy"] <= 1  # twelve steps of training: no accuracy to speak of yet
    scores = Scores.load(out / "scores.pxscores", dataset=proxyfast.data.fashion_mnist(root=str(data)))
    assert len(scores) == 3000 and scores.features is not None and scores.forgetting_counts is not None
    assert len((out / "entropy.txt").read_text().splitlines()) == 3000
    for method in available_methods():
        proxy = ProxySet.load(out / "proxies" / f"{method}.proxyset", scores=scores)
        assert proxy.k == 300 and proxy.method == method
        # The command's proxy is what the library selects from the command's scores.
        again = proxyfast.select(scores, fraction=0.1, method=method, seed=0, bin_width=0.5)
        assert proxy.indices.tolist() == again.indices.tolist(), method
        assert (out / "tables" / f"{method}.txt").read_text().startswith("log10 entropy")
    assert (out / "figure2.png").read_bytes().startswith(b"\x89PNG")
