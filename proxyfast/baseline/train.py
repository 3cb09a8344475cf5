"""Training baseline models: the model whose entropies the selection is built on.

:func:`train` trains any ``nn.Module`` classifier on a dataset of ``(input, label)``
pairs with SGD and a one-cycle learning rate, draws a progress bar, writes an atomic
checkpoint after every epoch and resumes from it, and can count forgetting events on
the way (:mod:`proxyfast.forgetting`). :func:`evaluate` measures accuracy.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_int
from ..data import dataset_fingerprint
from ..models import CifarResNet
from ..runtime import (
    Progress,
    autocast,
    dataset_image_size,
    iterate_batches,
    load_checkpoint,
    random_crop_flip,
    resolve_amp,
    resolve_device,
    resume_state,
    save_checkpoint,
    to_float_images,
    use_channels_last,
)
from ..scoring import input_memory_format
from .forgetting_events import Forgetting, ForgettingTracker

# dataset_image_size, random_crop_flip and the checkpoint functions live in proxyfast.runtime;
# they stay importable from here.
__all__ = ["TrainResult", "dataset_image_size", "evaluate", "forgetting", "load_checkpoint", "load_model",
           "random_crop_flip", "save_checkpoint", "train"]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (the one passed in, trained in place).
        test_accuracy: accuracy on the test set in [0, 1], or None without one.
        history: one dict per epoch (``epoch``, ``loss``, ``train_accuracy``, ``seconds``).
        forgetting: forgetting statistics when ``track_forgetting`` was set, else None.
        seconds: training time of this call (epochs restored from a checkpoint excluded).
    """

    model: nn.Module
    test_accuracy: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    forgetting: Forgetting | None = None
    seconds: float = 0.0


def evaluate(model: nn.Module, dataset, batch_size: int = 512, device: torch.device | str | None = None,
             amp: bool = False, progress: bool = False) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` in [0, 1] (eval mode; mode restored)."""
    device = resolve_device(device, model)
    memory_format = input_memory_format(model)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    bar = Progress(len(dataset), "test", enabled=progress, unit="img")
    try:
        with torch.inference_mode(), autocast(device, amp):
            for _, inputs, labels in iterate_batches(dataset, batch_size):
                logits = model(to_float_images(inputs, device, memory_format))
                correct += (logits.argmax(1) == labels.to(device)).sum()
                bar.update(len(labels))
    finally:
        bar.close()
        model.train(was_training)
    return int(correct) / len(dataset)


def _one_cycle(total_steps: int, warmup_fraction: float = 0.25) -> Callable[[int], float]:
    """Learning-rate factor of each step: a linear warm-up over the first quarter, then a
    cosine decay to 0 (the one-cycle schedule, without momentum cycling)."""
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return factor


def _model_description(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return {"class": type(model).__name__, "config": config() if callable(config) else None}


@dataclass(frozen=True)
class _Recipe:
    """The settings of the optimisation: with the model and the data, they decide the
    trained weights, so a checkpoint must have been written under the same."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    augment: bool
    crop_padding: int | None
    seed: int


def _epoch_line(record: dict[str, float], epochs: int) -> str:
    return (f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f}, train accuracy "
            f"{100 * record['train_accuracy']:.2f}%, {record['seconds']:.1f} s")


def train(
    model: nn.Module,
    dataset,
    test_set=None,
    *,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 0.2,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    augment: bool = True,
    crop_padding: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    track_forgetting: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    num_workers: int = 0,
) -> TrainResult:
    """Trains ``model`` in place on ``dataset`` (cross-entropy, SGD with Nesterov momentum,
    one-cycle learning rate peaking at ``lr``).

    Args:
        model: any classifier ``nn.Module`` returning logits [B, C].
        dataset: training ``(input, label)`` pairs; uint8 images are fed as float in [0, 1].
        test_set: when given, the accuracy on it is measured after training.
        epochs, batch_size, lr, momentum, weight_decay: the optimisation.
        augment: random shifts and horizontal flips of uint8 image batches.
        crop_padding: the largest shift in pixels; default 1/8 of the image size.
        seed: seeds the example order and the augmentation of every epoch (the model's
            initial weights are the caller's).
        device: where to train; default the device of the model's parameters.
        amp: bfloat16 autocast; None (default): where the device runs bfloat16 natively
            (:func:`proxyfast.runtime.native_bfloat16`; emulated, it is 10x slower).
        channels_last: convert the model and inputs to channels-last memory order (faster
            convolutions on CPU and on tensor cores); None (default): the device's choice
            (:func:`proxyfast.runtime.use_channels_last`).
        checkpoint: a file written atomically after every epoch; with ``resume`` an
            existing one continues the run (it must be the same run: same model,
            dataset and settings).
        track_forgetting: count forgetting events at every presentation (the result's
            ``forgetting``).
        progress: draw a progress bar on stderr.
        log: called with one line per epoch and for the test accuracy (None: silent).
        num_workers: ``DataLoader`` workers for datasets that are not in memory.
    """
    check_int("epochs", epochs)
    check_int("batch_size", batch_size, 2)  # batch norm needs two examples
    if len(dataset) < 2:
        raise ValueError(f"the training set needs at least 2 examples, got {len(dataset)}")
    say = log or (lambda _: None)
    device = resolve_device(device, model)
    model.to(device)
    recipe = _Recipe(epochs, batch_size, lr, momentum, weight_decay, augment, crop_padding, seed)
    training = _BaselineTraining(model, dataset, recipe, device, resolve_amp(amp, device), channels_last,
                                 track_forgetting, num_workers)
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        training.resume(checkpoint)
        say(f"resumed from {os.fspath(checkpoint)} after epoch {training.epochs_done}/{epochs}")

    began = time.perf_counter()
    for epoch in range(training.epochs_done, epochs):
        record = training.train_epoch(epoch, progress)
        training.end_epoch(record, checkpoint)
        say(_epoch_line(record, epochs))
    seconds = time.perf_counter() - began

    test_accuracy = None
    if test_set is not None:
        test_accuracy = evaluate(model, test_set, max(batch_size, 512), device, training.amp)
        say(f"test accuracy {100 * test_accuracy:.2f}% ({len(test_set):,} examples)")
    forgetting_result = training.tracker.result() if training.tracker is not None else None
    return TrainResult(model, test_accuracy, training.history, forgetting_result, seconds)


class _BaselineTraining:
    """One model in training: its optimiser and schedule, the forgetting tracker, what
    defines the run for its checkpoint, and the epochs done; one method per step of the loop."""

    def __init__(self, model: nn.Module, dataset, recipe: _Recipe, device: torch.device, amp: bool,
                 channels_last: bool | None, track_forgetting: bool, num_workers: int) -> None:
        self.model, self.dataset, self.recipe, self.device, self.amp = model, dataset, recipe, device, amp
        self.num_workers = num_workers
        if use_channels_last(model, device, channels_last):
            model.to(memory_format=torch.channels_last)
        self.memory_format = input_memory_format(model)
        n = len(dataset)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay, nesterov=recipe.momentum > 0)
        steps_per_epoch = -(-n // recipe.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _one_cycle(recipe.epochs * steps_per_epoch))
        self.tracker = ForgettingTracker(n, device) if track_forgetting else None
        self.run = {"model": _model_description(model), "dataset": dataset_fingerprint(dataset), "n": n,
                    **asdict(recipe), "amp": amp, "track_forgetting": track_forgetting}
        self.pad = 0  # no shifts and flips
        if recipe.augment:
            self.pad = recipe.crop_padding if recipe.crop_padding is not None else max(
                1, min(dataset_image_size(dataset)) // 8)
        self.history: list[dict[str, float]] = []
        self.epochs_done = 0

    def resume(self, checkpoint: str | os.PathLike) -> None:
        """Continues from ``checkpoint``, which this very run must have written."""
        state = resume_state(checkpoint, self.run, written_by="train",
                             remedy="delete it, pass another path, or train with resume=False")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.tracker is not None:
            self.tracker.load_state_dict(state["forgetting"])
        self.history = list(state["history"])
        self.epochs_done = state["epoch"]

    def train_epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        """Trains epoch ``epoch`` (from 0) and returns its record for the history."""
        began = time.perf_counter()
        # One generator per epoch draws the order and the shifts and flips, so that a
        # resumed run draws what an uninterrupted one would.
        generator = torch.Generator().manual_seed(self.recipe.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.dataset), generator=generator)
        self.model.train()
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        total_correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        bar = Progress(len(self.dataset), f"epoch {epoch + 1}/{self.recipe.epochs}", enabled=progress, unit="img")
        batches = iterate_batches(self.dataset, self.recipe.batch_size, order, self.num_workers)
        for step, (index, inputs, labels) in enumerate(batches):
            if len(index) < 2:  # batch norm cannot train on a batch of one; it is the epoch's last
                continue
            if self.pad and inputs.dtype == torch.uint8 and inputs.dim() == 4:
                inputs = random_crop_flip(inputs, self.pad, generator)
            loss, correct = self._step(index, inputs, labels)
            total_loss += loss * len(correct)
            total_correct += correct.sum()
            seen += len(correct)
            # Reading the loss back synchronises the device: only now and then.
            bar.update(len(correct), postfix=f"loss {float(total_loss) / seen:.3f}" if step % 20 == 0 else None)
        bar.close()
        return {"epoch": epoch + 1, "loss": float(total_loss) / seen, "train_accuracy": int(total_correct) / seen,
                "seconds": time.perf_counter() - began}

    def _step(self, index: torch.Tensor, inputs: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on a batch; returns its loss (detached) and which examples the
        model got right, which the forgetting tracker counts."""
        y = labels.to(self.device, non_blocking=True)
        with autocast(self.device, self.amp):
            logits = self.model(to_float_images(inputs, self.device, self.memory_format))
            loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        correct = logits.detach().argmax(1) == y
        if self.tracker is not None:
            self.tracker.update(index, correct)
        return loss.detach(), correct

    def end_epoch(self, record: dict[str, float], checkpoint: str | os.PathLike | None) -> None:
        """Adds the epoch's record to the history and checkpoints the run."""
        self.history.append(record)
        self.epochs_done = record["epoch"]
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "run": self.run, "epoch": self.epochs_done, "history": self.history, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "forgetting": self.tracker.state_dict() if self.tracker is not None else None,
            })


def load_model(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """The model of a checkpoint: rebuilt from its config for the built-in ResNets, or
    ``model`` with the checkpoint's weights loaded for any other architecture."""
    state = load_checkpoint(path)
    description = state["run"]["model"]
    if model is None:
        if description["class"] != CifarResNet.__name__ or description["config"] is None:
            raise ValueError(
                f"{os.fspath(path)}: holds a {description['class']}, which proxyfast cannot rebuild; "
                "pass the model to load the weights into"
            )
        model = CifarResNet(**description["config"])
    model.load_state_dict(state["model"])
    return model.eval()


def forgetting(model: torch.nn.Module, dataset, epochs: int = 10, **train_options) -> Forgetting:
    """Trains ``model`` from its current (fresh) weights on ``dataset`` and counts the
    forgetting events of every example.

    Args:
        model: an untrained model (forgetting is a property of training from scratch).
        dataset: the training set, ``(input, label)`` pairs.
        epochs: training epochs; the paper's statistics settle after a few dozen, but the
            ranking of the most-forgotten examples is stable much earlier.
        **train_options: passed to :func:`train` (batch_size, lr,
            device, seed, checkpoint, progress, ...).

    Returns:
        A :class:`Forgetting`; attach it to scores with
        ``scores.replace(forgetting_counts=result.counts)`` and select with
        ``select(scores, method="forgetting", ...)``.
    """
    return train(model, dataset, epochs=epochs, track_forgetting=True, **train_options).forgetting
