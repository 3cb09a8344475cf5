"""The end-to-end job on real data: dataset -> baseline -> scores -> a proxy per method.

On Fashion-MNIST (60,000 training images) :func:`run_pipeline`

1. trains a ResNet-20-style baseline from scratch and reports its test accuracy;
   forgetting events are counted during this same training run (it starts from scratch,
   which is all that Toneva et al.'s statistic needs), saving a second training run;
2. scores the training images (entropy, predictions, penultimate features);
3. selects a proxy with every registered method and writes it, its per-bin table and
   one figure in the style of the paper's Figure 2;
4. prints the time of every stage.

Every artefact is written atomically and reused when the job is run again with the same
output directory: an interrupted run resumes from the last finished training epoch.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch

from .selection import summary as report
from ._atomic import atomic_write
from ._checks import check_bin_width, check_fraction, check_int, check_output_dir, check_real, check_seed
from .data import fashion_mnist
from .scoring import write_entropy_list
from .models import resnet20
from .baseline import Forgetting, TrainResult, train
from .runtime import resolve_amp, resolve_device
from .scoring import Scores, model_info, score
from .selection import ProxySet, available_methods, check_method, select

__all__ = ["PipelineConfig", "run_pipeline"]

# Fashion-MNIST pixel statistics (training set, uint8 / 255).
_FASHION_MNIST_MEAN, _FASHION_MNIST_STD = 0.2860, 0.3530


# The paper's methods first, then the baselines; any other registered method after them.
_METHOD_ORDER = ("p1", "p2", "p3", "deterministic", "random", "entropy_top", "entropy_bottom", "forgetting", "kcenter")


def _default_methods() -> list[str]:
    registered = available_methods()
    return [m for m in _METHOD_ORDER if m in registered] + [m for m in registered if m not in _METHOD_ORDER]


@dataclass
class PipelineConfig:
    """Settings of :func:`run_pipeline`; the defaults fit 15 minutes on 2 CPU cores.

    The baseline is ResNet-20 (three stages of three basic blocks) with a stride-2 stem,
    which quarters its cost on 28x28 images; it is trained with bfloat16 autocast where
    the device runs bfloat16 natively (float32 elsewhere: emulated bfloat16 is 10x slower) and
    scored in float32, so the entropies keep full precision.
    """

    out: str
    data_root: str | None = None
    epochs: int = 15
    width: int = 16
    stem_stride: int = 2
    batch_size: int = 256
    lr: float = 0.4
    crop_padding: int = 2
    amp: bool | None = None  # bfloat16 autocast where the device runs it natively
    fraction: float = 0.1
    bin_width: float = 0.5  # the paper's CIFAR-10 width: also 10 classes
    seed: int = 0
    device: str | None = None
    methods: list[str] = field(default_factory=lambda: _default_methods())
    progress: bool = True

    def check(self) -> torch.device:
        """Raises ValueError or TypeError naming the first bad setting; returns the device."""
        if not isinstance(self.out, (str, os.PathLike)) or not os.fspath(self.out):
            raise ValueError(f"out must be a directory path, got {self.out!r}")
        check_output_dir("out", self.out, [])
        for name, minimum in (("epochs", 1), ("width", 1), ("stem_stride", 1), ("batch_size", 2),
                              ("crop_padding", 0)):
            check_int(name, getattr(self, name), minimum)
        check_seed("seed", self.seed)
        check_real("lr", self.lr, 0.0, open_low=True)
        check_fraction("fraction", self.fraction)
        check_bin_width("bin_width", self.bin_width)
        if not isinstance(self.methods, (list, tuple)) or not self.methods:
            raise ValueError(f"methods must be a non-empty list of method names, got {self.methods!r}")
        for method in self.methods:
            check_method(method)
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods lists a method twice: {self.methods}")
        return resolve_device(self.device)


def run_pipeline(config: PipelineConfig, log: Callable[[str], None] = print) -> dict:
    """Runs the job and returns its summary (also written to ``out/summary.json``).
    Every setting is checked before anything is read or written."""
    device = config.check()
    out = config.out
    os.makedirs(os.path.join(out, "proxies"), exist_ok=True)
    os.makedirs(os.path.join(out, "tables"), exist_ok=True)
    clock = _StageClock(log)

    with clock.stage("load data"):
        train_set = fashion_mnist(config.data_root, train=True)
        test_set = fashion_mnist(config.data_root, train=False)
    log(f"data: Fashion-MNIST, {len(train_set):,} training and {len(test_set):,} test images")
    if math.floor(config.fraction * len(train_set)) == 0:
        raise ValueError(f"fraction {config.fraction:g} of the {len(train_set):,} training images selects none: "
                         "every proxy would be empty")
    with clock.stage("train baseline (+ forgetting events)"):
        model, result = _train_baseline(config, device, train_set, test_set, log)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"baseline: ResNet-20 (width {config.width}, stem stride {config.stem_stride}, {parameters:,} parameters), "
        f"test accuracy {100 * result.test_accuracy:.2f}%")
    with clock.stage("score training set"):
        scores = _score_training_set(config, device, model, result.forgetting, train_set)
    _log_scores(scores, log)
    with clock.stage("select proxies"):
        proxies, select_times, tables = _select_proxies(config, scores, log)
    with clock.stage("figure"):
        report.plot_methods(
            proxies, scores, os.path.join(out, "figure2.png"),
            title=f"Fashion-MNIST, ResNet-20 baseline: log10 entropy of all data vs. each {config.fraction:.0%} proxy",
        )

    if "p1" in proxies:
        log("\n" + tables[config.methods.index("p1")])
    summary = {
        "config": asdict(config),
        "test_accuracy": result.test_accuracy,
        "baseline": model_info(model),
        "history": result.history,
        "stage_seconds": clock.times,
        "select_seconds": select_times,
        "total_seconds": sum(clock.times.values()),
    }
    _write_text(os.path.join(out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    log("stage times:")
    for name, seconds in clock.times.items():
        log(f"  {name:<40} {seconds:8.1f} s")
    log(f"  {'total':<40} {summary['total_seconds']:8.1f} s")
    log(f"wrote {out}/: proxies/*.proxyset, tables/*.txt, tables.txt, figure2.png, scores.pxscores, entropy.txt, "
        "baseline.ckpt, summary.json")
    return summary


class _StageClock:
    """The wall time of each stage of the job, logged as the stage ends."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.times: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        yield
        self.times[name] = time.perf_counter() - started
        self.log(f"[{name}: {self.times[name]:.1f} s]")


def _train_baseline(config: PipelineConfig, device: torch.device, train_set, test_set,
                    log: Callable[[str], None]) -> tuple[torch.nn.Module, TrainResult]:
    """The baseline trained from the seed's weights (resumed from ``out/baseline.ckpt``),
    counting forgetting events on the way."""
    torch.manual_seed(config.seed)
    model = resnet20(10, in_channels=1, width=config.width, stem_stride=config.stem_stride,
                     mean=_FASHION_MNIST_MEAN, std=_FASHION_MNIST_STD)
    amp = resolve_amp(config.amp, device)
    log(f"precision: {'bfloat16 autocast' if amp else 'float32'} on {device}"
        + ("" if config.amp is not None else f" ({'native' if amp else 'no native'} bfloat16 here)"))
    result = train(
        model, train_set, test_set, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        crop_padding=config.crop_padding, seed=config.seed, device=device, amp=amp,
        checkpoint=os.path.join(config.out, "baseline.ckpt"), track_forgetting=True, progress=config.progress,
        log=log,
    )
    return model, result


def _score_training_set(config: PipelineConfig, device: torch.device, model: torch.nn.Module,
                        forgetting: Forgetting, train_set) -> Scores:
    """The training set's scores with the forgetting counts, reused from ``out`` when they
    are of this baseline; writes them and the entropy list."""
    scores_path = os.path.join(config.out, "scores.pxscores")
    scores = _load_scores_if_current(scores_path, train_set, model)
    if scores is None:
        scores = score(model, train_set, batch_size=512, device=device, features=True, progress=config.progress)
        scores = scores.replace(forgetting_counts=forgetting.counts)
        scores.meta["forgetting"] = {"epochs": config.epochs, "counted_during": "baseline training"}
        scores.save(scores_path)
    write_entropy_list(os.path.join(config.out, "entropy.txt"), scores)
    return scores


def _log_scores(scores: Scores, log: Callable[[str], None]) -> None:
    counts = scores.forgetting_counts
    log(f"scores: log10 entropy in [{float(scores.log10_entropy.min()):.2f}, {float(scores.log10_entropy.max()):.2f}], "
        f"train accuracy {100 * float((scores.predictions == scores.labels).float().mean()):.2f}%, "
        f"{int(torch.isinf(counts).sum()):,} never learned, {int((counts == 0).sum()):,} unforgettable")


def _select_proxies(config: PipelineConfig, scores: Scores,
                    log: Callable[[str], None]) -> tuple[dict[str, ProxySet], dict[str, float], list[str]]:
    """A proxy per method, each written with its bin table; returns the proxies, the time
    of each selection and the tables, in the order of the methods."""
    proxies, select_times, tables = {}, {}, []
    for method in config.methods:
        started = time.perf_counter()
        proxy = select(scores, fraction=config.fraction, method=method, seed=config.seed, bin_width=config.bin_width)
        select_times[method] = time.perf_counter() - started
        proxies[method] = proxy
        proxy.save(os.path.join(config.out, "proxies", f"{method}.proxyset"))
        table = report.bin_table(proxy)
        _write_text(os.path.join(config.out, "tables", f"{method}.txt"), table + "\n")
        tables.append(f"== {method}: {proxy.k:,} of {proxy.n:,} in {select_times[method] * 1e3:.1f} ms\n{table}\n")
        log(f"{method:>15}: {proxy.k:,} examples selected in {select_times[method] * 1e3:.1f} ms")
    _write_text(os.path.join(config.out, "tables.txt"), "\n".join(tables))
    return proxies, select_times, tables


def _load_scores_if_current(path: str, dataset, model: torch.nn.Module) -> Scores | None:
    """The saved scores when they belong to this dataset and this exact baseline, else None."""
    if not os.path.exists(path):
        return None
    try:
        scores = Scores.load(path, dataset=dataset)
    except ValueError:
        return None
    if scores.meta.get("model", {}).get("sha256") != model_info(model)["sha256"] or scores.features is None:
        return None
    return scores


def _write_text(path: str, text: str) -> None:
    with atomic_write(path) as file:
        file.write(text.encode("utf-8"))

