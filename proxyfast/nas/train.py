"""Final training of a found cell: the evaluation network trained from scratch.

:func:`train_network` follows DARTS's CIFAR-10 recipe (Liu et al., ICLR 2019, appendix
A.2): SGD with momentum 0.9 and weight decay 3e-4, a learning rate of 0.025 annealed to 0
along a cosine, gradient norms clipped at 5, an auxiliary loss weighted 0.4, a drop-path
rate raised linearly from 0 to 0.2 over the epochs, random crops and flips, and
optionally cutout. The budget (``epochs``, ``channels``, ``layers``) is the caller's:
DARTS trained 20 cells of 36 channels for 600 epochs.

It checkpoints atomically after every epoch and resumes exactly, and it runs under
``torch.distributed`` as it is: every rank takes its own slice of each batch, gradients
are averaged by ``DistributedDataParallel``, and rank 0 alone writes and prints.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_int, check_real
from ..data.fingerprint import dataset_fingerprint
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

__all__ = ["NetworkTrainResult", "load_network", "random_cutout", "save_network", "shard_epoch", "train_network"]


@dataclass
class NetworkTrainResult:
    """What :func:`train_network` returns.

    Attributes:
        model: the trained network (unwrapped, in evaluation mode).
        genotype: its architecture.
        test_accuracy: accuracy on the test set in [0, 1], or None without one.
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


def random_cutout(images: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch [B, C, H, W] with one ``length`` x ``length`` box set to 0
    in every channel (DeVries and Taylor, 2017): the box's centre is uniform over the
    image and the box is clipped at the borders. Returns a new tensor."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
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


def _cosine(total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor of each step: a cosine from 1 down to 0 at the last step
    (annealed per step, so that short budgets decay smoothly too)."""
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


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
        lr: the initial learning rate, annealed to 0 along a cosine, step by step.
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
        eval_every: also measure the test accuracy every this many epochs (0: at the end only).
        progress: draw a progress bar on stderr.
        log: called with one line per epoch and for the test accuracy (None: silent).
        num_workers: ``DataLoader`` workers for datasets that are not in memory.

    Raises:
        ValueError, TypeError: on a bad argument, or a checkpoint of another run (the
            message names the settings that differ).
    """
    genotype = get_genotype(genotype)
    epochs = check_int("epochs", epochs, 1)
    seed = check_int("seed", seed, 0)
    cutout = check_int("cutout", cutout, 0)
    eval_every = check_int("eval_every", eval_every, 0)
    lr = check_real("lr", lr, 0.0, open_low=True)
    momentum = check_real("momentum", momentum, 0.0, 1.0, open_high=True)
    weight_decay = check_real("weight_decay", weight_decay, 0.0)
    if grad_clip is not None:
        grad_clip = check_real("grad_clip", grad_clip, 0.0, open_low=True)
    auxiliary_weight = check_real("auxiliary_weight", auxiliary_weight, 0.0)
    drop_path_prob = check_real("drop_path_prob", drop_path_prob, 0.0, 1.0, open_high=True)
    if crop_padding is not None:
        crop_padding = check_int("crop_padding", crop_padding, 0)
    rank, world_size = distributed_rank()
    distributed = world_size > 1
    batch_size = check_int("batch_size", batch_size, 2 * world_size)
    if batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of the number of processes ({world_size})")
    n = len(train_set)
    if n < 2:
        raise ValueError(f"the training set needs at least 2 examples, got {n}")
    in_channels, num_classes = _image_channels_and_classes(train_set, num_classes)
    say = (log or (lambda _: None)) if rank == 0 else (lambda _: None)
    progress = progress and rank == 0
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    cuda_devices = [device.index] if device.type == "cuda" else []

    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        model = EvalNetwork(genotype, channels, num_classes, layers, in_channels, auxiliary=auxiliary_weight > 0,
                            stem=stem, stem_stride=stem_stride).to(device)
        amp = resolve_amp(amp, device)
        if use_channels_last(model, device, channels_last):
            model.to(memory_format=torch.channels_last)
        memory_format = input_memory_format(model)
        parameters = model.num_parameters()
        net: nn.Module = model
        if distributed:
            net = nn.parallel.DistributedDataParallel(model, device_ids=cuda_devices or None)

        # Every rank steps once per global batch that gives each rank at least two examples.
        steps_per_epoch = n // batch_size + (n % batch_size // world_size >= 2)
        if steps_per_epoch == 0:
            raise ValueError(f"the training set ({n} examples) is too small for one batch of {2 * world_size}")
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(epochs * steps_per_epoch))
        network = {key: value for key, value in model.config().items() if key != "genotype"}
        run = {
            "genotype": str(genotype), "network": network, "dataset": dataset_fingerprint(train_set), "n": n,
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
            "grad_clip": grad_clip, "auxiliary_weight": auxiliary_weight, "drop_path_prob": drop_path_prob,
            "cutout": cutout, "augment": augment, "crop_padding": crop_padding, "seed": seed, "amp": amp,
            "world_size": world_size,
        }
        history: list[dict[str, float]] = []
        start_epoch = 0
        if checkpoint is not None and resume and os.path.exists(checkpoint):
            state = resume_state(checkpoint, run, written_by="train_network",
                                 remedy="delete it, pass another path, or train with resume=False",
                                 recognise=lambda saved: "genotype" in saved["run"])
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = list(state["history"])
            start_epoch = state["epoch"]
            say(f"resumed from {os.fspath(checkpoint)} after epoch {start_epoch}/{epochs}")

        pad = None  # no shifts and flips
        if augment:
            pad = crop_padding if crop_padding is not None else max(1, min(dataset_image_size(train_set)) // 8)
        epoch_settings = dict(batch_size=batch_size // world_size, distributed=distributed, pad=pad, cutout=cutout,
                              auxiliary_weight=auxiliary_weight, grad_clip=grad_clip, device=device, amp=amp,
                              memory_format=memory_format, num_workers=num_workers)
        eval_batch = max(batch_size, 256)
        began = time.perf_counter()
        for epoch in range(start_epoch, epochs):
            epoch_start = time.perf_counter()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_derived_seed(seed, epoch)))
            shard = shard_epoch(order, batch_size, rank, world_size)
            augmentation = torch.Generator().manual_seed(_derived_seed(seed, epoch, rank, 1))
            # Drop-path draws from the global generator: seeded per epoch, so a resumed run
            # draws what an uninterrupted one would.
            torch.manual_seed(_derived_seed(seed, epoch, rank, 2))
            model.drop_path_prob = drop_path_prob * epoch / epochs
            epoch_lr = optimizer.param_groups[0]["lr"]
            bar = Progress(len(shard), f"epoch {epoch + 1}/{epochs}", enabled=progress, unit="img")
            loss, accuracy = _train_epoch(net, model, train_set, shard, optimizer, scheduler, augmentation, bar,
                                          **epoch_settings)
            record = {
                "epoch": epoch + 1, "loss": loss, "train_accuracy": accuracy, "lr": epoch_lr,
                "drop_path_prob": model.drop_path_prob, "seconds": time.perf_counter() - epoch_start,
            }
            if test_set is not None and eval_every and (epoch + 1) % eval_every == 0:
                _sync_buffers(model, distributed)
                record["test_accuracy"] = _evaluate(model, test_set, eval_batch, device, amp, rank, world_size, False)
            history.append(record)
            if checkpoint is not None and rank == 0:
                save_checkpoint(checkpoint, {
                    "run": run, "epoch": epoch + 1, "history": history, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                })
            test_note = f", test accuracy {100 * record['test_accuracy']:.2f}%" if "test_accuracy" in record else ""
            say(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}, train accuracy {100 * accuracy:.2f}%{test_note}, "
                f"lr {epoch_lr:.5f}, drop path {record['drop_path_prob']:.3f}, {record['seconds']:.1f} s")
        seconds = time.perf_counter() - began

        test_accuracy = None
        if test_set is not None:
            if "test_accuracy" in history[-1]:
                test_accuracy = history[-1]["test_accuracy"]
            else:
                _sync_buffers(model, distributed)
                test_accuracy = _evaluate(model, test_set, eval_batch, device, amp, rank, world_size, progress)
            say(f"test accuracy {100 * test_accuracy:.2f}% ({len(test_set):,} examples)")
    model.eval()
    return NetworkTrainResult(model, genotype, test_accuracy, history, seconds, parameters)


def _train_epoch(net: nn.Module, model: EvalNetwork, train_set, shard: torch.Tensor, optimizer, scheduler,
                 augmentation: torch.Generator, bar: Progress, *, batch_size: int, distributed: bool, pad: int | None,
                 cutout: int, auxiliary_weight: float, grad_clip: float | None, device: torch.device, amp: bool,
                 memory_format, num_workers: int) -> tuple[float, float]:
    """One pass over this rank's examples ``shard`` in batches of ``batch_size``; returns
    the mean loss of the main classifier and the training accuracy, over every rank."""
    net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    for step, (_, inputs, labels) in enumerate(iterate_batches(train_set, batch_size, shard, num_workers)):
        if inputs.dim() == 4 and pad is not None:
            inputs = random_crop_flip(inputs, pad, augmentation)
        if inputs.dim() == 4 and cutout:
            inputs = random_cutout(inputs, cutout, augmentation)
        x = to_float_images(inputs, device, memory_format)
        y = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            output = net(x)
            logits, aux_logits = output if isinstance(output, tuple) else (output, None)
            loss = F.cross_entropy(logits, y)
            objective = loss if aux_logits is None else loss + auxiliary_weight * F.cross_entropy(aux_logits, y)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        # Reading the loss back synchronises the device: only now and then.
        bar.update(len(y), postfix=f"loss {float(loss_sum) / seen:.3f}" if step % 20 == 0 else None)
    bar.close()
    totals = torch.stack([loss_sum, correct, torch.tensor(float(seen), dtype=torch.float64, device=device)])
    loss_sum, correct, seen = _all_reduce_sum(totals, distributed).tolist()
    return loss_sum / seen, correct / seen


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
