"""The paper's final-training recipes: presets, schedules, normalisation, best and final
accuracy, the auxiliary head's pooling, and ``proxyfast train --recipe``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from proxyfast.cli.main import main
from proxyfast.data import digits
from proxyfast.data.arrays import ImageArrayDataset
from proxyfast.nas import DARTS_V2, EvalNetwork, SearchConfig, search
from proxyfast.nas.network import AuxiliaryPooling
from proxyfast.nas.train import (
    RECIPES,
    best_accuracy,
    channel_statistics,
    epoch_lr,
    recipe_arguments,
    train_network,
)

# The published settings, read from the proxy-data paper's code (Na et al., IJCAI 2021,
# github.com/nabk89/NAS-with-Proxy-data): train.py's argument defaults, run with --auxiliary
# and --cutout as DARTS reports (Liu et al., ICLR 2019, appendix A.2: auxiliary 0.4,
# cutout 16); train_imagenet.py's defaults, --lr_scheduler linear, with its 5-epoch warm-up
# and its transforms.Normalize constants.
PUBLISHED = {
    "cifar": dict(epochs=600, channels=36, layers=20, batch_size=96, lr=0.025, momentum=0.9, weight_decay=3e-4,
                  grad_clip=5.0, auxiliary_weight=0.4, drop_path_prob=0.2, cutout=16, lr_schedule="cosine",
                  warmup_epochs=0, label_smoothing=0.0, stem="cifar", stem_stride=1, mean=None, std=None,
                  eval_every=1),
    "imagenet": dict(epochs=250, channels=48, layers=14, batch_size=640, lr=0.1, momentum=0.9, weight_decay=3e-5,
                     grad_clip=5.0, auxiliary_weight=0.4, drop_path_prob=0.0, cutout=0, lr_schedule="linear",
                     warmup_epochs=5, label_smoothing=0.1, stem="imagenet", stem_stride=1,
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), eval_every=1),
}


def pattern_dataset(rng, n=48, size=8, channels=3, classes=3):
    templates = rng.uniform(0, 255, size=(classes, size, size, channels))
    labels = rng.integers(0, classes, size=n)
    images = np.clip(0.6 * templates[labels] + rng.normal(0, 40, size=(n, size, size, channels)), 0, 255)
    return ImageArrayDataset(images.astype(np.uint8), labels, "patterns", [str(c) for c in range(classes)])


# ---------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_recipe_holds_the_published_settings(name):
    assert RECIPES[name] == PUBLISHED[name]


def test_recipe_arguments_take_overrides_and_refuse_unknown_names():
    settings = recipe_arguments("imagenet", epochs=7, channels=8)
    assert settings == {**PUBLISHED["imagenet"], "epochs": 7, "channels": 8}
    assert RECIPES["imagenet"]["epochs"] == 250  # the preset itself is untouched
    with pytest.raises(ValueError, match="recipe must be one of cifar, imagenet, got 'mnist'"):
        recipe_arguments("mnist")
    with pytest.raises(TypeError, match="no argument learning_rate"):
        recipe_arguments("cifar", learning_rate=0.1)


# ---------------------------------------------------------------------------- schedules


def paper_cosine(lr: float, epochs: int) -> list[float]:
    """train.py's loop: CosineAnnealingLR(optimizer, epochs), ``scheduler.step()`` at the
    start of every epoch, then the epoch trains at the rate it set."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(epochs))
    rates = []
    for _ in range(epochs):
        optimizer.step()  # keeps torch from warning about the order; no gradient, no change
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def paper_linear(lr: float, epochs: int, batch_size: int) -> list[float]:
    """train_imagenet.py's adjust_lr, and its warm-up over the first 5 epochs when the
    batch is larger than 256, written out as its loop runs them."""
    rates = []
    for epoch in range(epochs):
        if epochs - epoch > 5:
            rate = lr * (epochs - 5 - epoch) / (epochs - 5)
        else:
            rate = lr * (epochs - epoch) / ((epochs - 5) * 5)
        if epoch < 5 and batch_size > 256:
            rate = lr * (epoch + 1) / 5.0
        rates.append(rate)
    return rates


@pytest.mark.parametrize("epochs", [1, 2, 7, 600])
def test_the_cosine_schedule_is_the_papers_at_every_epoch(epochs):
    expected = paper_cosine(0.025, epochs)
    assert [epoch_lr("cosine", 0.025, e, epochs) for e in range(epochs)] == pytest.approx(expected, rel=1e-12,
                                                                                         abs=1e-15)
    assert expected[-1] == pytest.approx(0.0, abs=1e-15)  # the last epoch trains at 0, as in the paper's code


@pytest.mark.parametrize("epochs", [6, 11, 250])
def test_the_linear_schedule_with_warm_up_is_the_papers_at_every_epoch(epochs):
    expected = paper_linear(0.1, epochs, 640)
    assert [epoch_lr("linear", 0.1, e, epochs, warmup_epochs=5) for e in range(epochs)] == pytest.approx(
        expected, rel=1e-12, abs=1e-15)


def test_training_uses_the_schedules_rate_each_epoch(rng):
    result = train_network(DARTS_V2, pattern_dataset(rng), epochs=3, channels=4, layers=3, batch_size=16, lr=0.05,
                           warmup_epochs=1, auxiliary_weight=0.0, progress=False, log=None, device="cpu")
    assert [record["lr"] for record in result.history] == pytest.approx(
        [0.05, 0.5 * 0.05 * (1 + math.cos(math.pi * 2 / 3)), 0.0], abs=1e-15)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr_schedule="step"), "lr_schedule must be one of cosine, linear, got 'step'"),
    (dict(lr_schedule="linear", epochs=5), "the linear lr_schedule needs more than 5 epochs"),
    (dict(warmup_epochs=2, epochs=2), r"warmup_epochs \(2\) must be fewer than epochs \(2\)"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(mean=0.5), "mean and std go together"),
    (dict(mean=(0.5, 0.5), std=(0.2, 0.2)), "mean needs 1 or 3 values, got 2"),
])
def test_invalid_settings_are_refused_before_training(rng, kwargs, match):
    settings = dict(epochs=2, channels=4, layers=3, batch_size=16, progress=False, log=None, device="cpu")
    with pytest.raises(ValueError, match=match):
        train_network(DARTS_V2, pattern_dataset(rng), **(settings | kwargs))


# ---------------------------------------------------------------------------- accuracy


def test_best_and_final_accuracy_of_a_scripted_sequence():
    history = [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 2}, {"epoch": 3, "test_accuracy": 0.8},
               {"epoch": 4, "test_accuracy": 0.8}, {"epoch": 5, "test_accuracy": 0.7}]
    # The first epoch that reaches the best, as the paper's strict ``valid_acc > best_acc``.
    assert best_accuracy(history) == (0.8, 3)
    assert best_accuracy([{"epoch": 1}]) == (None, None)
    assert best_accuracy([{"epoch": 1, "test_accuracy": 0.0}]) == (0.0, 1)


def test_training_reports_the_best_and_the_final_test_accuracy(rng):
    data = pattern_dataset(rng)
    result = train_network(DARTS_V2, data, data, epochs=3, channels=4, layers=3, batch_size=16, lr=0.05,
                           eval_every=1, progress=False, log=None, device="cpu", seed=int(rng.integers(1000)))
    accuracies = [record["test_accuracy"] for record in result.history]
    assert result.test_accuracy == accuracies[-1]
    assert result.best_test_accuracy == max(accuracies)
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1


# ---------------------------------------------------------------------------- normalisation


def test_channel_statistics_are_the_pixels_mean_and_std(rng):
    data = pattern_dataset(rng, n=37, size=5)
    pixels = data.images.reshape(-1, 3).astype(np.float64) / 255
    mean, std = channel_statistics(data)
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-12)  # population std, as numpy's default


def test_the_network_sees_exactly_the_normalised_inputs(rng):
    data = pattern_dataset(rng, n=20)
    result = train_network(DARTS_V2, data, epochs=1, channels=4, layers=3, batch_size=10, progress=False, log=None,
                           device="cpu", auxiliary_weight=0.0)
    mean, std = channel_statistics(data)
    assert result.model.mean.flatten().tolist() == pytest.approx(mean, rel=1e-6)
    assert result.model.std.flatten().tolist() == pytest.approx(std, rel=1e-6)

    model = EvalNetwork(DARTS_V2, 4, 3, 3, 3, mean=(0.1, 0.2, 0.3), std=(0.3, 0.7, 0.9)).eval()
    seen = []
    model.stem.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        model(x)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.3, 0.7, 0.9]).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------- auxiliary head


@pytest.mark.parametrize("size, stride", [(8, 3), (7, 2)])
def test_auxiliary_pooling_is_dartss_window_where_it_gives_2x2(rng, size, stride):
    x = torch.from_numpy(rng.normal(size=(2, 3, size, size))).float()
    pooled = AuxiliaryPooling(stride)(x)
    starts = [0, stride]
    expected = torch.stack([torch.stack([x[..., i:i + 5, j:j + 5].mean((-2, -1)) for j in starts], -1)
                            for i in starts], -2)
    torch.testing.assert_close(pooled, expected)


def test_auxiliary_pooling_falls_back_to_adaptive_on_other_sizes(rng):
    x = torch.from_numpy(rng.normal(size=(2, 3, 7, 7))).float()
    torch.testing.assert_close(AuxiliaryPooling(3)(x), F.adaptive_avg_pool2d(x, 2))


def test_the_imagenet_auxiliary_head_has_no_batch_norm_after_its_last_convolution():
    cifar = EvalNetwork(DARTS_V2, 4, 10, 3, 3, auxiliary=True).auxiliary_head.features
    imagenet = EvalNetwork(DARTS_V2, 4, 10, 3, 3, auxiliary=True, stem="imagenet").auxiliary_head.features
    assert isinstance(cifar[6], torch.nn.BatchNorm2d) and isinstance(imagenet[6], torch.nn.Identity)
    assert (cifar[1].stride, imagenet[1].stride) == (3, 2)


# ---------------------------------------------------------------------------- command line


def test_train_command_with_the_cifar_recipe_and_overrides(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--arch", "DARTS_V2", "--dataset", "digits", "--recipe", "cifar", "--epochs", "1",
            "--channels", "4", "--layers", "3", "--batch-size", "256", "--stem-stride", "2", "--device", "cpu",
            "--quiet", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    log = json.loads((out / "train_log.json").read_text())
    overridden = dict(epochs=1, channels=4, layers=3, batch_size=256, stem_stride=2)
    assert {key: log["settings"][key] for key in PUBLISHED["cifar"]} == {**PUBLISHED["cifar"], **overridden}
    assert log["recipe"] == "cifar"
    assert log["history"][0]["test_accuracy"] == log["test_accuracy"] == log["best_test_accuracy"]
    assert log["best_epoch"] == 1
    assert f"best {100 * log['best_test_accuracy']:.2f}% at epoch 1" in printed


@pytest.mark.parametrize("extra, match", [
    (["--recipe", "imagenet", "--epochs", "3"], "warmup_epochs (5) must be fewer than epochs (3)"),
    (["--recipe", "imagenet", "--epochs", "5", "--warmup-epochs", "0"], "the linear lr_schedule needs more than 5"),
    (["--epochs", "2", "--mean", "0.5"], "--mean and --std go together"),
    (["--recipe", "imagenet", "--stem-stride", "2"], "--stem-stride applies to the cifar stem only"),
    ([], "--epochs is needed without --recipe"),
    (["--recipe", "cifar", "--label-smoothing", "1.5"], "--label-smoothing"),
])
def test_train_command_bad_recipe_combinations_are_one_line_errors(capsys, tmp_path, extra, match):
    argv = ["train", "--arch", "DARTS_V2", "--dataset", "digits", *extra, "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("proxyfast train: error: ") and match in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- FFCV loader


def digits_subset(n: int) -> ImageArrayDataset:
    """The first ``n`` training digits (real 8x8 images), kept small for the CPU."""
    full = digits(train=True)
    return ImageArrayDataset(full.images[:n], full.labels[:n], f"digits-{n}", full.classes)


def test_training_through_ffcv_sees_the_same_batches_as_through_pytorch(tmp_path):
    pytest.importorskip("ffcv")
    data = digits_subset(200)
    settings = dict(epochs=2, channels=4, layers=3, batch_size=48, stem_stride=2, cutout=3, progress=False, log=None,
                    device="cpu", seed=5, amp=False)
    through_torch = train_network(DARTS_V2, data, **settings)
    beton = tmp_path / "digits.beton"
    through_ffcv = train_network(DARTS_V2, data, **settings, loader="ffcv", beton=beton, num_workers=1)
    assert beton.is_file()  # written on the fly
    # Any difference in order or pixels would change the losses and the weights.
    assert [r["loss"] for r in through_ffcv.history] == [r["loss"] for r in through_torch.history]
    for (name, a), b in zip(through_torch.model.state_dict().items(), through_ffcv.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_search_through_ffcv_sees_the_same_batches_as_through_pytorch(tmp_path):
    pytest.importorskip("ffcv")
    data = digits_subset(160)
    config = SearchConfig(channels=4, layers=3, steps=2, multiplier=2, batch_size=16, epochs=2, seed=3)
    runs = {}
    for loader in ("pytorch", "ffcv"):
        beton = tmp_path / "digits.beton" if loader == "ffcv" else None
        runs[loader] = search(data, None, config, tmp_path / loader, device="cpu", progress=False, log=None,
                              plots=False, loader=loader, beton=beton)
    def untimed(history):
        return [{key: value for key, value in record.items() if "second" not in key} for record in history]
    assert untimed(runs["ffcv"].history) == untimed(runs["pytorch"].history)
    models = [runs[loader].state.model for loader in ("pytorch", "ffcv")]
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow  # FFCV compiles its pipelines anew in the command's loaders: a minute on two cores
def test_search_command_with_the_ffcv_loader(capsys, tmp_path):
    pytest.importorskip("ffcv")
    out = tmp_path / "search"
    argv = ["search", "--dataset", "digits", "--algo", "darts", "--epochs", "1", "--channels", "4", "--layers", "3",
            "--batch-size", "256", "--stem-stride", "2", "--device", "cpu", "--quiet", "--no-plots",
            "--loader", "ffcv", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "train.beton").is_file() and (out / "genotype.txt").is_file()
    assert "Genotype(" in (out / "genotype.txt").read_text()


@pytest.mark.parametrize("command", [
    ["search", "--algo", "darts"],
    ["train", "--arch", "DARTS_V2", "--epochs", "1"],
])
def test_beton_without_the_ffcv_loader_is_a_one_line_error(capsys, tmp_path, command):
    argv = [*command, "--dataset", "digits", "--beton", str(tmp_path / "x.beton"), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--beton is read by --loader ffcv only" in err and err.count("\n") == 1
