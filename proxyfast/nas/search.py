"""The bi-level DARTS / PC-DARTS search over a proxy's two halves.

The proxy is split as :meth:`ProxySet.split` divides it: the first ``train_portion`` of
its (randomly ordered) indices train the supernet's weights, the rest its architecture
parameters. Every step takes one batch of each: an architecture step on the second half
(first or second order, :class:`Architect`), then one SGD step of the weights on the
first half, with gradient clipping and a per-step cosine learning rate (DARTS, Liu et
al., ICLR 2019, algorithm 1). PC-DARTS (Xu et al., ICLR 2020) adds partial channels,
edge normalisation and warm-up epochs of weight steps only.

    >>> config = SearchConfig.for_algo("darts", epochs=50)
    >>> result = search(dataset, "p1.proxyset", config, "out/search")
    >>> print(result.genotype)

:func:`search` is the whole loop: loaders, progress bar, a per-epoch log, atomic
checkpoints (at every epoch end and, optionally, every few steps) and an exact resume
from them, and the output files. :func:`build_search` and :func:`search_step` are its
parts, for timing suites and custom loops. Under ``torch.distributed`` the weight step
runs through ``DistributedDataParallel``, both halves are sharded over the ranks, and
only rank 0 prints and writes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

from .._atomic import atomic_write
from .._checks import check_int, check_output_dir, check_real, check_seed
from .._version import __version__
from ..runtime import (
    Progress,
    dataset_image_size,
    random_crop_flip,
    resolve_device,
    resume_state,
    save_checkpoint,
    to_float_images,
)
from ..data.fingerprint import dataset_fingerprint
from ..loaders.ffcv import ffcv_loader
from ..loaders.pytorch import CycleLoader, distributed_rank, torch_loader
from ..selection import ProxySet
from ..scoring import Scores
from .architect import Architect
from .genotypes import Genotype
from .supernet import STEMS, SearchNetwork
from .train import LOADERS, prepare_beton

__all__ = ["ALGORITHMS", "SearchConfig", "SearchResult", "SearchState", "build_search", "search", "search_step"]

ALGORITHMS = ("darts", "pcdarts")

CHECKPOINT_NAME = "search.ckpt"
LOG_NAME = "search_log.json"
GENOTYPE_NAME = "genotype.txt"
# Every file a search writes into its output directory.
OUTPUT_NAMES = (CHECKPOINT_NAME, LOG_NAME, GENOTYPE_NAME, "alphas_normal.png", "alphas_reduce.png", "cell_normal.png",
                "cell_reduce.png")
LOG_FORMAT = "proxyfast-search-log"
LOG_VERSION = 1

# PC-DARTS's published search settings (Xu et al., ICLR 2020, and its code): larger
# batches, which partial channels make affordable, a larger learning rate decaying to 0,
# and 15 epochs that train only the weights before the architecture moves.
_PCDARTS_DEFAULTS: dict[str, Any] = {
    "algo": "pcdarts",
    "order": 1,
    "batch_size": 256,
    "lr": 0.1,
    "lr_min": 0.0,
    "arch_lr": 6e-4,
    "partial_channels": 4,
    "warmup_epochs": 15,
}


@dataclass(frozen=True)
class SearchConfig:
    """The settings of a search; the defaults are DARTS's CIFAR-10 search (section 2.4
    of the design), :meth:`for_algo` gives each algorithm's published settings.

    Attributes:
        algo: ``"darts"`` or ``"pcdarts"`` (which needs ``partial_channels``).
        order: the architect's order, 1 or 2 (PC-DARTS: 1).
        epochs: passes over the weights' half of the proxy.
        batch_size: examples per step and per rank, in each half.
        channels, layers, steps, multiplier: the supernet (16 channels, 8 cells, 4 nodes).
        stem: ``"cifar"`` or ``"imagenet"`` (224 -> 28).
        stem_stride: CIFAR stem only: 2 halves the resolution (cheap CPU runs).
        lr, lr_min, momentum, weight_decay: SGD of the weights, cosine from ``lr`` to
            ``lr_min`` over every step of the search.
        arch_lr, arch_weight_decay: Adam of the architecture (betas 0.5, 0.999).
        grad_clip: the largest norm of the weights' gradient.
        partial_channels: ``k`` of PC-DARTS (1/k of the channels go through each edge).
        warmup_epochs: epochs of weight steps only, before the architecture moves.
        train_portion: the share of the proxy that trains the weights.
        augment: random shifts (1/8 of the image size) and horizontal flips of both halves.
        seed: seeds the supernet's initial weights, the loaders' orders and the
            augmentation; a run is reproducible from it.
        impl: the mixed-op implementation; None takes the library's default. It does
            not change the search, so a checkpoint resumes under another one.
    """

    algo: str = "darts"
    order: int = 1
    epochs: int = 50
    batch_size: int = 64
    channels: int = 16
    layers: int = 8
    steps: int = 4
    multiplier: int = 4
    stem: str = "cifar"
    stem_stride: int = 1
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    partial_channels: int | None = None
    warmup_epochs: int = 0
    train_portion: float = 0.5
    augment: bool = True
    seed: int = 0
    impl: str | None = None

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {', '.join(ALGORITHMS)}, got {self.algo!r}")
        if self.order not in (1, 2) or isinstance(self.order, bool):
            raise ValueError(f"order must be 1 (first order) or 2 (second order), got {self.order!r}")
        for name in ("epochs", "channels", "layers", "steps", "multiplier", "stem_stride"):
            check_int(name, getattr(self, name))
        check_int("batch_size", self.batch_size, 2)  # batch norm needs two examples
        check_int("warmup_epochs", self.warmup_epochs, 0)
        check_seed("seed", self.seed)
        if self.multiplier > self.steps:
            raise ValueError(f"multiplier ({self.multiplier}) cannot exceed steps ({self.steps})")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if self.stem != "cifar" and self.stem_stride != 1:
            raise ValueError(f"stem_stride applies to the cifar stem only, got {self.stem_stride} "
                             f"with stem {self.stem!r}")
        check_real("lr", self.lr, 0.0, open_low=True)
        check_real("lr_min", self.lr_min, 0.0, self.lr)
        check_real("momentum", self.momentum, 0.0, 1.0, open_high=True)
        check_real("weight_decay", self.weight_decay, 0.0)
        check_real("arch_lr", self.arch_lr, 0.0, open_low=True)
        check_real("arch_weight_decay", self.arch_weight_decay, 0.0)
        check_real("grad_clip", self.grad_clip, 0.0, open_low=True)
        check_real("train_portion", self.train_portion, 0.0, 1.0, open_low=True, open_high=True)
        if self.algo == "pcdarts":
            if self.partial_channels is None:
                raise ValueError("algo 'pcdarts' needs partial_channels (4 in PC-DARTS); "
                                 "SearchConfig.for_algo('pcdarts') sets the published settings")
            check_int("partial_channels", self.partial_channels)
            if self.channels % self.partial_channels:
                raise ValueError(f"channels ({self.channels}) must be a multiple of partial_channels "
                                 f"({self.partial_channels})")
            if self.order != 1:
                raise ValueError(f"PC-DARTS searches with the first-order architect; got order {self.order}")
        elif self.partial_channels is not None:
            raise ValueError(f"partial_channels is PC-DARTS's; use algo 'pcdarts' (got algo {self.algo!r} "
                             f"with partial_channels={self.partial_channels})")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be less than epochs ({self.epochs}), "
                             "or the architecture is never updated")
        if not isinstance(self.augment, bool):
            raise TypeError(f"augment must be True or False, got {self.augment!r}")
        if self.impl is not None and not isinstance(self.impl, str):
            raise TypeError(f"impl must be a mixed-op implementation's name or None, got {self.impl!r}")

    @classmethod
    def for_algo(cls, algo: str, **overrides: Any) -> "SearchConfig":
        """The published settings of ``algo`` (``"darts"``: DARTS on CIFAR-10; ``"pcdarts"``:
        batch 256, lr 0.1 decaying to 0, arch lr 6e-4, k = 4, 15 warm-up epochs), with
        ``overrides`` on top."""
        if algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {', '.join(ALGORITHMS)}, got {algo!r}")
        settings = dict(_PCDARTS_DEFAULTS) if algo == "pcdarts" else {"algo": "darts"}
        settings.update(overrides)
        if settings["algo"] != algo:
            raise ValueError(f"for_algo({algo!r}) cannot override algo with {settings['algo']!r}")
        return cls(**settings)

    def identity(self) -> dict[str, Any]:
        """The fields that define the search (all but ``impl``), for checkpoints."""
        fields = dataclasses.asdict(self)
        del fields["impl"]
        return fields


@dataclass
class SearchState:
    """Everything a search step changes.

    Attributes:
        model: the supernet (unwrapped).
        architect: the architecture step and its Adam optimiser.
        optimizer: SGD of the weights.
        scheduler: cosine from ``lr`` to ``lr_min`` over ``epochs * steps_per_epoch`` steps.
        config: the settings it was built from.
        ddp: ``DistributedDataParallel`` around ``model`` when ``torch.distributed`` is
            initialised with more than one rank, else None; the weight step runs through it.
    """

    model: SearchNetwork
    architect: Architect
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: SearchConfig
    ddp: nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return self.model.alphas_normal.device

    @property
    def lr(self) -> float:
        """The weights' current learning rate."""
        return self.optimizer.param_groups[0]["lr"]


@dataclass
class SearchResult:
    """What :func:`search` returns.

    Attributes:
        genotype: the cell the final architecture parameters point to.
        history: one record per epoch, as in the JSON log.
        seconds: search wall time, summed over the runs that resumed one another (the
            work lost to an interruption is counted when it is redone).
        state: the final supernet and optimisers.
        files: the files written, by kind (rank 0; empty on other ranks).
    """

    genotype: Genotype
    history: list[dict[str, Any]]
    seconds: float
    state: SearchState
    files: dict[str, str] = field(default_factory=dict)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def build_search(config: SearchConfig, in_channels: int, num_classes: int, steps_per_epoch: int,
                 device: torch.device | str | None = None) -> SearchState:
    """The supernet, its two optimisers and the learning-rate schedule for ``config``.

    The supernet's initial weights and architecture parameters are drawn from
    ``config.seed`` alone (the global random state is left as it was), so every rank and
    every run starts from the same network.

    Args:
        in_channels, num_classes: of the data.
        steps_per_epoch: weight steps per epoch (the cosine schedule spans them all).
        device: where the supernet lives (default: :func:`proxyfast.runtime.default_device`).
    """
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
    check_int("in_channels", in_channels)
    check_int("num_classes", num_classes, 2)
    check_int("steps_per_epoch", steps_per_epoch)
    device = resolve_device(device)
    impl = {} if config.impl is None else {"impl": config.impl}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SearchNetwork(
            channels=config.channels, num_classes=num_classes, layers=config.layers, in_channels=in_channels,
            steps=config.steps, multiplier=config.multiplier, stem=config.stem, stem_stride=config.stem_stride,
            partial_channels=config.partial_channels, **impl,
        )
    model.to(device)
    optimizer = torch.optim.SGD(list(model.weight_parameters()), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch,
                                                           eta_min=config.lr_min)
    ddp = None
    if _distributed():
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    architect = Architect(ddp if ddp is not None else model, order=config.order, lr=config.arch_lr,
                          betas=(0.5, 0.999), weight_decay=config.arch_weight_decay,
                          network_momentum=config.momentum, network_weight_decay=config.weight_decay)
    return SearchState(model, architect, optimizer, scheduler, config, ddp)


def _step(state: SearchState, train_batch: Sequence[torch.Tensor], val_batch: Sequence[torch.Tensor] | None,
          update_arch: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`search_step`, also returning the weight step's logits (for the accuracy)."""
    if update_arch:
        val_loss = state.architect.step(train_batch, val_batch, lr=state.lr, network_optimizer=state.optimizer)
    else:
        val_loss = torch.full((), math.nan, device=state.device)
    inputs, targets = train_batch
    network = state.ddp if state.ddp is not None else state.model
    # The architecture parameters get a gradient here too (DistributedDataParallel
    # expects every parameter to); it is cleared, and the architect sets its own.
    state.model.zero_grad(set_to_none=True)
    logits = network(inputs)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    nn.utils.clip_grad_norm_(state.optimizer.param_groups[0]["params"], state.config.grad_clip)
    state.optimizer.step()
    state.scheduler.step()
    return loss.detach(), val_loss, logits.detach()


def search_step(state: SearchState, train_batch: Sequence[torch.Tensor], val_batch: Sequence[torch.Tensor] | None,
                *, update_arch: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One bi-level step on batches already on the device as float inputs.

    With ``update_arch``, first one architecture step on ``val_batch`` (the second order
    also uses ``train_batch`` and the weights' current learning rate and momentum); then
    one SGD step of the weights on ``train_batch``, with the gradient clipped to
    ``grad_clip``, and one step of the learning-rate schedule.

    Returns:
        The detached ``(train loss, val loss)``; the val loss is NaN without an
        architecture step.
    """
    if update_arch and val_batch is None:
        raise ValueError("an architecture step (update_arch=True) needs val_batch")
    loss, val_loss, _ = _step(state, train_batch, val_batch, update_arch)
    return loss, val_loss


# ---------------------------------------------------------------------------------------
# The search loop


def _num_classes(dataset) -> int:
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return len(classes)
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return int(np.max(np.asarray(labels))) + 1
    raise TypeError(f"the dataset ({type(dataset).__name__}) must have a 'classes' or 'labels' attribute, "
                    "to size the classifier")


def _dataset_name(dataset) -> str:
    return getattr(dataset, "name", type(dataset).__name__)


def _resolve_proxy(proxy, dataset, scores: Scores | str | os.PathLike | None) -> ProxySet | None:
    """The proxy as a ProxySet checked against the dataset (and the scores, if given)."""
    if proxy is None:
        if scores is not None:
            raise ValueError("scores are checked against a proxy; without a proxy (the whole training set) "
                             "pass no scores")
        return None
    source = "the proxy"
    if isinstance(proxy, (str, os.PathLike)):
        source = f"proxy {os.fspath(proxy)!r}"
        proxy = ProxySet.load(proxy)
    elif not isinstance(proxy, ProxySet):
        raise TypeError(f"proxy must be a ProxySet, the path of a proxy set file, or None; "
                        f"got {type(proxy).__name__}")
    proxy.check_dataset(dataset, source=source)
    if scores is not None:
        if isinstance(scores, (str, os.PathLike)):
            scores = Scores.load(scores)
        proxy.check_scores(scores, source=source)
        scores.check_dataset(dataset, source="the proxy's scores")
    return proxy


def _proxy_summary(proxy: ProxySet | None, dataset) -> dict[str, Any]:
    if proxy is None:
        return {"method": "full", "k": len(dataset), "n": len(dataset), "fingerprint": None, "params": {}}
    return {"method": proxy.method, "k": proxy.k, "n": proxy.n, "fingerprint": proxy.fingerprint,
            "params": proxy.params}


def _search_indices(proxy: ProxySet | None, n: int, seed: int) -> np.ndarray:
    """The proxy's indices in its own (random) order; for the whole training set, a
    seeded random order, so that its two halves are unbiased samples too."""
    if proxy is not None:
        return proxy.indices.detach().cpu().numpy().astype(np.int64)
    return np.random.default_rng([seed, n]).permutation(n).astype(np.int64)


def _usable_batches(loader) -> int:
    """Batches of one pass with at least two examples (batch norm trains on no fewer)."""
    per_rank, batch = len(loader.sampler), loader.batch_size
    return per_rank // batch + (per_rank % batch >= 2)


def _augment_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    value = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    return torch.Generator().manual_seed(value)


def _cell_weights(model: SearchNetwork) -> dict[str, list]:
    """The softmaxed architecture parameters, as nested lists for the log."""
    with torch.no_grad():
        weights = {
            "alphas_normal": F.softmax(model.alphas_normal, dim=-1).tolist(),
            "alphas_reduce": F.softmax(model.alphas_reduce, dim=-1).tolist(),
        }
        if model.edge_normalization:
            weights["betas_normal"] = model._edge_weights(model.betas_normal).tolist()
            weights["betas_reduce"] = model._edge_weights(model.betas_reduce).tolist()
    return weights


def _device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    if not _distributed():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


class _Batches:
    """Turns loader batches into device inputs: uint8 images augmented on the CPU, then
    float in [0, 1]; the augmentation's generator is part of the checkpoint."""

    def __init__(self, device: torch.device, pad: int) -> None:
        self.device, self.pad = device, pad
        self.generator = torch.Generator()

    def __call__(self, batch: Sequence[torch.Tensor], augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = batch
        if augment and self.pad and inputs.dtype == torch.uint8 and inputs.dim() == 4:
            inputs = random_crop_flip(inputs, self.pad, self.generator)
        return to_float_images(inputs, self.device), labels.to(self.device, non_blocking=True)


@torch.no_grad()
def _evaluate(model: SearchNetwork, loader, prepare: Callable) -> tuple[float, float]:
    """(loss, accuracy) of the supernet over one pass of ``loader``, summed over the ranks.

    The batch norms normalise with each batch's statistics, as in the search steps: their
    running averages lag far behind weights that move this fast (early in a search, an
    eval-mode supernet is no better than chance). The running averages are restored
    afterwards, and a last batch of one example is left out.
    """
    saved = [buffer.clone() for buffer in model.buffers()]
    was_training = model.training
    model.train()
    loss = correct = count = 0.0
    try:
        for images, labels in loader:
            if len(labels) < 2:
                continue
            inputs, targets = prepare((images, labels), augment=False)
            logits = model(inputs)
            loss += F.cross_entropy(logits, targets, reduction="sum").item()
            correct += (logits.argmax(1) == targets).sum().item()
            count += len(targets)
    finally:
        for buffer, value in zip(model.buffers(), saved):
            buffer.copy_(value)
        model.train(was_training)
    loss, correct, count = _all_sum([loss, correct, count], next(model.parameters()).device)
    return loss / count, correct / count


def search(
    dataset,
    proxy: ProxySet | str | os.PathLike | None,
    config: SearchConfig,
    out_dir: str | os.PathLike,
    *,
    device: torch.device | str | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    checkpoint_every: int | None = None,
    scores: Scores | str | os.PathLike | None = None,
    plots: bool = True,
    loader: str = "pytorch",
    beton: str | os.PathLike | None = None,
) -> SearchResult:
    """Runs the bi-level search on ``proxy``'s two halves and writes the result to ``out_dir``.

    Args:
        dataset: the training set the proxy was selected from: map-style ``(image,
            label)`` pairs, images as uint8 [C, H, W] (fed as float in [0, 1]).
        proxy: a :class:`ProxySet` of ``dataset`` or the path of one; ``None`` searches on
            the whole training set, split into halves the same way.
        config: the search's settings (:meth:`SearchConfig.for_algo`).
        out_dir: receives ``search.ckpt`` (written atomically at every epoch end and
            every ``checkpoint_every`` steps), ``search_log.json`` (at every epoch end),
            and at the end ``genotype.txt`` and, when matplotlib is installed, the plots
            ``alphas_normal.png``, ``alphas_reduce.png``, ``cell_normal.png`` and
            ``cell_reduce.png``.
        device: where to search (default: CUDA when available, else the CPU).
        resume: continue from ``out_dir``'s checkpoint when there is one; it must be of
            the same search (configuration, dataset, proxy and number of ranks). The
            resumed run ends exactly where an uninterrupted one would.
        progress: draw a progress bar on stderr.
        log: called with a line per epoch and one for the genotype (None: silent).
        checkpoint_every: also checkpoint every this many steps within an epoch.
        scores: the scores the proxy was selected from (or their file); when given, the
            chain proxy -> scores -> dataset is checked by fingerprint, not only by size.
        plots: draw the plots at the end (they take a few seconds).
        loader: ``"pytorch"`` or ``"ffcv"``: the proxy's images streamed by FFCV from
            ``beton`` (written from ``dataset`` when the file does not exist), in the same
            order, so the same batches as the PyTorch loaders'.

    Raises:
        ValueError: a proxy of another dataset, halves too small for a step, or a
            checkpoint of another search.
    """
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every)
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {', '.join(LOADERS)}, got {loader!r}")
    if loader == "ffcv" and beton is None:
        raise ValueError("loader='ffcv' needs beton: the .beton file to read (written there when absent)")
    device = resolve_device(device)
    input_files = {name: value for name, value in (("proxy", proxy), ("scores", scores))
                   if isinstance(value, (str, os.PathLike))}
    check_output_dir("out_dir", out_dir, OUTPUT_NAMES, input_files)
    if len(dataset) < 4:
        raise ValueError(f"the dataset needs at least 4 examples for a search, got {len(dataset)}")
    proxy = _resolve_proxy(proxy, dataset, scores)
    if loader == "pytorch":
        source = functools.partial(torch_loader, dataset)
    else:
        source = functools.partial(ffcv_loader, prepare_beton(dataset, beton))
    run = _SearchRun(dataset, proxy, config, os.fspath(out_dir), device, log, progress, checkpoint_every, source)
    if resume and os.path.exists(run.checkpoint_path):
        run.resume()
    if _distributed():
        dist.barrier()  # every rank has read the checkpoint before rank 0 writes the next
    run.position_architecture_batches()
    run.started = time.perf_counter()
    run.model.train()
    while run.epoch < config.epochs:
        run.train_epoch()
        run.end_epoch()
    return run.finish(plots)


class _SearchRun:
    """One search in progress: its loaders and state, where it stands (whole epochs done,
    batches of the current epoch's loader pass consumed, architecture batches consumed
    since the start, the running sums of the current epoch), its checkpoint and its log."""

    def __init__(self, dataset, proxy: ProxySet | None, config: SearchConfig, out_dir: str, device: torch.device,
                 log: Callable[[str], None] | None, progress: bool, checkpoint_every: int | None,
                 source: Callable) -> None:
        self.config, self.out_dir, self.device, self.checkpoint_every = config, out_dir, device, checkpoint_every
        self.rank, self.world_size = distributed_rank()
        self.main_rank = self.rank == 0
        self.say = log if (log is not None and self.main_rank) else (lambda _: None)
        self.progress = progress and self.main_rank
        self._build_loaders(dataset, proxy, source)
        num_classes = _num_classes(dataset)
        self.state = build_search(config, int(dataset[0][0].shape[0]), num_classes, self.steps_per_epoch, device)
        self.model = self.state.model
        self.run = {
            "config": config.identity(),
            "dataset": {"name": _dataset_name(dataset), "size": len(dataset),
                        "fingerprint": dataset_fingerprint(dataset)},
            "proxy": _proxy_summary(proxy, dataset),
            "world_size": self.world_size,
        }
        if self.main_rank:
            os.makedirs(out_dir, exist_ok=True)
        self.checkpoint_path = os.path.join(out_dir, CHECKPOINT_NAME)
        self.prepare = _Batches(device, max(1, min(dataset_image_size(dataset)) // 8) if config.augment else 0)
        self.history: list[dict[str, Any]] = []
        self.epoch, self.position, self.val_position, self.global_step, self.elapsed = 0, 0, 0, 0, 0.0
        self.sums = _new_sums(device)
        self.initial = _cell_weights(self.model)
        self.started = time.perf_counter()
        self.log_info = {
            "format": LOG_FORMAT, "version": LOG_VERSION, "proxyfast_version": __version__,
            "torch_version": torch.__version__,
            "config": dataclasses.asdict(config),
            "dataset": {**self.run["dataset"], "image_shape": list(dataset[0][0].shape), "num_classes": num_classes},
            "proxy": self.run["proxy"], "world_size": self.world_size, "device": _device_description(device),
            "steps_per_epoch": self.steps_per_epoch,
            "weights_examples": len(self.train_loader.sampler) * self.world_size,
            "architecture_examples": len(self.val_loader.sampler) * self.world_size,
        }

    def _build_loaders(self, dataset, proxy: ProxySet | None, source: Callable) -> None:
        """The weight half's loader, the architecture half's (cycled) and its evaluation pass;
        ``source`` makes each from the proxy's indices: :func:`torch_loader` on ``dataset``,
        or :func:`ffcv_loader` on its .beton (the same batches)."""
        config = self.config
        indices = _search_indices(proxy, len(dataset), config.seed)
        common = dict(batch_size=config.batch_size, train_portion=config.train_portion)
        self.train_loader = source(indices, part="train", seed=config.seed, **common)
        self.val_loader = source(indices, part="val", seed=config.seed + 1, **common)
        self.eval_loader = source(indices, part="val", shuffle=False, **common)
        for half, loader in (("weights", self.train_loader), ("architecture", self.val_loader)):
            if _usable_batches(loader) == 0:
                raise ValueError(
                    f"the {half} half of the {'proxy' if proxy is not None else 'training set'} gives "
                    f"{len(loader.sampler)} examples per rank: a step needs at least 2"
                )
        self.steps_per_epoch = _usable_batches(self.train_loader)

    def resume(self) -> None:
        """Continues from the checkpoint, which must be of this very search."""
        saved = resume_state(self.checkpoint_path, self.run, written_by="search",
                             remedy="remove it, choose another output directory, or start over without resuming",
                             recognise=lambda state: state.get("kind") == "search")
        self.model.load_state_dict(saved["model"])
        self.state.optimizer.load_state_dict(saved["optimizer"])
        self.state.architect.load_state_dict(saved["architect"])
        self.state.scheduler.load_state_dict(saved["scheduler"])
        self.prepare.generator.set_state(saved["augment_rng"][self.rank])
        self.history, self.initial = list(saved["history"]), saved["initial"]
        self.epoch, self.position, self.val_position = saved["epoch"], saved["position"], saved["val_position"]
        self.global_step, self.elapsed, self.sums = saved["step"], saved["seconds"], dict(saved["sums"])
        self.sums["totals"] = self.sums["totals"].to(self.device)
        where = f"step {self.position} of epoch {self.epoch + 1}" if self.position else f"epoch {self.epoch}"
        self.say(f"resumed from {self.checkpoint_path} after {where}/{self.config.epochs}")

    def position_architecture_batches(self) -> None:
        """Cycles the architecture half to where the run stands."""
        self.val_batches = CycleLoader(self.val_loader)
        passes, offset = divmod(self.val_position, len(self.val_loader))
        self.val_loader.sampler.set_epoch(passes)
        for _ in range(offset):
            next(self.val_batches)

    def next_val_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            batch = next(self.val_batches)
            self.val_position += 1
            if len(batch[1]) >= 2:
                return self.prepare(batch)

    def save(self, epoch_done: int) -> None:
        """Checkpoints the run. Called on every rank: each contributes its augmentation
        state; rank 0 writes."""
        rng_states = _gather_rng(self.prepare.generator.get_state(), self.world_size)
        if not self.main_rank:
            return
        save_checkpoint(self.checkpoint_path, {
            "kind": "search", "run": self.run, "epoch": epoch_done, "position": self.position,
            "val_position": self.val_position, "step": self.global_step, "seconds": self.seconds(),
            "sums": self.sums, "history": self.history, "initial": self.initial, "model": self.model.state_dict(),
            "optimizer": self.state.optimizer.state_dict(), "architect": self.state.architect.state_dict(),
            "scheduler": self.state.scheduler.state_dict(), "augment_rng": rng_states,
        })

    def train_epoch(self) -> None:
        """The rest of the current epoch's steps (all of them unless it resumed mid-epoch)."""
        config = self.config
        update_arch = self.epoch >= config.warmup_epochs
        if self.position == 0:
            self.prepare.generator = _augment_generator(config.seed, self.epoch, self.rank)
            self.sums = _new_sums(self.device, lr=self.state.lr)
        sums = self.sums
        segment_start = time.perf_counter()
        self.train_loader.sampler.set_epoch(self.epoch)
        batches = iter(self.train_loader)
        for _ in range(self.position):  # the batches done before the checkpoint
            next(batches)
        bar = Progress(self.steps_per_epoch, f"search {self.epoch + 1}/{config.epochs}", enabled=self.progress,
                       unit="step")
        bar.update(sums["steps"])
        for batch in batches:
            self.position += 1
            if len(batch[1]) < 2:
                continue
            train_batch = self.prepare(batch)
            val_batch = self.next_val_batch() if update_arch else None
            loss, val_loss, logits = _step(self.state, train_batch, val_batch, update_arch)
            self.global_step += 1
            sums["steps"] += 1
            # Summed on the device: reading a value back would synchronise every step.
            totals, labels = sums["totals"], train_batch[1]
            totals[0] += loss.double() * len(labels)
            totals[1] += (logits.argmax(1) == labels).sum()
            totals[2] += len(labels)
            if update_arch:
                totals[3] += val_loss
            postfix = f"loss {(totals[0] / totals[2]).item():.3f}" if sums["steps"] % 20 == 1 else None
            bar.update(1, postfix=postfix)
            if (self.checkpoint_every and self.global_step % self.checkpoint_every == 0
                    and self.position < len(self.train_loader)):
                sums["seconds"] += time.perf_counter() - segment_start
                segment_start = time.perf_counter()
                self.save(self.epoch)
        bar.close()
        sums["seconds"] += time.perf_counter() - segment_start

    def end_epoch(self) -> None:
        """Evaluates, records and logs the epoch just trained, then checkpoints."""
        config, sums = self.config, self.sums
        update_arch = self.epoch >= config.warmup_epochs
        evaluation_start = time.perf_counter()
        val_loss, val_accuracy = _evaluate(self.model, self.eval_loader, self.prepare)
        sums["seconds"] += time.perf_counter() - evaluation_start
        loss_sum, correct, count, arch_loss_sum, steps = _all_sum([*sums["totals"].tolist(), sums["steps"]],
                                                                  self.device)
        record = {
            "epoch": self.epoch + 1,
            "lr": sums["lr"],
            "train_loss": loss_sum / count,
            "train_accuracy": correct / count,
            "arch_loss": arch_loss_sum / steps if update_arch else None,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": sums["seconds"],
            "arch_updated": update_arch,
            **_cell_weights(self.model),
            "genotype": str(self.model.genotype()),
        }
        self.history.append(record)
        self.epoch, self.position = self.epoch + 1, 0
        self.save(self.epoch)
        if self.main_rank:
            _write_log(self.out_dir, self.log_info, self.initial, self.history, self.seconds(), finished=False)
        arch = f"arch loss {record['arch_loss']:.4f}, " if update_arch else "weights only, "
        self.say(f"epoch {self.epoch}/{config.epochs}: train loss {record['train_loss']:.4f} "
                 f"acc {100 * record['train_accuracy']:.2f}%, {arch}val loss {val_loss:.4f} "
                 f"acc {100 * val_accuracy:.2f}%, lr {record['lr']:.5f}, {record['seconds']:.1f} s")

    def seconds(self) -> float:
        """Search wall time so far, over every run that resumed this one."""
        return self.elapsed + time.perf_counter() - self.started

    def finish(self, plots: bool) -> SearchResult:
        """Writes the outputs (rank 0) and returns the result."""
        seconds = self.seconds()
        genotype = self.model.genotype()
        files: dict[str, str] = {}
        if self.main_rank:
            files = _write_outputs(self.out_dir, self.log_info, self.initial, self.history, seconds, genotype,
                                   self.say, plots)
            files["checkpoint"] = self.checkpoint_path
        self.say(f"genotype: {genotype}")
        self.say(f"search wall time: {seconds:.1f} s")
        return SearchResult(genotype, self.history, seconds, self.state, files)


def _new_sums(device: torch.device, lr: float = math.nan) -> dict[str, Any]:
    """The running sums of an epoch: its learning rate, steps and seconds, and on the
    device the train loss times examples, correct predictions, examples and arch loss."""
    return {"lr": lr, "steps": 0, "seconds": 0.0, "totals": torch.zeros(4, dtype=torch.float64, device=device)}


def _gather_rng(local: torch.Tensor, world_size: int) -> list[torch.Tensor]:
    """Every rank's augmentation generator state, indexed by rank (called on all ranks)."""
    if world_size == 1:
        return [local]
    states = [None] * world_size
    dist.all_gather_object(states, local)
    return states


def _write_log(out_dir: str, info: dict[str, Any], initial: dict[str, list], history: list[dict[str, Any]],
               seconds: float, finished: bool, genotype: Genotype | None = None) -> str:
    path = os.path.join(out_dir, LOG_NAME)
    body = {**info, "initial": initial, "epochs": history, "seconds": seconds, "finished": finished,
            "genotype": str(genotype) if genotype is not None else None}
    with atomic_write(path) as file:
        file.write(json.dumps(body, indent=1, allow_nan=False).encode("utf-8") + b"\n")
    return path


def _write_outputs(out_dir: str, info: dict[str, Any], initial: dict[str, list], history: list[dict[str, Any]],
                   seconds: float, genotype: Genotype, say: Callable[[str], None], plots: bool) -> dict[str, str]:
    files = {"log": _write_log(out_dir, info, initial, history, seconds, finished=True, genotype=genotype)}
    files["genotype"] = os.path.join(out_dir, GENOTYPE_NAME)
    with atomic_write(files["genotype"]) as file:
        file.write(f"{genotype}\n".encode("utf-8"))
    if plots:
        try:
            from .plots import plot_search
            files.update(plot_search(initial, history, genotype, out_dir))
        except ImportError as error:
            say(f"skipped the plots: {error}")
    return files
