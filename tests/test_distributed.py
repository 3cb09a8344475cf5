"""Scaling out on torch.distributed: sharded scoring, one selection, DDP search steps.

The multi-process tests run two gloo processes on the CPU (tests/_dist_launch.py); the
rest check the same code paths in one process.
"""

import json
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast.distributed import (
    IncompleteScoresError,
    merge_shards,
    remove_shards,
    score_sharded,
    select_once,
    shard_path,
    shard_ranges,
)
from proxyfast.nas.search import build_search

from _dist_launch import run_ranks
from _dist_workers import TinyNet, ddp_suite, make_dataset, one_search_step, score_and_select, search_config

SCORE_FIELDS = ("entropy", "log10_entropy", "labels", "predictions", "features")
SELECT = {"fraction": 0.2, "method": "p1", "seed": 5, "bin_width": 0.25}


@pytest.fixture
def problem(rng):
    """Random images and labels and a random TinyNet's weights, fresh each run."""
    n = int(rng.integers(280, 330))
    images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 5, size=n)
    torch.manual_seed(int(rng.integers(2**31)))
    model = TinyNet()
    with torch.no_grad():  # non-trivial running statistics, used in eval mode
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return images, labels, model.state_dict()


def reference_scores(problem, batch_size):
    images, labels, state = problem
    model = TinyNet()
    model.load_state_dict(state)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks, so that every kernel sums in the same order
    try:
        return proxyfast.score(model.eval(), make_dataset(images, labels), batch_size=batch_size, features=True)
    finally:
        torch.set_num_threads(threads)


def assert_same_scores(got, expected):
    for name in SCORE_FIELDS:
        value = got[name] if isinstance(got, dict) else getattr(got, name)
        torch.testing.assert_close(value, getattr(expected, name), rtol=0, atol=0, msg=name)


def load_results(out_dir, world_size):
    return [torch.load(os.path.join(out_dir, f"rank{rank}.pt"), weights_only=False) for rank in range(world_size)]


# Two processes


def test_two_ranks_score_and_select_like_one_process(problem, tmp_path):
    images, labels, state = problem
    work_dir = tmp_path / "shards"
    codes = run_ranks(score_and_select, 2, str(tmp_path), images, labels, state, str(work_dir), 32, 16, None, SELECT)
    assert codes == [0, 0]
    rank0, rank1 = load_results(tmp_path, 2)
    expected = reference_scores(problem, batch_size=16)

    # Identical scores, in index order, each example scored exactly once over the two ranks.
    assert_same_scores(rank0["scores"], expected)
    assert "scores" not in rank1  # merged on rank 0 only
    assert rank0["seen"] + rank1["seen"] == len(labels)
    shards = shard_ranges(len(labels), 32)
    assert rank0["meta"]["scoring"]["shards"] == {"count": len(shards), "size": 32, "resumed": 0}
    assert rank0["meta"]["dataset"]["fingerprint"] == make_dataset(images, labels).fingerprint()

    # One selection, broadcast: the same indices on both ranks as in one process.
    reference = proxyfast.select(expected, **SELECT)
    for result in (rank0, rank1):
        torch.testing.assert_close(result["proxy"], reference.indices, rtol=0, atol=0)
        assert result["fingerprint"] == expected.fingerprint()


def test_a_rank_dying_mid_scoring_fails_the_job_and_a_restart_resumes(problem, tmp_path):
    images, labels, state = problem
    n, shard_size, batch = len(labels), 32, 16
    shards = shard_ranges(n, shard_size)
    work_dir = tmp_path / "shards"
    first = tmp_path / "first"
    first.mkdir()
    # Rank 1 takes shards 1, 3, 5, ...: it writes shard 1 and dies in the middle of shard 3.
    codes = run_ranks(score_and_select, 2, str(first), images, labels, state, str(work_dir), shard_size, batch,
                      shard_size + batch, SELECT)
    assert codes[1] == 17 and codes[0] == 0
    assert not os.path.exists(first / "rank1.pt")
    (rank0,) = load_results(first, 1)
    missing = list(range(3, len(shards), 2))
    assert rank0["missing"] == missing
    assert "scores" not in rank0 and "proxy" not in rank0  # no partial scores, no selection
    message = rank0["error"]
    assert f"{len(missing)} of {len(shards)} shards are missing" in message
    assert f"3 (examples {3 * shard_size}..{4 * shard_size - 1})" in message
    assert "died" in message and "run the same job again" in message

    done = sorted(set(range(len(shards))) - set(missing))
    assert sorted(int(name[6:12]) for name in os.listdir(work_dir) if name.startswith("shard-")) == done
    before = {s: os.stat(shard_path(work_dir, s)) for s in done}

    # The restart scores the missing shards only, and the result is whole.
    second = tmp_path / "second"
    second.mkdir()
    codes = run_ranks(score_and_select, 2, str(second), images, labels, state, str(work_dir), shard_size, batch,
                      None, SELECT)
    assert codes == [0, 0]
    rank0, rank1 = load_results(second, 2)
    assert rank0["seen"] + rank1["seen"] == sum(shards[s][1] - shards[s][0] for s in missing)
    for s in done:  # not rewritten: the same file, untouched
        after = os.stat(shard_path(work_dir, s))
        assert (after.st_ino, after.st_mtime_ns) == (before[s].st_ino, before[s].st_mtime_ns)
    assert rank0["meta"]["scoring"]["shards"]["resumed"] == len(done)
    expected = reference_scores(problem, batch_size=batch)
    assert_same_scores(rank0["scores"], expected)
    reference = proxyfast.select(expected, **SELECT)
    for result in (rank0, rank1):
        torch.testing.assert_close(result["proxy"], reference.indices, rtol=0, atol=0)


# One process: the same code without collectives


def _model(problem):
    model = TinyNet()
    model.load_state_dict(problem[2])
    return model.eval()


def test_one_process_sharded_scoring_equals_score_and_resumes(problem, tmp_path):
    images, labels, _ = problem
    dataset = make_dataset(images, labels)
    model = _model(problem)
    model.fail_after = 3 * 24  # fails mid-way through the fourth shard
    lines = []
    with pytest.raises(IncompleteScoresError, match="Cause: rank 0 failed: RuntimeError: simulated failure") as failure:
        score_sharded(model, dataset, tmp_path, shard_size=24, batch_size=8, log=lines.append)
    n_shards = len(shard_ranges(len(dataset), 24))
    assert failure.value.missing == list(range(3, n_shards))
    assert lines == [f"scoring {len(dataset):,} examples in {n_shards} shards of 24 on 1 rank(s): 0 done already, "
                     f"{n_shards} to score"]
    model.fail_after, model.seen = None, 0
    scores = score_sharded(model, dataset, tmp_path, shard_size=24, batch_size=8, log=lines.append)
    assert model.seen == len(dataset) - 3 * 24
    assert lines[-1].endswith(f"3 done already, {n_shards - 3} to score")
    expected = proxyfast.score(_model(problem), dataset, batch_size=8)
    for name in ("entropy", "log10_entropy", "labels", "predictions"):
        torch.testing.assert_close(getattr(scores, name), getattr(expected, name), rtol=0, atol=0)
    assert scores.features is None and scores.fingerprint() == expected.fingerprint()
    scores.check_dataset(dataset)  # the merged meta carries the dataset's fingerprint
    assert scores.meta["model"] == expected.meta["model"]

    # A third run finds everything done, scores nothing and merges the same.
    model.seen = 0
    again = score_sharded(model, dataset, tmp_path, shard_size=24, batch_size=8)
    assert model.seen == 0 and again.fingerprint() == scores.fingerprint()


def test_score_start_stop_scores_a_range(problem):
    images, labels, _ = problem
    dataset = make_dataset(images, labels)
    whole = proxyfast.score(_model(problem), dataset, batch_size=16, features=True)
    part = proxyfast.score(_model(problem), dataset, batch_size=16, features=True, start=32, stop=80)
    assert len(part) == 48 and part.meta["dataset"]["range"] == [32, 80]
    assert part.meta["dataset"]["n"] == len(dataset)
    for name in SCORE_FIELDS:
        torch.testing.assert_close(getattr(part, name), getattr(whole, name)[32:80], rtol=0, atol=0)
    with pytest.raises(ValueError, match="start and stop must satisfy 0 <= start < stop"):
        proxyfast.score(_model(problem), dataset, start=10, stop=10)
    with pytest.raises(TypeError, match="stop must be an integer"):
        proxyfast.score(_model(problem), dataset, stop=2.5)


def test_shard_ranges_cover_every_index_once():
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(8, 4) == [(0, 4), (4, 8)]
    assert shard_ranges(3, 100) == [(0, 3)]


def test_work_dir_of_another_run_is_refused(problem, tmp_path):
    images, labels, _ = problem
    dataset = make_dataset(images, labels)
    score_sharded(_model(problem), dataset, tmp_path, shard_size=64, batch_size=16)
    with pytest.raises(ValueError, match=r"holds shards of another scoring run \(differs in num_shards, shard_size\)"):
        score_sharded(_model(problem), dataset, tmp_path, shard_size=32, batch_size=16)
    other = _model(problem)
    with torch.no_grad():
        other.head.bias.add_(1.0)
    with pytest.raises(ValueError, match=r"another scoring run \(differs in model.sha256\)"):
        score_sharded(other, dataset, tmp_path, shard_size=64, batch_size=16)
    with pytest.raises(ValueError, match=r"differs in dataset.fingerprint"):
        score_sharded(_model(problem), make_dataset(255 - images, labels), tmp_path, shard_size=64, batch_size=16)


def test_merge_checks_every_shard(problem, tmp_path):
    images, labels, _ = problem
    dataset = make_dataset(images, labels)
    score_sharded(_model(problem), dataset, tmp_path, shard_size=64, batch_size=16)
    assert len(merge_shards(tmp_path)) == len(dataset)

    os.replace(shard_path(tmp_path, 1), tmp_path / "aside")
    with pytest.raises(IncompleteScoresError, match=r"1 of \d+ shards are missing: 1 \(examples 64\.\.127\)"):
        merge_shards(tmp_path)
    os.replace(tmp_path / "aside", shard_path(tmp_path, 1))

    with open(shard_path(tmp_path, 2), "r+b") as file:  # flip one byte of the entropies
        file.seek(-40, os.SEEK_END)
        byte = file.read(1)
        file.seek(-40, os.SEEK_END)
        file.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="checksum mismatch.*delete it and run the scoring again to rescore shard 2"):
        merge_shards(tmp_path)

    shutil.copyfile(shard_path(tmp_path, 0), shard_path(tmp_path, 2))  # a good file in the wrong place
    with pytest.raises(ValueError, match=r"not shard 2 of this run \(it does not hold examples 128\.\.191\)"):
        merge_shards(tmp_path)

    with pytest.raises(ValueError, match="not a sharded scoring work directory"):
        merge_shards(tmp_path / "nothing")


def test_stale_temporaries_are_cleared_and_remove_shards_leaves_other_files(problem, tmp_path):
    images, labels, _ = problem
    dataset = make_dataset(images, labels)
    work_dir = tmp_path / "work"
    score_sharded(_model(problem), dataset, work_dir, shard_size=64, batch_size=16)
    os.unlink(shard_path(work_dir, 0))
    stale = work_dir / ".shard-000000.pxscores.0123456789ab.tmp"  # a writer killed mid-write
    stale.write_bytes(b"partial")
    score_sharded(_model(problem), dataset, work_dir, shard_size=64, batch_size=16)
    assert not stale.exists() and os.path.isfile(shard_path(work_dir, 0))

    (work_dir / "notes.txt").write_text("mine")
    remove_shards(work_dir)
    assert os.listdir(work_dir) == ["notes.txt"]
    os.unlink(work_dir / "notes.txt")
    score_sharded(_model(problem), dataset, work_dir, shard_size=64, batch_size=16)
    remove_shards(work_dir)
    assert not work_dir.exists()


def test_shard_files_without_a_manifest_are_refused(problem, tmp_path):
    images, labels, _ = problem
    (tmp_path / "shard-000000.pxscores").write_bytes(b"")
    with pytest.raises(ValueError, match="holds shard files but no manifest.json"):
        score_sharded(_model(problem), make_dataset(images, labels), tmp_path, shard_size=64)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"shard_size": 0}, ValueError, "shard_size must be at least 1, got 0"),
        ({"batch_size": 2.0}, ValueError, "batch_size must be an integer, got float"),
        ({"timeout": -1}, ValueError, "timeout must be positive"),
        ({"timeout": "1m"}, TypeError, "timeout must be a number of seconds"),
    ],
)
def test_bad_arguments_are_named(problem, tmp_path, kwargs, error, match):
    images, labels, _ = problem
    with pytest.raises(error, match=match):
        score_sharded(_model(problem), make_dataset(images, labels), tmp_path, **kwargs)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        score_sharded(lambda x: x, make_dataset(images, labels), tmp_path)


def test_select_once_in_one_process_is_select(rng):
    entropies = 10.0 ** rng.uniform(-8, 0.3, size=500)
    proxy = select_once(entropies, **SELECT)
    torch.testing.assert_close(proxy.indices, proxyfast.select(entropies, **SELECT).indices, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"src must be a rank in \[0, 1\)"):
        select_once(entropies, src=1, **SELECT)


# The command line under torchrun


def test_score_command_under_torchrun_equals_one_process(rng, tmp_path):
    from proxyfast.data import digits
    from proxyfast.models import CifarResNet
    from proxyfast.pretrain import save_checkpoint

    torch.manual_seed(int(rng.integers(2**31)))
    model = CifarResNet(depth=8, num_classes=10, in_channels=1, width=4)
    checkpoint = tmp_path / "baseline.ckpt"
    save_checkpoint(checkpoint, {"run": {"model": {"class": "CifarResNet", "config": model.config()}},
                                 "model": model.state_dict()})
    out = tmp_path / "train.pxscores"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "proxyfast", "score", "--checkpoint", str(checkpoint), "--dataset", "digits", "--out", str(out),
        "--shard-size", "256", "--batch-size", "128", "--device", "cpu", "--threads", "1", "--quiet",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    dataset = digits(train=True)
    n_shards = len(shard_ranges(len(dataset), 256))
    assert finished.stdout.count(f"{n_shards} shards of 256 on 2 rank(s): 0 done already") == 1  # rank 0 only
    assert "on 2 process(es)" in finished.stdout
    assert not os.path.exists(f"{out}.shards")  # merged, then removed

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = proxyfast.score(model.eval(), dataset, batch_size=128)
    finally:
        torch.set_num_threads(threads)
    scores = proxyfast.Scores.load(out, dataset=dataset)
    for name in ("entropy", "log10_entropy", "labels", "predictions"):
        torch.testing.assert_close(getattr(scores, name), getattr(expected, name), rtol=0, atol=0)


# Search and final training under DistributedDataParallel

# (algo, order, batch-norm mode, architecture step, config overrides). The train-mode
# weight step is compared with the mean of two single-process steps, so it must not clip
# (clipping the mean is not the mean of the clipped halves).
NO_CLIP = {"grad_clip": 1e9}
STEP_CASES = [("darts", 1, "eval", True, {}), ("pcdarts", 1, "eval", True, {}), ("darts", 2, "eval", True, {}),
              ("darts", 1, "train", True, {}), ("darts", 1, "train", False, NO_CLIP)]
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One two-rank job for all the DDP tests (starting processes is the slow part): one
    search step per case of STEP_CASES on global batches of 8 (4 per rank), then a
    one-epoch search and a one-epoch final training."""
    from conftest import BASE_SEED

    rng = np.random.default_rng([BASE_SEED, zlib.crc32(b"test_distributed.py::ddp_run")])
    out_dir = tmp_path_factory.mktemp("ddp")
    seed = int(rng.integers(2**31))

    def batch(n):
        images = torch.from_numpy(rng.random((n, 3, 8, 8), dtype=np.float32))
        return images, torch.from_numpy(rng.integers(0, 5, size=n))

    train_batch, val_batch = batch(8), batch(8)
    images = rng.integers(0, 256, size=(32, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, size=32)
    codes = run_ranks(ddp_suite, 2, str(out_dir), seed, STEP_CASES, train_batch, val_batch, images, labels,
                      timeout=300)
    assert codes == [0, 0]
    return {"seed": seed, "train_batch": train_batch, "val_batch": val_batch, "out_dir": out_dir,
            "ranks": load_results(out_dir, 2)}


def single_process_step(config, train_batch, val_batch, bn_mode, update_arch=True):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return one_search_step(config, train_batch, val_batch, bn_mode, update_arch)
    finally:
        torch.set_num_threads(threads)


def assert_steps_close(got, expected, rtol, atol, skip=()):
    assert len(got["weight_grads"]) == len(expected["weight_grads"]) > 0
    for name in ("weight_grads", "arch_grads"):
        assert len(got[name]) == len(expected[name])
        for index, (a, b) in enumerate(zip(got[name], expected[name])):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{name}[{index}]: {m}")
    assert got["params"].keys() == expected["params"].keys()
    for key in expected["params"]:
        if not key.endswith(skip):
            torch.testing.assert_close(got["params"][key], expected["params"][key], rtol=rtol, atol=atol,
                                       msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("algo, order", [("darts", 1), ("pcdarts", 1)])
def test_ddp_search_step_equals_one_process_with_the_global_batch(ddp_run, algo, order):
    # Batch norm in eval mode (running statistics): each example's loss is then
    # independent of the others, so the step on two ranks of 4 examples each is the
    # step on the global batch of 8, up to the order of the float sums (hence 1e-5).
    rank0, rank1 = (results["steps"][algo, order, "eval", True] for results in ddp_run["ranks"])
    # Both ranks hold the same gradients and the same updated weights and alphas, bit for bit.
    assert_steps_close(rank1, rank0, rtol=0, atol=0)
    config = search_config(algo, order, ddp_run["seed"])
    expected = single_process_step(config, ddp_run["train_batch"], ddp_run["val_batch"], "eval")
    assert_steps_close(rank0, expected, rtol=1e-5, atol=1e-6)
    # Each rank reports the loss of its own half; their mean is the global batch's.
    for name in ("loss", "val_loss"):
        torch.testing.assert_close((rank0[name] + rank1[name]) / 2, expected[name], rtol=1e-5, atol=1e-6)
    # The step moved the alphas: the comparison is not of untouched values.
    assert all(grad.abs().max() > 0 for grad in expected["arch_grads"])
    initial = build_search(config, 3, 5, 4).model.alphas_normal.detach()
    assert not torch.equal(rank0["params"]["alphas_normal"], initial)


def test_ddp_second_order_step_equals_one_process_with_the_global_batch(ddp_run):
    rank0, rank1 = (results["steps"]["darts", 2, "eval", True] for results in ddp_run["ranks"])
    assert_steps_close(rank1, rank0, rtol=0, atol=0)  # the ranks agree with each other
    config = search_config("darts", 2, ddp_run["seed"])
    expected = single_process_step(config, ddp_run["train_batch"], ddp_run["val_batch"], "eval")
    assert_steps_close(rank0, expected, rtol=1e-5, atol=1e-6)


def test_ddp_search_step_in_train_mode_averages_the_ranks_own_batch_norm_steps(ddp_run):
    # In train mode batch norm normalises by each rank's own batch (plain DDP; PyTorch's
    # SyncBatchNorm needs GPUs), so the DDP gradients are the mean of the gradients of
    # the two halves, each computed as a batch of its own, not those of the global batch.
    # The running statistics are each rank's own (DDP broadcasts rank 0's at each forward
    # pass through it), so they are left out of the comparisons.
    def halves(update_arch, **overrides):
        config = search_config("darts", 1, ddp_run["seed"], **overrides)
        return [single_process_step(config, *(tuple(t[r * 4:(r + 1) * 4] for t in batch)
                                              for batch in (ddp_run["train_batch"], ddp_run["val_batch"])),
                                    "train", update_arch) for r in range(2)]

    def mean(values):
        return (values[0] + values[1]) / 2

    # The architecture gradient, taken before anything moves.
    rank0, rank1 = (results["steps"]["darts", 1, "train", True] for results in ddp_run["ranks"])
    assert_steps_close(rank1, rank0, rtol=0, atol=0, skip=BN_BUFFERS)
    single = halves(True)
    assert len(rank0["arch_grads"]) == len(single[0]["arch_grads"]) > 0
    for index, got in enumerate(rank0["arch_grads"]):
        torch.testing.assert_close(got, mean([half["arch_grads"][index] for half in single]), rtol=1e-5, atol=1e-6)

    # The weight step alone (the architecture step would move the alphas apart in the
    # two single-process halves): gradients and updated weights are the halves' means.
    rank0, rank1 = (results["steps"]["darts", 1, "train", False] for results in ddp_run["ranks"])
    assert rank0["arch_grads"] == []
    assert_steps_close(rank1, rank0, rtol=0, atol=0, skip=BN_BUFFERS)
    single = halves(False, **NO_CLIP)
    for index, got in enumerate(rank0["weight_grads"]):
        torch.testing.assert_close(got, mean([half["weight_grads"][index] for half in single]), rtol=1e-5,
                                   atol=1e-6, msg=lambda m: f"weight_grads[{index}]: {m}")
    for key, got in rank0["params"].items():
        if not key.endswith(BN_BUFFERS):
            torch.testing.assert_close(got, mean([half["params"][key] for half in single]), rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"{key}: {m}")


def test_ddp_search_and_final_training_keep_the_ranks_in_step(ddp_run):
    rank0, rank1 = ddp_run["ranks"]
    # Weights and alphas identical on both ranks after a search epoch with per-rank
    # augmentation, and rank 0 alone wrote the outputs.
    assert rank0["search"]["genotype"] == rank1["search"]["genotype"]
    assert rank0["search"]["params"].keys() == rank1["search"]["params"].keys()
    for name, value in rank0["search"]["params"].items():
        torch.testing.assert_close(rank1["search"]["params"][name], value, rtol=0, atol=0, msg=name)
    assert "checkpoint" in rank0["search"]["files"] and rank1["search"]["files"] == []
    log = json.loads((ddp_run["out_dir"] / "search" / "search_log.json").read_text())
    assert log["world_size"] == 2
    # The final training's weights agree too.
    assert rank0["train"].keys() == rank1["train"].keys()
    for name, value in rank0["train"].items():
        torch.testing.assert_close(rank1["train"][name], value, rtol=0, atol=0, msg=name)


def test_sharded_proxy_loaders_make_up_the_global_batch():
    # What makes the DDP step the global batch's: rank r's batch holds positions
    # r, r + 2, ... of the epoch's order, so the ranks' first batches of 4 together are
    # the first batch of 8 of one process.
    from proxyfast.loaders import torch_loader

    from _loader_data import index_dataset, index_proxy

    dataset, proxy = index_dataset(200), index_proxy(200, 60)
    for part in ("train", "val"):
        single = next(iter(torch_loader(dataset, proxy, part, batch_size=8, seed=3, world_size=1, rank=0)))
        ranks = [next(iter(torch_loader(dataset, proxy, part, batch_size=4, seed=3, world_size=2, rank=r)))
                 for r in range(2)]
        pixels = torch.cat([images for images, _ in ranks])
        assert sorted(map(bytes, pixels.numpy())) == sorted(map(bytes, single[0].numpy()))


def test_score_command_with_a_work_dir_resumes_in_one_process(rng, tmp_path, capsys):
    from proxyfast.cli import main
    from proxyfast.data import digits
    from proxyfast.models import CifarResNet
    from proxyfast.pretrain import save_checkpoint

    torch.manual_seed(int(rng.integers(2**31)))
    model = CifarResNet(depth=8, num_classes=10, in_channels=1, width=4)
    checkpoint = tmp_path / "baseline.ckpt"
    save_checkpoint(checkpoint, {"run": {"model": {"class": "CifarResNet", "config": model.config()}},
                                 "model": model.state_dict()})
    out, work_dir = tmp_path / "train.pxscores", tmp_path / "work"
    argv = ["score", "--checkpoint", str(checkpoint), "--dataset", "digits", "--out", str(out), "--work-dir",
            str(work_dir), "--shard-size", "512", "--batch-size", "256", "--device", "cpu", "--quiet"]
    assert main(argv + ["--keep-shards"]) == 0
    assert "3 shards of 512 on 1 rank(s): 0 done already, 3 to score" in capsys.readouterr().out
    first = proxyfast.Scores.load(out)
    os.unlink(shard_path(work_dir, 1))
    assert main(argv) == 0
    assert "2 done already, 1 to score" in capsys.readouterr().out
    assert not work_dir.exists()  # merged, then removed
    again = proxyfast.Scores.load(out, dataset=digits(train=True))
    assert again.fingerprint() == first.fingerprint()
    torch.testing.assert_close(again.predictions, first.predictions, rtol=0, atol=0)


def test_ranks_that_disagree_are_named():
    from proxyfast.distributed import _check_same_run

    base = {"n": 10, "model": {"sha256": "a", "name": "M"}, "scoring": {"batch_size": 4}}
    _check_same_run([base, dict(base)])
    other = {**base, "model": {"sha256": "b", "name": "M"}}
    with pytest.raises(ValueError, match=r"rank 2 is not scoring what rank 0 is \(differs in model.sha256\)"):
        _check_same_run([base, base, other])


def test_search_command_under_torchrun_runs_one_search_on_both_ranks(tmp_path):
    from proxyfast.data import digits

    out = tmp_path / "search"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "proxyfast", "search", "--dataset", "digits", "--algo", "darts", "--epochs", "1",
        "--batch-size", "16", "--channels", "4", "--layers", "3", "--device", "cpu", "--threads", "1",
        "--quiet", "--no-plots", "--out", str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("darts search (order 1) on digits") == 1  # rank 0 alone prints
    with open(out / "search_log.json") as file:
        log = json.load(file)
    assert log["world_size"] == 2
    assert len(log["epochs"]) == 1
    # Each rank takes every other example of the weights' half (padded to an equal share),
    # so an epoch has the steps of half the data, not of all of it.
    half = len(digits(train=True)) // 2
    per_rank = -(-half // 2)
    assert log["weights_examples"] == 2 * per_rank
    assert log["steps_per_epoch"] == -(-per_rank // 16)
    proxyfast.nas.Genotype.parse((out / "genotype.txt").read_text())
