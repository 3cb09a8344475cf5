"""The DARTS / PC-DARTS search loop: steps, warm-up, checkpoints and exact resume, input
checks, the output files, the plots and the ``proxyfast search`` command."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast import nas
from proxyfast.cli import main
from proxyfast.data import ImageArrayDataset
from proxyfast.nas import (
    DARTS_V2,
    PC_DARTS,
    Genotype,
    SearchConfig,
    build_search,
    plot_alpha_evolution,
    plot_cell,
    search,
    search_step,
)
from proxyfast.pretrain import load_checkpoint
from proxyfast.scoring import Scores

# Two nodes per cell instead of four: five edges instead of fourteen, three times faster.
TINY = dict(channels=4, layers=3, steps=2, multiplier=2, batch_size=8, epochs=2)
PNG = b"\x89PNG\r\n\x1a\n"


def tiny_dataset(rng, n=40, size=8, name="tiny"):
    images = rng.integers(0, 256, size=(n, size, size, 1), dtype=np.uint8)
    return ImageArrayDataset(images, rng.integers(0, 10, size=n), name=name, classes=[str(c) for c in range(10)])


def tiny_proxy(n, k, seed=0):
    scores = Scores.from_log10_entropy(np.random.default_rng(seed).normal(-2, 1, size=n))
    return proxyfast.select(scores, k=k, method="p1", seed=seed, bin_width=0.5)


def batch(rng, size=8, classes=10):
    images = torch.from_numpy(rng.random((size, 1, 8, 8), dtype=np.float32))
    return images, torch.from_numpy(rng.integers(0, classes, size=size))


@pytest.fixture
def seed(rng):
    return int(rng.integers(2**31))


def state_tensors(state):
    return {name: value.detach().clone() for name, value in state.model.state_dict().items()}


# --- build_search and search_step -------------------------------------------------------


@pytest.mark.parametrize("algo", ["darts", "pcdarts"])
def test_a_step_moves_weights_and_alphas_and_the_learning_rate(algo, rng, seed):
    config = SearchConfig.for_algo(algo, seed=seed, warmup_epochs=0, **TINY)
    state = build_search(config, in_channels=1, num_classes=10, steps_per_epoch=2)
    before = state_tensors(state)
    train_loss, val_loss = search_step(state, batch(rng), batch(rng))
    assert train_loss.shape == () and val_loss.shape == ()
    assert math.isfinite(train_loss.item()) and math.isfinite(val_loss.item())
    after = state.model.state_dict()
    for name in ("alphas_normal", "alphas_reduce", "stem.0.weight", "classifier.weight"):
        assert not torch.equal(before[name], after[name]), name
    if algo == "pcdarts":
        assert not torch.equal(before["betas_normal"], after["betas_normal"])
    # The cosine schedule spans epochs * steps_per_epoch steps, from lr to lr_min.
    total = config.epochs * 2
    expected = config.lr_min + (config.lr - config.lr_min) * (1 + math.cos(math.pi / total)) / 2
    assert state.lr == pytest.approx(expected)
    for _ in range(total - 1):
        search_step(state, batch(rng), batch(rng))
    assert state.lr == pytest.approx(config.lr_min)


def test_the_same_seed_builds_the_same_supernet_and_leaves_the_global_rng_alone(seed):
    config = SearchConfig(seed=seed, **TINY)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    first = build_search(config, 1, 10, 2).model.state_dict()
    assert torch.equal(torch.rand(3), expected)
    second = build_search(config, 1, 10, 2).model.state_dict()
    third = build_search(dataclasses.replace(config, seed=seed + 1), 1, 10, 2).model.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["alphas_normal"], third["alphas_normal"])


def test_a_step_without_the_architecture_leaves_the_alphas(rng, seed):
    state = build_search(SearchConfig(seed=seed, **TINY), 1, 10, 2)
    alphas = [p.detach().clone() for p in state.model.arch_parameters()]
    weight = state.model.classifier.weight.detach().clone()
    train_loss, val_loss = search_step(state, batch(rng), None, update_arch=False)
    assert math.isnan(val_loss.item()) and math.isfinite(train_loss.item())
    assert all(torch.equal(a, p) for a, p in zip(alphas, state.model.arch_parameters()))
    assert not torch.equal(weight, state.model.classifier.weight)
    with pytest.raises(ValueError, match="val_batch"):
        search_step(state, batch(rng), None)


def test_a_second_order_step_runs_and_differs_from_the_first_order(rng, seed):
    train, val = batch(rng), batch(rng)
    alphas = {}
    for order in (1, 2):
        state = build_search(SearchConfig(order=order, seed=seed, **TINY), 1, 10, 2)
        search_step(state, train, val)  # the first step has no momentum yet; the second uses it
        search_step(state, train, val)
        alphas[order] = state.model.alphas_normal.detach().clone()
    assert not torch.equal(alphas[1], alphas[2])


def test_gradient_clipping_bounds_the_weight_step(rng, seed):
    # With momentum 0 and no weight decay, the first SGD step is lr * clipped gradient.
    config = SearchConfig(seed=seed, momentum=0.0, weight_decay=0.0, grad_clip=1e-3, lr=1.0, lr_min=0.0, **TINY)
    state = build_search(config, 1, 10, 2)
    before = [p.detach().clone() for p in state.optimizer.param_groups[0]["params"]]
    search_step(state, batch(rng), None, update_arch=False)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(state.optimizer.param_groups[0]["params"], before)))
    assert moved.item() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("stem_stride, size, cells", [(1, 28, (28, 14, 7)), (2, 28, (14, 7, 4)), (2, 8, (4, 2, 1))])
def test_the_stem_stride_scales_every_cell(stem_stride, size, cells, rng, seed):
    state = build_search(SearchConfig(seed=seed, stem_stride=stem_stride, **TINY), 1, 10, 2)
    model = state.model
    sizes = []
    hooks = [cell.register_forward_hook(lambda module, args, out: sizes.append(out.shape[-1])) for cell in model.cells]
    images = torch.from_numpy(rng.random((2, 1, size, size), dtype=np.float32))
    assert model(images).shape == (2, 10)
    for hook in hooks:
        hook.remove()
    assert tuple(sizes) == cells  # normal, reduction, reduction (3 cells: reductions at 1 and 2)
    with pytest.raises(ValueError, match="stem_stride"):
        nas.SearchNetwork(channels=4, layers=3, in_channels=1, stem="imagenet", stem_stride=2)


def test_the_published_settings():
    darts, pc = SearchConfig.for_algo("darts"), SearchConfig.for_algo("pcdarts")
    assert (darts.batch_size, darts.lr, darts.lr_min, darts.momentum) == (64, 0.025, 0.001, 0.9)
    assert darts.weight_decay == 3e-4
    assert (darts.arch_lr, darts.arch_weight_decay, darts.grad_clip, darts.partial_channels) == (3e-4, 1e-3, 5.0, None)
    assert (pc.batch_size, pc.lr, pc.arch_lr, pc.partial_channels) == (256, 0.1, 6e-4, 4)
    assert (pc.warmup_epochs, pc.order) == (15, 1)
    assert SearchConfig.for_algo("pcdarts", epochs=30).warmup_epochs == 15


@pytest.mark.parametrize("overrides, message", [
    (dict(algo="enas"), "algo"),
    (dict(order=3), "order"),
    (dict(batch_size=1), "batch_size"),
    (dict(epochs=0), "epochs"),
    (dict(lr_min=0.1), "lr_min"),
    (dict(train_portion=1.0), "train_portion"),
    (dict(momentum=1.0), "momentum"),
    (dict(stem="imagenet", stem_stride=2), "stem_stride"),
    (dict(partial_channels=4), "pcdarts"),
    (dict(algo="pcdarts"), "partial_channels"),
    (dict(algo="pcdarts", partial_channels=4, order=2), "first-order"),
    (dict(algo="pcdarts", partial_channels=3, channels=16), "multiple"),
    (dict(warmup_epochs=50), "warmup_epochs"),
])
def test_bad_settings_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**overrides)


def test_bad_types_are_type_errors():
    with pytest.raises(TypeError, match="channels"):
        SearchConfig(channels=4.0)
    with pytest.raises(TypeError, match="config"):
        build_search({"channels": 4}, 1, 10, 2)


# --- the search loop --------------------------------------------------------------------


def test_warm_up_epochs_take_no_architecture_step(rng, seed, tmp_path):
    dataset = tiny_dataset(rng, n=32)
    config = SearchConfig.for_algo("pcdarts", seed=seed, warmup_epochs=1, **TINY)
    result = search(dataset, None, config, tmp_path, progress=False, log=None, plots=False)
    log = json.loads((tmp_path / "search_log.json").read_text())
    first, second = log["epochs"]
    assert not first["arch_updated"] and first["arch_loss"] is None
    assert second["arch_updated"] and math.isfinite(second["arch_loss"])
    for key in ("alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"):
        assert first[key] == log["initial"][key], key
        assert second[key] != first[key], key
    assert str(result.genotype) == second["genotype"]


def test_a_search_on_a_proxy_uses_its_two_halves(rng, seed, tmp_path):
    dataset = tiny_dataset(rng, n=60)
    proxy = tiny_proxy(60, 25, seed=seed % 1000)
    config = SearchConfig(seed=seed, train_portion=0.6, **TINY)
    proxy.save(tmp_path / "p.proxyset")
    result = search(dataset, str(tmp_path / "p.proxyset"), config, tmp_path / "out", progress=False, log=None)
    log = json.loads((tmp_path / "out" / "search_log.json").read_text())
    assert (log["weights_examples"], log["architecture_examples"]) == (15, 10)
    assert log["steps_per_epoch"] == 2  # batches of 8 and 7
    assert log["proxy"]["fingerprint"] == proxy.fingerprint and log["proxy"]["k"] == 25
    assert log["finished"] and len(log["epochs"]) == 2 == len(result.history)
    for record in log["epochs"]:
        assert 0 <= record["train_accuracy"] <= 1 and 0 <= record["val_accuracy"] <= 1
        for row in record["alphas_normal"]:
            assert sum(row) == pytest.approx(1, abs=1e-5)
    assert Genotype.parse((tmp_path / "out" / "genotype.txt").read_text()) == result.genotype
    for name in ("alphas_normal", "alphas_reduce", "cell_normal", "cell_reduce"):
        assert (tmp_path / "out" / f"{name}.png").read_bytes().startswith(PNG)


def test_the_whole_training_set_is_split_the_same_way(rng, seed, tmp_path):
    dataset = tiny_dataset(rng, n=30)
    search(dataset, None, SearchConfig(seed=seed, epochs=1, **{k: v for k, v in TINY.items() if k != "epochs"}),
           tmp_path, progress=False, log=None, plots=False)
    log = json.loads((tmp_path / "search_log.json").read_text())
    assert (log["weights_examples"], log["architecture_examples"]) == (15, 15)
    assert log["proxy"]["method"] == "full"


def test_the_epoch_evaluation_leaves_the_supernet_as_it_was(rng, seed):
    from proxyfast.nas.search import _Batches, _evaluate

    dataset = tiny_dataset(rng, n=17)  # batches of 8, 8 and 1; the last one is left out
    state = build_search(SearchConfig(seed=seed, **TINY), 1, 10, 2)
    search_step(state, batch(rng), batch(rng))  # running averages away from their initial values
    before = state_tensors(state)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    loss, accuracy = _evaluate(state.model, loader, _Batches(torch.device("cpu"), pad=1))
    assert all(torch.equal(value, before[name]) for name, value in state.model.state_dict().items())
    assert state.model.training
    inputs = torch.from_numpy(dataset.images[:16]).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(dataset.labels[:16])
    with torch.no_grad():  # batch statistics, batch by batch, unaugmented
        logits = torch.cat([state.model(inputs[:8]), state.model(inputs[8:])])
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    assert accuracy == (logits.argmax(1) == labels).float().mean().item()


def test_a_proxy_of_another_dataset_is_a_clear_error(rng, tmp_path):
    dataset = tiny_dataset(rng, n=40)
    with pytest.raises(ValueError, match="another dataset"):
        search(dataset, tiny_proxy(50, 20), SearchConfig(**TINY), tmp_path, progress=False, log=None, plots=False)
    # Same size, other data: caught through the scores the proxy was drawn from.
    proxy = tiny_proxy(40, 20)
    scores = Scores.from_log10_entropy(np.random.default_rng(0).normal(-2, 1, size=40))
    scores = scores.replace(meta={"dataset": {"fingerprint": "sha256:" + "0" * 64}})
    with pytest.raises(ValueError, match="another dataset"):
        search(dataset, proxy, SearchConfig(**TINY), tmp_path, progress=False, log=None, scores=scores, plots=False)
    with pytest.raises(ValueError, match="different scores"):
        search(dataset, proxy, SearchConfig(**TINY), tmp_path, progress=False, log=None,
               scores=Scores.from_log10_entropy(np.zeros(40)), plots=False)
    # Same size, other data, no scores given: the proxy file itself names its dataset.
    other = tiny_dataset(rng, n=40, name="other")
    other_scores = Scores.from_log10_entropy(np.random.default_rng(1).normal(-2, 1, size=40))
    other_scores = other_scores.replace(meta={"dataset": {"fingerprint": other.fingerprint()}})
    path = tmp_path / "other.proxyset"
    proxyfast.select(other_scores, k=20, method="p1", seed=0).save(path)
    with pytest.raises(ValueError, match="scores of another dataset"):
        search(dataset, path, SearchConfig(**TINY), tmp_path / "run", progress=False, log=None, plots=False)
    with pytest.raises(TypeError, match="proxy"):
        search(dataset, [1, 2, 3], SearchConfig(**TINY), tmp_path, progress=False, log=None, plots=False)
    assert not (tmp_path / "search.ckpt").exists()


def test_halves_too_small_for_a_step_are_a_clear_error(rng, tmp_path):
    dataset = tiny_dataset(rng, n=40)
    with pytest.raises(ValueError, match="architecture half"):
        search(dataset, tiny_proxy(40, 5), SearchConfig(train_portion=0.9, **TINY), tmp_path, progress=False,
               log=None, plots=False)


def test_a_checkpoint_of_another_search_is_a_clear_error(rng, seed, tmp_path):
    dataset = tiny_dataset(rng, n=24)
    config = SearchConfig(seed=seed, **{**TINY, "epochs": 1})
    search(dataset, None, config, tmp_path, progress=False, log=None, plots=False)
    with pytest.raises(ValueError, match=r"differs in config\.channels, config\.epochs"):
        search(dataset, None, dataclasses.replace(config, channels=8, epochs=2), tmp_path, progress=False,
               log=None, plots=False)
    with pytest.raises(ValueError, match=r"differs in .*proxy\.fingerprint.*proxy\.method"):
        search(dataset, tiny_proxy(24, 20), config, tmp_path, progress=False, log=None, plots=False)
    other = tiny_dataset(np.random.default_rng(seed), n=24, name="other")
    with pytest.raises(ValueError, match=r"differs in dataset\.fingerprint, dataset\.name"):
        search(other, None, config, tmp_path, progress=False, log=None, plots=False)
    # Without resuming, it is overwritten; the implementation is not part of the identity.
    search(other, None, config, tmp_path, progress=False, log=None, resume=False, plots=False)
    search(other, None, dataclasses.replace(config, impl="reference"), tmp_path, progress=False, log=None, plots=False)


def test_a_finished_search_resumes_to_the_same_result(rng, seed, tmp_path):
    dataset = tiny_dataset(rng, n=24)
    config = SearchConfig(seed=seed, **{**TINY, "epochs": 1})
    first = search(dataset, None, config, tmp_path, progress=False, log=None, plots=False)
    lines = []
    again = search(dataset, None, config, tmp_path, progress=False, log=lines.append, plots=False)
    assert again.genotype == first.genotype and again.history == first.history
    assert any("resumed" in line for line in lines)


_CHILD = textwrap.dedent("""
    import importlib, sys, time
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from proxyfast.data import ImageArrayDataset
    from proxyfast.nas.search import SearchConfig, search
    search_module = importlib.import_module("proxyfast.nas.search")

    n, seed, out, block_at = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
    dataset = ImageArrayDataset(images, rng.integers(0, 10, size=n), name="tiny", classes=list("0123456789"))
    step, calls = search_module._step, [0]

    def blocking_step(*args):
        calls[0] += 1
        if calls[0] == block_at:  # past a mid-epoch checkpoint: wait to be killed
            print("ready", flush=True)
            time.sleep(600)
        return step(*args)

    search_module._step = blocking_step
    config = SearchConfig(channels=4, layers=3, steps=2, multiplier=2, batch_size=8, epochs=2, seed=seed)
    search(dataset, None, config, out, checkpoint_every=2, progress=False, log=None, plots=False)
""")


def test_kill_during_an_epoch_and_resume_gives_the_uninterrupted_result(rng, tmp_path):
    n, seed = 40, int(rng.integers(1000))  # 20 examples a half: 3 steps an epoch (8, 8, 4)
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Steps 1..5: checkpoints after step 2 (mid-epoch 1) and 3 (end of epoch 1) and 4
    # (mid-epoch 2); step 5 blocks, and its progress past the checkpoint is lost.
    child = subprocess.Popen([sys.executable, str(script), str(n), str(seed), str(out), "5"], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        saved = load_checkpoint(out / "search.ckpt")
        assert (saved["epoch"], saved["position"], saved["step"]) == (1, 1, 4)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data_rng = np.random.default_rng(seed)  # the child's dataset
        images = data_rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
        dataset = ImageArrayDataset(images, data_rng.integers(0, 10, size=n), name="tiny", classes=list("0123456789"))
        config = SearchConfig(channels=4, layers=3, steps=2, multiplier=2, batch_size=8, epochs=2, seed=seed)
        lines = []
        resumed = search(dataset, None, config, out, progress=False, log=lines.append, plots=False)
        reference = search(dataset, None, config, tmp_path / "uninterrupted", progress=False, log=None, plots=False)
    finally:
        torch.set_num_threads(threads)
    assert any("resumed" in line and "step 1 of epoch 2" in line for line in lines)
    expected = reference.state.model.state_dict()
    for name, value in resumed.state.model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert resumed.genotype == reference.genotype
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in reference.history]
    exp_state = reference.state.architect.state_dict()["state"]
    for key, value in resumed.state.architect.state_dict()["state"].items():
        assert all(torch.equal(v, exp_state[key][k]) for k, v in value.items())


# --- plots and the command line ---------------------------------------------------------


@pytest.mark.parametrize("genotype, cell", [(DARTS_V2, "normal"), (PC_DARTS, "reduce"), ("DARTS_V1", "normal")])
def test_cell_pictures(genotype, cell, tmp_path):
    plot_cell(genotype, tmp_path / "cell.png", cell)
    assert (tmp_path / "cell.png").read_bytes().startswith(PNG)


def test_plot_input_errors(tmp_path):
    with pytest.raises(ValueError, match="cell"):
        plot_cell(DARTS_V2, tmp_path / "c.png", "both")
    with pytest.raises(ValueError, match="not a genotype string"):
        plot_cell("Genotype(normal=[", tmp_path / "c.png")
    with pytest.raises(ValueError, match="edges x operations"):
        plot_alpha_evolution([[[0.5, 0.5]] * 14], tmp_path / "a.png")
    with pytest.raises(ValueError, match="do not make a cell"):
        plot_alpha_evolution([[[1 / 8] * 8] * 13], tmp_path / "a.png")
    with pytest.raises(ValueError, match="empty"):
        plot_alpha_evolution([], tmp_path / "a.png")
    assert not list(tmp_path.iterdir())


def test_the_search_command_end_to_end(tmp_path, capsys):
    from proxyfast.data import digits

    dataset = digits(train=True)
    tiny_proxy(len(dataset), 40).save(tmp_path / "digits.proxyset")
    out = tmp_path / "search"
    argv = ["search", "--dataset", "digits", "--proxy", str(tmp_path / "digits.proxyset"), "--algo", "darts",
            "--epochs", "1", "--batch-size", "8", "--channels", "4", "--layers", "2", "--threads", "1",
            "--checkpoint-every", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "genotype: Genotype(" in printed
    genotype = Genotype.parse((out / "genotype.txt").read_text())
    assert f"genotype: {genotype}" in printed
    log = json.loads((out / "search_log.json").read_text())
    assert log["config"]["channels"] == 4 and log["dataset"]["name"] == "digits-train"
    assert log["genotype"] == str(genotype) and log["finished"]
    for name in ("alphas_normal", "alphas_reduce", "cell_normal", "cell_reduce"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG)
    # Settings that cannot search and a missing proxy file are one-line errors.
    assert main(["search", "--dataset", "digits", "--proxy", str(tmp_path / "digits.proxyset"), "--algo", "pcdarts",
                 "--epochs", "5", "--out", str(tmp_path / "x")]) == 2
    assert "warmup_epochs (15) must be less than epochs (5)" in capsys.readouterr().err
    assert main(["search", "--dataset", "digits", "--proxy", str(tmp_path / "missing.proxyset"), "--algo", "darts",
                 "--out", str(tmp_path / "x")]) == 2
    assert "missing.proxyset" in capsys.readouterr().err
