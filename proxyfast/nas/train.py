"""Final training of a found cell: the evaluation network trained from scratch.

:func:`train_network` follows DARTS's CIFAR-10 recipe (Liu et al., ICLR 2019, appendix
A.2) as the proxy-data paper's ``train.py`` runs it (Na et al., IJCAI 2021): SGD with
momentum 0.9 and weight decay 3e-4, a learning rate of 0.025 annealed to 0 along a cosine
stepped once per epoch, gradient norms clipped at 5, an auxiliary loss weighted 0.4, a
drop-path rate raised linearly from 0 to 0.2 over the epochs, inputs normalised by the
training set's per-channel mean and standard deviation, random crops and flips, and
optionally cutout. The budget (``epochs``, ``channels``, ``layers``) is the caller's.

:data:`RECIPES` holds the paper's two final trainings as presets of
:func:`train_network`'s arguments: ``"cifar"`` (``train.py``: 600 epochs, 20 cells of 36
channels, cutout 16) and ``"imagenet"`` (``train_imagenet.py``: 250 epochs, 14 cells of 48
channels, batch 640, a learning rate of 0.1 warmed up over 5 epochs then decayed
linearly, weight decay 3e-5, label smoothing 0.1). :func:`recipe_arguments` merges a
preset with the caller's overrides.

It checkpoints atomically after every epoch and resumes exactly, and it runs under
``torch.distributed`` as it is: every rank takes its own slice of each batch, gradients
are averaged by ``DistributedDataParallel``, and rank 0 alone writes and prints.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_int, check_real, check_seed
from ..data.fingerprint import dataset_fingerprint
from ..loaders.ffcv import ffcv_loader, write_beton
from ..loaders.pytorch import distributed_rank
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
from .genotypes import Genotype, get_genotype
from .network import EvalNetwork

__all__ = ["LOADERS", "LR_SCHEDULES", "RECIPES", "NetworkTrainResult", "best_accuracy", "channel_statistics",
           "check_lr_schedule", "epoch_lr", "load_network", "prepare_beton", "random_cutout", "recipe_arguments",
           "save_network", "shard_epoch", "train_network"]

LR_SCHEDULES = ("cosine", "linear")
LOADERS = ("pytorch", "ffcv")
# The linear schedule's last epochs decay with a smaller slope (train_imagenet.py's adjust_lr).
_LINEAR_TAIL = 5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RECIPES: dict[str, dict[str, Any]] = {
    # train.py of Na et al. (DARTS's CIFAR-10 training, run with --auxiliary --cutout): the test
    # accuracy is measured after every epoch and the best is reported; inputs normalised by
    # CIFAR-10's per-channel training statistics (mean=None: those of the training set given).
    "cifar": dict(epochs=600, channels=36, layers=20, batch_size=96, lr=0.025, momentum=0.9, weight_decay=3e-4,
                  grad_clip=5.0, auxiliary_weight=0.4, drop_path_prob=0.2, cutout=16, lr_schedule="cosine",
                  warmup_epochs=0, label_smoothing=0.0, stem="cifar", stem_stride=1, mean=None, std=None, eval_every=1),
    # train_imagenet.py of Na et al. (PC-DARTS's ImageNet training): --lr_scheduler linear, a
    # 5-epoch warm-up (batch > 256), label smoothing 0.1 on both heads, ImageNet's mean and std.
    "imagenet": dict(epochs=250, channels=48, layers=14, batch_size=640, lr=0.1, momentum=0.9, weight_decay=3e-5,
                     grad_clip=5.0, auxiliary_weight=0.4, drop_path_prob=0.0, cutout=0, lr_schedule="linear",
                     warmup_epochs=5, label_smoothing=0.1, stem="imagenet", stem_stride=1, mean=IMAGENET_MEAN,
                     std=IMAGENET_STD, eval_every=1),
}


def recipe_arguments(name: str, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`train_network` for recipe ``name`` (:data:`RECIPES`),
    each replaced by the override of the same name where one is given."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    unknown = sorted(set(overrides) - set(inspect.signature(train_network).parameters))
    if unknown:
        raise TypeError(f"recipe overrides: train_network takes no argument {', '.join(unknown)}")
    return {**RECIPES[name], **overrides}


def prepare_beton(dataset, path: str | os.PathLike) -> str:
    """``path`` as the FFCV file of ``dataset``: written there (by rank 0, the other ranks
    wait) when it does not exist yet; an existing file is taken as it is."""
    path = os.fspath(path)
    rank, world_size = distributed_rank()
    if rank == 0 and not os.path.exists(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_beton(dataset, path)
    if world_size > 1:
        torch.distributed.barrier()
    return path


def epoch_lr(schedule: str, lr: float, epoch: int, epochs: int, warmup_epochs: int = 0) -> float:
    """The learning rate of epoch ``epoch`` (from 0) of ``epochs``, as the paper's code sets it
    at the start of each epoch (``scheduler.step()`` before the epoch's training).

    ``"cosine"`` (``train.py``): ``lr / 2 * (1 + cos(pi * (epoch + 1) / epochs))``, so the last
    epoch trains at 0. ``"linear"`` (``train_imagenet.py``'s ``adjust_lr``): ``lr * (epochs - 5
    - epoch) / (epochs - 5)``, and in the last 5 epochs ``lr * (epochs - epoch) / (5 * (epochs -
    5))``. During ``warmup_epochs`` either takes ``lr * (epoch + 1) / warmup_epochs``.
    """
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    if schedule == "cosine":
        return 0.5 * lr * (1.0 + math.cos(math.pi * (epoch + 1) / epochs))
    if epochs - epoch > _LINEAR_TAIL:
        return lr * (epochs - _LINEAR_TAIL - epoch) / (epochs - _LINEAR_TAIL)
    return lr * (epochs - epoch) / ((epochs - _LINEAR_TAIL) * _LINEAR_TAIL)


def best_accuracy(history: list[dict[str, float]]) -> tuple[float | None, int | None]:
    """The best test accuracy among the epochs evaluated and its epoch (from 1); the first on
    ties, as the paper's code keeps a new best only when it is strictly higher."""
    best, best_epoch = None, None
    for record in history:
        accuracy = record.get("test_accuracy")
        if accuracy is not None and (best is None or accuracy > best):
            best, best_epoch = accuracy, int(record["epoch"])
    return best, best_epoch


def channel_statistics(dataset) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (over every pixel of every image) of an image
    dataset, uint8 images taken in [0, 1] units: what the paper's CIFAR constants are for
    CIFAR-10 (0.4914, 0.4822, 0.4465 and 0.2470, 0.2435, 0.2616). Summed in float64."""
    sums = squares = None
    count = 0
    for _, inputs, _ in iterate_batches(dataset, 1024):
        x = inputs.double() / 255 if inputs.dtype == torch.uint8 else inputs.double()
        batch_sums, batch_squares = x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))
        sums = batch_sums if sums is None else sums + batch_sums
        squares = batch_squares if squares is None else squares + batch_squares
        count += x.numel() // x.shape[1]
    mean = sums / count
    return mean.tolist(), (squares / count - mean * mean).clamp_min(0).sqrt().tolist()



@dataclass
class NetworkTrainResult:
    """What :func:`train_network` returns.

    Attributes:
        model: the trained network (unwrapped, in evaluation mode).
        genotype: its architecture.
        test_accuracy: accuracy on the test set after the last epoch, in [0, 1], or None
            without a test set.
        best_test_accuracy, best_epoch: the best test accuracy among the epochs evaluated
            (``eval_every``) and the final one, and its epoch (from 1): what the paper's code
            reports; None without a test set.
        history: one dict per epoch: ``epoch``, ``loss`` (the main classifier's
            cross-entropy), ``train_accuracy``, ``lr`` and ``drop_path_prob`` (at the
            epoch's start), ``seconds``, and ``test_accuracy`` on the epochs evaluated.
        seconds: training time of this call (epochs restored from a checkpoint excluded).
        parameters: learnable parameters without the auxiliary head (as DARTS reports).
    """

    model: EvalNetwork
    genotype: Genotype
    test_accuracy: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    parameters: int = 0
    best_test_accuracy: float | None = None
    best_epoch: int | None = None


def random_cutout(images: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch [B, C, H, W] with one ``length`` x ``length`` box set to 0
    in every channel (DeVries and Taylor, 2017): the box's centre is uniform over the
    image and the box is clipped at the borders. Returns a new tensor."""
    check_int("length", length)
    b, _, h, w = images.shape
    top = torch.randint(0, h, (b, 1), generator=generator) - length // 2
    left = torch.randint(0, w, (b, 1), generator=generator) - length // 2
    rows = torch.arange(h)
    cols = torch.arange(w)
    in_rows = (rows >= top) & (rows < top + length)
    in_cols = (cols >= left) & (cols < left + length)
    box = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return images.masked_fill(box.to(images.device), 0)


def shard_epoch(order: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's examples of one epoch, in training order.

    ``order`` (the epoch's permutation, the same on every rank) is cut into global
    batches of ``batch_size``; rank ``r`` takes the ``r``-th of ``world_size`` equal
    slices of each batch, so that the ranks' batches are disjoint and together form the
    global batch. A last batch too small for every rank to take two examples (batch norm
    cannot train on one) is left out, on every rank alike. Batches of
    ``batch_size // world_size`` consecutive examples of the result are the rank's batches.
    """
    shards = []
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        share = len(batch) // world_size
        if share >= 2:
            shards.append(batch[rank * share:(rank + 1) * share])
    return torch.cat(shards) if shards else order[:0]


def _derived_seed(*parts: int) -> int:
    """A 63-bit seed from non-negative integers, well mixed (no collisions between
    nearby tuples such as (seed, epoch) and (seed + 1, epoch - 1))."""
    return int(np.random.SeedSequence(parts).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _image_channels_and_classes(dataset, num_classes: int | None) -> tuple[int, int]:
    """(input channels, classes) of an image dataset."""
    first = dataset[0][0]
    if not isinstance(first, torch.Tensor) or first.dim() != 3:
        raise ValueError(f"the training set must hold images [C, H, W], got {type(first).__name__} "
                         f"{tuple(getattr(first, 'shape', ()))}")
    if num_classes is None:
        classes = getattr(dataset, "classes", None)
        if classes is None:
            raise ValueError("num_classes is needed: the training set has no 'classes' attribute")
        num_classes = len(classes)
    return first.shape[0], check_int("num_classes", num_classes, 1)


def _all_reduce_sum(values: torch.Tensor, distributed: bool) -> torch.Tensor:
    if distributed:
        torch.distributed.all_reduce(values)
    return values


def _evaluate(model: EvalNetwork, dataset, batch_size: int, device: torch.device, amp: bool, rank: int,
              world_size: int, progress: bool) -> float:
    """Top-1 accuracy on ``dataset``; each rank scores its own share and the counts are summed."""
    memory_format = input_memory_format(model)
    model.eval()
    correct = torch.zeros(1, dtype=torch.float64, device=device)
    indices = torch.arange(rank, len(dataset), world_size)
    bar = Progress(len(indices), "test", enabled=progress, unit="img")
    with torch.inference_mode(), autocast(device, amp):
        for _, inputs, labels in iterate_batches(dataset, batch_size, indices):
            logits = model(to_float_images(inputs, device, memory_format))
            correct += (logits.argmax(1) == labels.to(device)).sum()
            bar.update(len(labels))
    bar.close()
    return float(_all_reduce_sum(correct, world_size > 1)) / len(dataset)


@dataclass(frozen=True)
class _Recipe:
    """The checked settings of the optimisation: with the network and the data, they
    decide the trained weights, so a checkpoint must have been written under the same."""

    epochs: int
    batch_size: int  # the global batch, a multiple of the number of ranks
    lr: float
    momentum: float
    weight_decay: float
    grad_clip: float | None
    auxiliary_weight: float
    drop_path_prob: float
    cutout: int
    augment: bool
    crop_padding: int | None
    seed: int
    lr_schedule: str
    warmup_epochs: int
    label_smoothing: float


def check_lr_schedule(epochs: int, lr_schedule, warmup_epochs, label_smoothing) -> tuple[str, int, float]:
    """Checks the schedule's settings together (a warm-up shorter than the run, a linear
    schedule longer than its tail); returns them."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
    warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
    if warmup_epochs >= epochs:
        raise ValueError(f"warmup_epochs ({warmup_epochs}) must be fewer than epochs ({epochs})")
    if lr_schedule == "linear" and epochs <= _LINEAR_TAIL:
        raise ValueError(f"the linear lr_schedule needs more than {_LINEAR_TAIL} epochs (its last {_LINEAR_TAIL} "
                         f"decay with their own slope), got epochs={epochs}")
    return lr_schedule, warmup_epochs, check_real("label_smoothing", label_smoothing, 0.0, 1.0, open_high=True)


def _check_recipe(world_size: int, *, epochs, batch_size, lr, momentum, weight_decay, grad_clip, auxiliary_weight,
                  drop_path_prob, cutout, augment, crop_padding, seed, lr_schedule, warmup_epochs,
                  label_smoothing) -> _Recipe:
    epochs = check_int("epochs", epochs, 1)
    schedule = check_lr_schedule(epochs, lr_schedule, warmup_epochs, label_smoothing)
    seed = check_seed("seed", seed)
    cutout = check_int("cutout", cutout, 0)
    lr = check_real("lr", lr, 0.0, open_low=True)
    momentum = check_real("momentum", momentum, 0.0, 1.0, open_high=True)
    weight_decay = check_real("weight_decay", weight_decay, 0.0)
    if grad_clip is not None:
        grad_clip = check_real("grad_clip", grad_clip, 0.0, open_low=True)
    auxiliary_weight = check_real("auxiliary_weight", auxiliary_weight, 0.0)
    drop_path_prob = check_real("drop_path_prob", drop_path_prob, 0.0, 1.0, open_high=True)
    if crop_padding is not None:
        crop_padding = check_int("crop_padding", crop_padding, 0)
    batch_size = check_int("batch_size", batch_size, 2 * world_size)
    if batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of the number of processes ({world_size})")
    return _Recipe(epochs, batch_size, lr, momentum, weight_decay, grad_clip, auxiliary_weight, drop_path_prob, cutout,
                   augment, crop_padding, seed, *schedule)


def _steps_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """Every rank steps once per global batch that gives each rank at least two examples
    (as :func:`shard_epoch` cuts them)."""
    steps = n // batch_size + (n % batch_size // world_size >= 2)
    if steps == 0:
        raise ValueError(f"the training set ({n} examples) is too small for one batch of {2 * world_size}")
    return steps


def _optimizer(model: nn.Module, recipe: _Recipe) -> torch.optim.SGD:
    """DARTS's optimiser: SGD with momentum; :func:`epoch_lr` sets its rate each epoch."""
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)


def _drop_path_rate(recipe: _Recipe, epoch: int) -> float:
    """The drop-path rate of epoch ``epoch`` (from 0): raised linearly from 0, as in DARTS."""
    return recipe.drop_path_prob * epoch / recipe.epochs


def _shift_padding(recipe: _Recipe, train_set) -> int | None:
    """The largest random shift of the training images, or None for no shifts and flips."""
    if not recipe.augment:
        return None
    return recipe.crop_padding if recipe.crop_padding is not None else max(1, min(dataset_image_size(train_set)) // 8)


def _epoch_line(record: dict[str, float], epochs: int) -> str:
    test = f", test accuracy {100 * record['test_accuracy']:.2f}%" if "test_accuracy" in record else ""
    return (f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f}, train accuracy "
            f"{100 * record['train_accuracy']:.2f}%{test}, lr {record['lr']:.5f}, drop path "
            f"{record['drop_path_prob']:.3f}, {record['seconds']:.1f} s")


def train_network(
    genotype: Genotype | str,
    train_set,
    test_set=None,
    *,
    epochs: int,
    channels: int = 36,
    layers: int = 20,
    batch_size: int = 96,
    lr: float = 0.025,
    momentum: float = 0.9,
    weight_decay: float = 3e-4,
    grad_clip: float | None = 5.0,
    auxiliary_weight: float = 0.4,
    drop_path_prob: float = 0.2,
    cutout: int = 0,
    augment: bool = True,
    crop_padding: int | None = None,
    stem: str = "cifar",
    stem_stride: int = 1,
    lr_schedule: str = "cosine",
    warmup_epochs: int = 0,
    label_smoothing: float = 0.0,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    eval_every: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    num_workers: int = 0,
    loader: str = "pytorch",
    beton: str | os.PathLike | None = None,
) -> NetworkTrainResult:
    """Builds the :class:`EvalNetwork` of ``genotype`` and trains it from scratch.

    Args:
        genotype: a :class:`Genotype`, a registered name (``GENOTYPES``) or a genotype string.
        train_set: ``(image, label)`` pairs, images [C, H, W] (uint8 images are fed as
            float in [0, 1]).
        test_set: when given, the accuracy on it is measured after training.
        epochs: the budget in epochs (DARTS: 600).
        channels, layers, stem, stem_stride: the network (:class:`EvalNetwork`).
        batch_size: the global batch (DARTS: 96); under ``torch.distributed`` each of the
            ``world_size`` ranks takes ``batch_size // world_size`` of it.
        lr: the initial learning rate, set each epoch by :func:`epoch_lr`.
        lr_schedule: ``"cosine"`` (to 0, stepped per epoch as the paper's ``train.py``) or
            ``"linear"`` (``train_imagenet.py``; needs more than 5 epochs).
        warmup_epochs: epochs of linear warm-up, ``lr * (epoch + 1) / warmup_epochs``.
        label_smoothing: of the cross-entropy of both heads (``train_imagenet.py``: 0.1).
        mean, std: the network's input normalisation, per channel in [0, 1] units; None
            (default): the training set's own statistics (:func:`channel_statistics`), as
            the paper's code normalises CIFAR-10 by its own.
        momentum, weight_decay: of SGD.
        grad_clip: the largest gradient norm; None disables clipping.
        auxiliary_weight: weight of the auxiliary head's loss; 0 builds no head.
        drop_path_prob: the drop-path rate, raised linearly over the epochs: epoch ``e``
            (from 0) uses ``drop_path_prob * e / epochs``, as in DARTS.
        cutout: the side in pixels of the box cut out of every training image; 0 disables it
            (DARTS used 16 on CIFAR-10's 32x32 images).
        augment: random shifts (zero fill) and horizontal flips of the training images.
        crop_padding: the largest shift in pixels; default 1/8 of the image size.
        num_classes: outputs of the classifier; default ``len(train_set.classes)``.
        seed: seeds the initial weights, the example order, the augmentation, cutout and
            drop-path: the same seed gives the same run.
        device: where to train; default CUDA when available.
        amp: bfloat16 autocast; None (default): where the device runs bfloat16 natively
            (:func:`proxyfast.runtime.native_bfloat16`).
        channels_last: channels-last memory order for the network and its inputs; None
            (default): the device's choice (:func:`proxyfast.runtime.use_channels_last`).
        checkpoint: a file written atomically after every epoch; with ``resume`` an
            existing one continues the run, which ends exactly as an uninterrupted run
            would (it must be the same run: same genotype, data and settings).
        eval_every: also measure the test accuracy every this many epochs (0: at the end
            only); the best of them is reported too (``best_test_accuracy``).
        progress: draw a progress bar on stderr.
        log: called with one line per epoch and for the test accuracy (None: silent).
        num_workers: ``DataLoader`` workers for datasets that are not in memory (FFCV:
            its decoding threads; 0 takes one per core).
        loader: ``"pytorch"`` or ``"ffcv"``: the training images streamed by FFCV from
            ``beton`` (written from ``train_set`` when the file does not exist), in the
            same order, so the same batches as the PyTorch loader's.

    Raises:
        ValueError, TypeError: on a bad argument, or a checkpoint of another run (the
            message names the settings that differ).
    """
    genotype = get_genotype(genotype)
    rank, world_size = distributed_rank()
    recipe = _check_recipe(world_size, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                           weight_decay=weight_decay, grad_clip=grad_clip, auxiliary_weight=auxiliary_weight,
                           drop_path_prob=drop_path_prob, cutout=cutout, augment=augment, crop_padding=crop_padding,
                           seed=seed, lr_schedule=lr_schedule, warmup_epochs=warmup_epochs,
                           label_smoothing=label_smoothing)
    eval_every = check_int("eval_every", eval_every, 0)
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {', '.join(LOADERS)}, got {loader!r}")
    if loader == "ffcv" and beton is None:
        raise ValueError("loader='ffcv' needs beton: the .beton file to read (written there when absent)")
    if len(train_set) < 2:
        raise ValueError(f"the training set needs at least 2 examples, got {len(train_set)}")
    in_channels, num_classes = _image_channels_and_classes(train_set, num_classes)
    _steps_per_epoch(len(train_set), recipe.batch_size, world_size)
    if (mean is None) != (std is None):
        raise ValueError("mean and std go together: give both, or neither for the training set's own")
    if mean is None:
        mean, std = channel_statistics(train_set)
    say = (log or (lambda _: None)) if rank == 0 else (lambda _: None)
    progress = progress and rank == 0
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())

    with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
        torch.manual_seed(recipe.seed)  # the initial weights
        model = EvalNetwork(genotype, channels, num_classes, layers, in_channels, auxiliary=recipe.auxiliary_weight > 0,
                            stem=stem, stem_stride=stem_stride, mean=mean, std=std).to(device)
        batches = _training_batches(train_set, recipe.batch_size // world_size, num_workers, loader, beton)
        training = _NetworkTraining(model, train_set, batches, recipe, device, resolve_amp(amp, device),
                                    channels_last)
        if checkpoint is not None and resume and os.path.exists(checkpoint):
            training.resume(checkpoint)
            say(f"resumed from {os.fspath(checkpoint)} after epoch {training.epochs_done}/{recipe.epochs}")
        began = time.perf_counter()
        for epoch in range(training.epochs_done, recipe.epochs):
            record = training.train_epoch(epoch, progress)
            if test_set is not None and eval_every and (epoch + 1) % eval_every == 0:
                record["test_accuracy"] = training.test_accuracy(test_set, progress=False)
            training.end_epoch(record, checkpoint)
            say(_epoch_line(record, recipe.epochs))
        seconds = time.perf_counter() - began
        result = NetworkTrainResult(model, genotype, None, training.history, seconds, model.num_parameters())
        if test_set is not None:
            _final_accuracies(result, training, test_set, progress, say)
    model.eval()
    return result


def _final_accuracies(result: NetworkTrainResult, training: "_NetworkTraining", test_set, progress: bool,
                      say: Callable[[str], None]) -> None:
    """Fills in the final test accuracy (measured now unless the last epoch was evaluated)
    and the best over the epochs evaluated."""
    last = result.history[-1]
    if "test_accuracy" not in last:
        last["test_accuracy"] = training.test_accuracy(test_set, progress)
    result.test_accuracy = last["test_accuracy"]
    result.best_test_accuracy, result.best_epoch = best_accuracy(result.history)
    say(f"test accuracy {100 * result.test_accuracy:.2f}% ({len(test_set):,} examples); best "
        f"{100 * result.best_test_accuracy:.2f}% at epoch {result.best_epoch}")


def _training_batches(train_set, batch_size: int, num_workers: int, loader: str,
                      beton: str | os.PathLike | None) -> Callable[[torch.Tensor], Any]:
    """A function from an epoch's order of example indices to its ``(images, labels)``
    batches of ``batch_size``, read by PyTorch or by FFCV."""
    if loader == "pytorch":
        return lambda order: ((x, y) for _, x, y in iterate_batches(train_set, batch_size, order, num_workers))
    # One FFCV loader for the run, over the .beton's examples in the order each epoch gives
    # (already this rank's share: it must not shard again).
    stream = ffcv_loader(prepare_beton(train_set, beton), np.arange(len(train_set)), batch_size=batch_size,
                         shuffle=False, rank=0, world_size=1, num_workers=num_workers or None)

    def read(order: torch.Tensor):
        stream.sampler.indices = order.numpy()
        stream.set_epoch(0)
        return iter(stream)
    return read


class _NetworkTraining:
    """One network in training: the model (and its ``DistributedDataParallel`` wrapper
    under ``torch.distributed``), the optimiser and its schedule, what defines the run
    for its checkpoint, and the epochs done; one method per step of the loop."""

    def __init__(self, model: EvalNetwork, train_set, batches: Callable[[torch.Tensor], Any], recipe: _Recipe,
                 device: torch.device, amp: bool, channels_last: bool | None) -> None:
        self.model, self.train_set, self.recipe, self.device, self.amp = model, train_set, recipe, device, amp
        self.batches = batches
        self.rank, self.world_size = distributed_rank()
        self.distributed = self.world_size > 1
        if use_channels_last(model, device, channels_last):
            model.to(memory_format=torch.channels_last)
        self.memory_format = input_memory_format(model)
        self.net: nn.Module = model
        if self.distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        n = len(train_set)
        self.optimizer = _optimizer(model, recipe)
        self.pad = _shift_padding(recipe, train_set)
        network = {key: value for key, value in model.config().items() if key != "genotype"}
        self.run = {"genotype": str(model.genotype), "network": network, "dataset": dataset_fingerprint(train_set),
                    "n": n, **asdict(recipe), "amp": amp, "world_size": self.world_size}
        self.history: list[dict[str, float]] = []
        self.epochs_done = 0

    def resume(self, checkpoint: str | os.PathLike) -> None:
        """Continues from ``checkpoint``, which this very run must have written."""
        state = resume_state(checkpoint, self.run, written_by="train_network",
                             remedy="delete it, pass another path, or train with resume=False",
                             recognise=lambda saved: "genotype" in saved["run"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = list(state["history"])
        self.epochs_done = state["epoch"]

    def train_epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        """Trains epoch ``epoch`` (from 0) and returns its record for the history."""
        began = time.perf_counter()
        seed = self.recipe.seed
        order = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(_derived_seed(seed, epoch)))
        shard = shard_epoch(order, self.recipe.batch_size, self.rank, self.world_size)
        augmentation = torch.Generator().manual_seed(_derived_seed(seed, epoch, self.rank, 1))
        # Drop-path draws from the global generator: seeded per epoch, so a resumed run
        # draws what an uninterrupted one would.
        torch.manual_seed(_derived_seed(seed, epoch, self.rank, 2))
        self.model.drop_path_prob = _drop_path_rate(self.recipe, epoch)
        lr = epoch_lr(self.recipe.lr_schedule, self.recipe.lr, epoch, self.recipe.epochs, self.recipe.warmup_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        bar = Progress(len(shard), f"epoch {epoch + 1}/{self.recipe.epochs}", enabled=progress, unit="img")
        loss, accuracy = self._train_pass(shard, augmentation, bar)
        return {"epoch": epoch + 1, "loss": loss, "train_accuracy": accuracy, "lr": lr,
                "drop_path_prob": self.model.drop_path_prob, "seconds": time.perf_counter() - began}

    def _train_pass(self, shard: torch.Tensor, augmentation: torch.Generator, bar: Progress) -> tuple[float, float]:
        """One pass over this rank's examples ``shard``; returns the mean loss of the main
        classifier and the training accuracy, over every rank."""
        self.net.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        for step, (inputs, labels) in enumerate(self.batches(shard)):
            x = to_float_images(self._augment(inputs, augmentation), self.device, self.memory_format)
            y = labels.to(self.device, non_blocking=True)
            loss, logits = self._step(x, y)
            loss_sum += loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            # Reading the loss back synchronises the device: only now and then.
            bar.update(len(y), postfix=f"loss {float(loss_sum) / seen:.3f}" if step % 20 == 0 else None)
        bar.close()
        totals = torch.stack([loss_sum, correct, torch.tensor(float(seen), dtype=torch.float64, device=self.device)])
        loss_sum, correct, seen = _all_reduce_sum(totals, self.distributed).tolist()
        return loss_sum / seen, correct / seen

    def _augment(self, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random shifts and flips, then cutout, of an image batch."""
        if inputs.dim() == 4 and self.pad is not None:
            inputs = random_crop_flip(inputs, self.pad, generator)
        if inputs.dim() == 4 and self.recipe.cutout:
            inputs = random_cutout(inputs, self.recipe.cutout, generator)
        return inputs

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on a batch; returns the main classifier's loss and logits, detached."""
        with autocast(self.device, self.amp):
            output = self.net(x)
            logits, aux_logits = output if isinstance(output, tuple) else (output, None)
            smoothing = self.recipe.label_smoothing
            loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
            objective = loss
            if aux_logits is not None:
                auxiliary = F.cross_entropy(aux_logits, y, label_smoothing=smoothing)
                objective = loss + self.recipe.auxiliary_weight * auxiliary
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.recipe.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
        self.optimizer.step()
        return loss.detach(), logits.detach()

    def test_accuracy(self, test_set, progress: bool) -> float:
        """The accuracy on ``test_set`` now, with rank 0's batch-norm statistics."""
        _sync_buffers(self.model, self.distributed)
        return _evaluate(self.model, test_set, max(self.recipe.batch_size, 256), self.device, self.amp, self.rank,
                         self.world_size, progress)

    def end_epoch(self, record: dict[str, float], checkpoint: str | os.PathLike | None) -> None:
        """Adds the epoch's record to the history and checkpoints the run (rank 0 writes)."""
        self.history.append(record)
        self.epochs_done = record["epoch"]
        if checkpoint is not None and self.rank == 0:
            save_checkpoint(checkpoint, {
                "run": self.run, "epoch": self.epochs_done, "history": self.history, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
            })


def _sync_buffers(model: nn.Module, distributed: bool) -> None:
    # Each rank updated the batch-norm statistics with its own last batch; rank 0's are
    # the ones checkpointed, so every rank evaluates with them.
    if distributed:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, 0)


def save_network(path: str | os.PathLike, model: EvalNetwork, **extra: Any) -> None:
    """Writes the network's architecture and weights atomically; ``extra`` (plain data,
    e.g. the test accuracy) is stored alongside. :func:`load_network` reads it back."""
    save_checkpoint(path, {"network": model.config(), "model": model.state_dict(), "extra": extra})


def load_network(path: str | os.PathLike, device: torch.device | str = "cpu") -> EvalNetwork:
    """The network saved by :func:`save_network`, or the one of a :func:`train_network`
    checkpoint, rebuilt with its weights, in evaluation mode."""
    state = load_checkpoint(path)
    config = state.get("network")
    if config is None and isinstance(state.get("run"), dict) and "genotype" in state["run"]:
        config = {**state["run"]["network"], "genotype": state["run"]["genotype"]}
    if not isinstance(config, dict):
        raise ValueError(f"{os.fspath(path)}: holds no evaluation network")
    model = EvalNetwork(**config)
    model.load_state_dict(state["model"])
    return model.to(device).eval()
