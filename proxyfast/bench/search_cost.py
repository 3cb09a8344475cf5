"""What a search costs on the device at hand, on all the data and on a proxy.

:func:`bench_search` times the very step the search runs
(:func:`proxyfast.nas.search.search_step`, built by
:func:`~proxyfast.nas.search.build_search`) on random tensors of a setting's shapes,
warm, and multiplies by the step counts of the whole search (:mod:`.extrapolate`): for
all the training data and for the proxy, each split into its two halves. It also times
the end-of-epoch evaluation batch, the baseline's scoring throughput (ResNet-20 for
CIFAR-10, ResNet-50 for ImageNet) and the selection itself (P1 on as many scores as the
dataset has examples), so that the proxy's total (scoring + selection + search) can be
set against the full search. Not timed: loading and decoding the data (the step's
inputs are already on the device) and training the baseline. On the CPU the default
is a reduced supernet on smaller inputs (:func:`device_defaults`): a full-size step
there takes minutes.

The result is a plain dict (schema below), written as JSON by :func:`write_report`.

Report schema (``format`` ``"proxyfast-bench-search"``, ``version`` 1)::

    created, proxyfast_version, torch_version
    device        {"type", "name", ...}          the GPU's name or the CPU's model
    setting       the Setting's shape and the paper's proxy fraction and bin width
    reduced       [field, ...]: what differs from the paper's setting (empty: none)
    config        every SearchConfig field of the timed search
    mixed_impl    the mixed-op implementation the supernet ran ("fused", "reference", ...)
    timing        {"step", "weight_step" (None without warm-up epochs), "eval_batch"}:
                  each {"median_s", "min_s", "max_s", "spread", "calls", "warmup", "seconds",
                  "cpu_median_s"}
    peak_memory_gib   the step's peak device memory (CUDA), or None
    searches      {"full", "proxy"}: the SearchPlan's counts and "seconds", "hours", "days"
    scoring       {"model", "images_timed", "batch_size", "images_per_second", "examples",
                   "seconds", "hours"}
    selection     {"method", "n", "k", "bin_width", "seconds", "timing"}
    proxy_total   {"seconds", "hours", "days"}: scoring + selection + proxy search
    speedup       {"search": full / proxy search, "total": full / proxy total}
    paper         {"full", "proxy"}: the published figure ({"gpu_hours", "gpu_days",
                   "device", "source", "note"}) or None; "speedup": their ratio or None
"""

from __future__ import annotations

import dataclasses
import gc
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .._checks import check_int
from .._version import __version__
from ..data import imagenet_scale_scores
from ..data.arrays import ImageArrayDataset
from ..models import resnet20
from ..models.resnet_imagenet import resnet50
from ..nas.mixed import default_mixed_impl
from ..nas.search import SearchConfig, build_search, search_step
from ..runtime import resolve_device
from ..scoring import score
from ..selection import select
from .extrapolate import days, hours, plan_search, proxy_size, search_seconds
from .settings import ALGOS, Setting, get_setting, paper_figures
from .timing import CallTiming, describe_device, time_calls

__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "bench_search", "device_defaults", "search_config", "synthetic_images",
           "time_search"]

REPORT_FORMAT = "proxyfast-bench-search"
REPORT_VERSION = 1

# Timed calls and warm-up calls per device: a GPU step takes milliseconds, a CPU step
# of the full-size supernet seconds.
_DEFAULT_STEPS = {"cuda": (20, 5), "cpu": (3, 1)}
_DEFAULT_SCORE_IMAGES = {("cuda", "cifar10"): 16384, ("cuda", "imagenet"): 2048,
                         ("cpu", "cifar10"): 1024, ("cpu", "imagenet"): 32}
# On the CPU one step of the paper's CIFAR-10 supernet (batch 64) takes minutes and
# about 10 GB: by default a CPU run times a reduced supernet, marked as such.
_CPU_REDUCED = {"batch_size": 16, "channels": 8, "layers": 5}
_CPU_REDUCED_IMAGE_SIZE = {"cifar10": 16, "imagenet": 64}
_SCORE_BATCH = {"cifar10": 512, "imagenet": 256}
_SELECTION_REPEATS = 5


def device_defaults(device: torch.device | str, setting: str, full_size: bool = False) -> dict[str, int | None]:
    """What :func:`bench_search` uses when not told: timed steps, warm-up steps and
    scored images per device; on the CPU, unless ``full_size``, a reduced supernet
    (``batch_size``, ``channels``, ``layers``, ``image_size``; None: the setting's)."""
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
    name = get_setting(setting).name
    steps, warmup = _DEFAULT_STEPS[kind]
    defaults: dict[str, int | None] = {"steps": steps, "warmup": warmup,
                                       "score_images": _DEFAULT_SCORE_IMAGES[kind, name],
                                       "batch_size": None, "channels": None, "layers": None, "image_size": None}
    if kind == "cpu" and not full_size:
        defaults.update(_CPU_REDUCED, image_size=_CPU_REDUCED_IMAGE_SIZE[name])
    return defaults


def search_config(setting: Setting, algo: str, order: int = 1, **overrides: Any) -> SearchConfig:
    """The ``SearchConfig`` of ``algo`` in ``setting``: the algorithm's published settings
    (``SearchConfig.for_algo``), the setting's, then ``overrides`` (None values ignored)."""
    fields = setting.overrides(algo)
    fields["order"] = order
    fields.update({key: value for key, value in overrides.items() if value is not None})
    return SearchConfig.for_algo(algo, **fields)


def _random_batch(batch_size: int, image_shape: tuple[int, int, int], num_classes: int, device: torch.device,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand((batch_size, *image_shape), generator=generator).to(device)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)
    return images, labels


def time_search(config: SearchConfig, image_shape: tuple[int, int, int], num_classes: int, steps_per_epoch: int,
                device: torch.device, steps: int, warmup: int, progress: bool = True) -> dict[str, Any]:
    """Times the search's step (with the architecture update; and without it when
    ``config`` has warm-up epochs) and the end-of-epoch evaluation batch, on random
    batches of ``config.batch_size`` images of ``image_shape`` already on ``device``.

    Returns ``{"step", "weight_step", "eval_batch"}`` (:class:`CallTiming`, the
    weight step None without warm-up epochs) and ``"peak_memory_gib"`` (CUDA, else None).
    """
    generator = torch.Generator().manual_seed(config.seed)
    train_batch = _random_batch(config.batch_size, image_shape, num_classes, device, generator)
    val_batch = _random_batch(config.batch_size, image_shape, num_classes, device, generator)
    state = build_search(config, image_shape[0], num_classes, steps_per_epoch, device)
    state.model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    name = f"{config.algo} order {config.order}"
    timings: dict[str, Any] = {
        "step": time_calls(lambda: search_step(state, train_batch, val_batch, update_arch=True), steps, warmup,
                           device, f"{name} step", progress),
        "weight_step": None,
    }
    if config.warmup_epochs:
        timings["weight_step"] = time_calls(lambda: search_step(state, train_batch, None, update_arch=False), steps,
                                            warmup, device, f"{name} weight-only step", progress)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

    def eval_batch() -> float:
        # What the search's end-of-epoch evaluation does per batch, in eval mode.
        logits = state.model(val_batch[0])
        return F.cross_entropy(logits, val_batch[1], reduction="sum").item()

    state.model.eval()
    with torch.no_grad():
        timings["eval_batch"] = time_calls(eval_batch, steps, min(warmup, 1), device, f"{name} eval batch", progress)
    timings["peak_memory_gib"] = peak
    return timings


def synthetic_images(count: int, image_shape: tuple[int, int, int], num_classes: int, seed: int) -> ImageArrayDataset:
    """``count`` seeded random uint8 images of ``image_shape`` (C, H, W) with random labels."""
    rng = np.random.default_rng(seed)
    channels, height, width = image_shape
    images = rng.integers(0, 256, size=(count, height, width, channels), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=count)
    return ImageArrayDataset(images, labels, name="synthetic", classes=range(num_classes))


def time_scoring(setting: Setting, image_shape: tuple[int, int, int], images: int, device: torch.device,
                 seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Throughput of :func:`proxyfast.score` with the setting's baseline (random weights,
    channels-last, fp32) on ``images`` random uint8 images, after one warm-up batch;
    extrapolated to the setting's whole training set."""
    channels, num_classes = image_shape[0], setting.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (resnet20(num_classes, channels) if setting.name == "cifar10" else resnet50(num_classes, channels))
    model = model.to(device, memory_format=torch.channels_last)
    batch_size = min(_SCORE_BATCH[setting.name], images)
    dataset = synthetic_images(images, image_shape, num_classes, seed)
    dataset.fingerprint()  # cached: score() records it, and hashing is not scoring
    warm = synthetic_images(batch_size, image_shape, num_classes, seed + 1)
    warm.fingerprint()
    score(model, warm, batch_size=batch_size, device=device)
    timing = time_calls(lambda: score(model, dataset, batch_size=batch_size, device=device, progress=progress),
                        1, 0, device, progress=False)
    rate = images / timing.median
    seconds = setting.train_size / rate
    return {"model": setting.baseline, "images_timed": images, "batch_size": batch_size, "images_per_second": rate,
            "examples": setting.train_size, "seconds": seconds, "hours": hours(seconds)}


def time_selection(setting: Setting, fraction: float, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """The median time of a P1 selection of ``fraction`` of the setting's training-set
    size, with the paper's bin width, from scores already on ``device`` (the built-in
    real entropies resampled to that size)."""
    scores = imagenet_scale_scores(setting.train_size, seed=seed).to(device)
    options = dict(fraction=fraction, method="p1", seed=seed, bin_width=setting.bin_width)
    proxy = select(scores, **options)
    timing = time_calls(lambda: select(scores, **options), _SELECTION_REPEATS, 1, device, progress=False)
    return {"method": "p1", "n": setting.train_size, "k": proxy.k, "bin_width": setting.bin_width,
            "seconds": timing.median, "timing": timing.to_dict()}


def _costed(plan, timings: dict[str, Any]) -> dict[str, Any]:
    weight_step = timings["weight_step"]
    seconds = search_seconds(plan, timings["step"].median, weight_step.median if weight_step else None,
                             timings["eval_batch"].median)
    return {**plan.to_dict(), "seconds": seconds, "hours": hours(seconds), "days": days(seconds)}


def _paper(setting: Setting, algo: str) -> dict[str, Any]:
    figures = paper_figures(setting.name, algo)
    paper: dict[str, Any] = {
        data: None if data not in figures else {
            "gpu_hours": figures[data].gpu_hours, "gpu_days": figures[data].gpu_days, "device": figures[data].device,
            "source": figures[data].source, "note": figures[data].note,
        }
        for data in ("full", "proxy")
    }
    both = paper["full"] and paper["proxy"]
    paper["speedup"] = paper["full"]["gpu_hours"] / paper["proxy"]["gpu_hours"] if both else None
    return paper


def _reduced(setting: Setting, algo: str, config: SearchConfig, image_shape: tuple[int, int, int]) -> list[str]:
    published = search_config(setting, algo, config.order)
    names = [name for name in ("batch_size", "channels", "layers", "epochs")
             if getattr(config, name) != getattr(published, name)]
    if image_shape != setting.image_shape:
        names.append("image_size")
    return names


def bench_search(
    setting: str = "cifar10",
    algo: str = "darts",
    order: int = 1,
    proxy_fraction: float | None = None,
    *,
    device: torch.device | str | None = None,
    steps: int | None = None,
    warmup: int | None = None,
    batch_size: int | None = None,
    channels: int | None = None,
    layers: int | None = None,
    epochs: int | None = None,
    image_size: int | None = None,
    score_images: int | None = None,
    full_size: bool = False,
    impl: str | None = None,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Times a search's steps, the scoring and the selection on ``device``, and
    extrapolates the whole search for all the data and for the proxy.

    Args:
        setting: ``"cifar10"`` or ``"imagenet"`` (:mod:`.settings`).
        algo: ``"darts"`` or ``"pcdarts"``.
        order: the architect's order (PC-DARTS: 1).
        proxy_fraction: the proxy's size as a fraction of the training set, in (0, 1];
            default the paper's (0.1).
        device: where to time (default: CUDA when available, else the CPU).
        steps, warmup: timed and untimed calls of each timed operation (default: 20 and
            5 on a GPU, 3 and 1 on the CPU).
        batch_size, channels, layers, epochs: override the setting's search (smaller
            values make cheap CPU runs; the report lists them under ``reduced``).
        image_size: height and width of the inputs instead of the setting's (reduced).
        score_images: images scored to measure the baseline's throughput.
        full_size: on the CPU, time the setting's supernet and inputs rather than the
            reduced ones used by default (:func:`device_defaults`).
        impl: the mixed-op implementation (default: the library's).
        seed: seeds the random inputs and the initial weights.
        progress: draw progress bars on stderr.
        log: called with a line per stage (None: silent).

    Returns:
        The report (schema in the module's docstring).
    """
    setting_obj = get_setting(setting)
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
    if proxy_fraction is None:
        proxy_fraction = setting_obj.proxy_fraction
    proxy_k = proxy_size(setting_obj.train_size, proxy_fraction)
    device = resolve_device(device)
    sizes = _sizes(device, setting, full_size, steps=steps, warmup=warmup, score_images=score_images,
                   batch_size=batch_size, channels=channels, layers=layers, image_size=image_size)
    image_shape = setting_obj.image_shape
    if sizes["image_size"] is not None:
        image_shape = (image_shape[0], sizes["image_size"], sizes["image_size"])
    config = search_config(setting_obj, algo, order, batch_size=sizes["batch_size"], channels=sizes["channels"],
                           layers=sizes["layers"], epochs=epochs, impl=impl, seed=seed)
    say = log if log is not None else (lambda _: None)
    full_plan = plan_search(setting_obj.train_size, config.batch_size, config.epochs, config.warmup_epochs,
                            config.train_portion)
    proxy_plan = plan_search(proxy_k, config.batch_size, config.epochs, config.warmup_epochs, config.train_portion)
    device_info = describe_device(device)
    say(f"device: {device_info['name']} ({device})")

    say(f"timing the search step: {config.algo}, order {config.order}, batch {config.batch_size}, "
        f"{config.channels} channels, {config.layers} cells, inputs {'x'.join(map(str, image_shape))}")
    timings = time_search(config, image_shape, setting_obj.num_classes, proxy_plan.steps_per_epoch, device,
                          sizes["steps"], sizes["warmup"], progress)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    say(f"timing the scoring: {setting_obj.baseline} on {sizes['score_images']:,} images")
    scoring = time_scoring(setting_obj, image_shape, sizes["score_images"], device, seed, progress)
    say(f"timing the selection: P1 of {proxy_k:,} from {setting_obj.train_size:,} scores")
    selection = time_selection(setting_obj, proxy_fraction, device, seed)
    searches = {"full": _costed(full_plan, timings), "proxy": _costed(proxy_plan, timings)}
    return _report(setting_obj, algo, config, image_shape, proxy_fraction, device_info, timings, searches, scoring,
                   selection)


def _sizes(device: torch.device, setting: str, full_size: bool, **given: int | None) -> dict[str, int | None]:
    """The sizes of the timing runs: each one given, else the device's default
    (:func:`device_defaults`); checked."""
    defaults = device_defaults(device, setting, full_size)
    sizes = {name: defaults[name] if value is None else value for name, value in given.items()}
    for name, minimum in (("steps", 1), ("warmup", 0), ("score_images", 1), ("image_size", 1)):
        if sizes[name] is not None:
            check_int(name, sizes[name], minimum)
    return sizes


def _report(setting: Setting, algo: str, config: SearchConfig, image_shape: tuple[int, int, int],
            proxy_fraction: float, device_info: dict[str, Any], timings: dict[str, Any], searches: dict[str, Any],
            scoring: dict[str, Any], selection: dict[str, Any]) -> dict[str, Any]:
    """The report of :func:`bench_search` (schema in the module's docstring)."""
    total = scoring["seconds"] + selection["seconds"] + searches["proxy"]["seconds"]
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "proxyfast_version": __version__,
        "torch_version": torch.__version__,
        "device": device_info,
        "setting": {
            "name": setting.name, "dataset": setting.dataset, "train_size": setting.train_size,
            "image_shape": list(image_shape), "num_classes": setting.num_classes,
            "baseline": setting.baseline, "bin_width": setting.bin_width, "proxy_fraction": proxy_fraction,
        },
        "reduced": _reduced(setting, algo, config, image_shape),
        "config": dataclasses.asdict(config),
        "mixed_impl": default_mixed_impl() if config.impl is None else config.impl,
        "timing": {name: value.to_dict() if isinstance(value, CallTiming) else None
                   for name, value in timings.items() if name != "peak_memory_gib"},
        "peak_memory_gib": timings["peak_memory_gib"],
        "searches": searches,
        "scoring": scoring,
        "selection": selection,
        "proxy_total": {"seconds": total, "hours": hours(total), "days": days(total)},
        "speedup": {"search": _ratio(searches["full"]["seconds"], searches["proxy"]["seconds"]),
                    "total": _ratio(searches["full"]["seconds"], total)},
        "paper": _paper(setting, algo),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 and math.isfinite(numerator / denominator) else None
