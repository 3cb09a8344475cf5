"""The end-to-end job on small Fashion-MNIST-format files: every artefact, and resume."""

import json

import pytest

from proxyfast.pipeline import PipelineConfig, run_pipeline
from proxyfast.proxyset import ProxySet
from proxyfast.scoring import Scores
from proxyfast.selection import available_methods

pytest.importorskip("matplotlib")


def test_pipeline_writes_every_artefact_and_resumes(rng, tmp_path):
    from test_data import write_fashion_mnist

    data = tmp_path / "data"
    data.mkdir()
    write_fashion_mnist(data, rng, n_train=200, n_test=50)
    out = tmp_path / "out"
    config = PipelineConfig(out=str(out), data_root=str(data), epochs=1, width=2, batch_size=50, progress=False,
                            device="cpu")
    lines = []
    summary = run_pipeline(config, log=lines.append)

    assert set(summary["stage_seconds"]) == {"load data", "train baseline (+ forgetting events)",
                                             "score training set", "select proxies", "figure"}
    assert any(line.startswith("stage times") for line in lines)
    assert 0 <= summary["test_accuracy"] <= 1
    scores = Scores.load(out / "scores.pxscores")
    assert scores.features is not None and scores.forgetting_counts is not None and len(scores) == 200
    for method in available_methods():
        proxy = ProxySet.load(out / "proxies" / f"{method}.proxyset", scores=scores)
        assert proxy.k == 20 and proxy.method == method
        assert (out / "tables" / f"{method}.txt").read_text().startswith("log10 entropy")
    assert (out / "figure2.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "summary.json").read_text())["test_accuracy"] == summary["test_accuracy"]
    assert len((out / "entropy.txt").read_text().splitlines()) == 200

    # A second run reuses the finished training and the scores.
    lines.clear()
    again = run_pipeline(config, log=lines.append)
    assert any(line.startswith("resumed from") for line in lines)
    assert again["test_accuracy"] == summary["test_accuracy"]
    assert Scores.load(out / "scores.pxscores").fingerprint() == scores.fingerprint()
