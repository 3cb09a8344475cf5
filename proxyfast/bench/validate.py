"""A check of the extrapolation: its prediction of a small search against the search itself.

:func:`validate_extrapolation` predicts the wall time of a complete search on a tiny
configuration the way :func:`~proxyfast.bench.bench_search` predicts a full one (warm
step times multiplied by the step counts of :mod:`.extrapolate`), then runs that search
for real with :func:`proxyfast.nas.search.search` on a synthetic in-memory dataset and a
P1 proxy of it, and reports the prediction's error. What the prediction leaves out
shows up in the error: loading and augmenting the batches, the first (cold) steps,
checkpoints and logs at the end of each epoch.

On a CPU shared with other work the wall time of the same step can vary by tens of
percent from one minute to the next, which no prediction can follow. So on the CPU the
same comparison is also made in CPU time of this process (``cpu_error``), which other
processes hardly change; the wall-time error is the figure that counts on a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .._checks import check_int
from ..nas.search import SearchConfig, search
from ..scoring import Scores
from ..selection import select
from .extrapolate import plan_search, search_seconds
from .search_cost import synthetic_images, time_search
from .timing import describe_device, resolve_device

__all__ = ["TARGET_ERROR", "format_validation", "validate_extrapolation"]

TARGET_ERROR = 0.15
"""The prediction should land within 15% of the measured search."""

_NUM_CLASSES = 10


def validate_extrapolation(
    algo: str = "darts",
    order: int = 1,
    *,
    device: torch.device | str | None = None,
    examples: int = 1000,
    fraction: float = 0.5,
    image_size: int = 16,
    batch_size: int = 32,
    channels: int = 8,
    layers: int = 5,
    epochs: int = 3,
    steps: int = 8,
    warmup: int = 2,
    impl: str | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Predicts a small search's wall time, runs it, and compares.

    Args:
        algo, order: the search (PC-DARTS gets one warm-up epoch, so both of its step
            kinds are predicted).
        device: where to search (default: CUDA when available, else the CPU).
        examples, image_size: the synthetic dataset: ``examples`` random RGB images of
            ``image_size`` squared pixels, 10 classes.
        fraction: the P1 proxy's size as a fraction of ``examples``.
        batch_size, channels, layers, epochs: the search.
        steps, warmup: timed and untimed calls of each timed operation.
        impl: the mixed-op implementation (default: the library's).
        seed: seeds the data, the proxy and the search.
        out_dir: where the search writes its files (default: a temporary directory).
        progress: draw progress bars on stderr.
        log: called with a line per stage (None: silent).

    Returns:
        ``{"device", "config", "dataset", "plan", "timing", "predicted_s", "measured_s",
        "call_s", "error", "target_error", "within_target", "predicted_cpu_s",
        "measured_cpu_s", "cpu_error", "search_steps_per_epoch", "epoch_seconds"}``: the
        prediction, the search's own wall time (its loop, as it reports it), the whole
        call's, ``error = predicted / measured - 1``, and the same in CPU time (from the
        call's start to the end of its last epoch; on a GPU these are None).
    """
    device = resolve_device(device)
    say = log if log is not None else (lambda _: None)
    warmup_epochs = 1 if algo == "pcdarts" else 0
    config = SearchConfig.for_algo(algo, order=order, epochs=epochs, batch_size=batch_size, channels=channels,
                                   layers=layers, warmup_epochs=warmup_epochs, seed=seed, impl=impl)
    for name, value in (("examples", examples), ("image_size", image_size)):
        check_int(name, value, 4)
    image_shape = (3, image_size, image_size)
    dataset = synthetic_images(examples, image_shape, _NUM_CLASSES, seed)
    entropies = np.random.default_rng(seed).lognormal(-3.0, 2.0, size=examples)
    proxy = select(Scores.from_entropy(entropies), fraction=fraction, method="p1", bin_width=0.5, seed=seed)
    plan = plan_search(proxy.k, config.batch_size, config.epochs, config.warmup_epochs, config.train_portion)

    say(f"predicting: {algo} order {order} on a {proxy.k:,}-image P1 proxy of {examples:,} synthetic "
        f"{image_size}x{image_size} images, {plan.steps_per_epoch} steps per epoch, {epochs} epochs")
    timings = time_search(config, image_shape, _NUM_CLASSES, plan.steps_per_epoch, device, steps, warmup, progress)
    weight_step = timings["weight_step"]
    predicted = search_seconds(plan, timings["step"].median, weight_step.median if weight_step else None,
                               timings["eval_batch"].median)

    # The search logs one line per epoch (then the genotype): the CPU time at each
    # marks the end of an epoch.
    cpu_marks: list[float] = []
    say("running the search")
    with tempfile.TemporaryDirectory() as scratch:
        directory = os.fspath(out_dir) if out_dir is not None else scratch
        start, cpu_start = time.perf_counter(), time.process_time()
        result = search(dataset, proxy, config, directory, device=device, resume=False, progress=progress,
                        log=lambda _: cpu_marks.append(time.process_time()))
        call = time.perf_counter() - start
        with open(result.files["log"], encoding="utf-8") as file:
            search_steps = json.load(file)["steps_per_epoch"]
    measured = result.seconds
    error = predicted / measured - 1.0
    predicted_cpu = measured_cpu = cpu_error = None
    if device.type == "cpu":
        predicted_cpu = search_seconds(plan, timings["step"].cpu_median,
                                       weight_step.cpu_median if weight_step else None,
                                       timings["eval_batch"].cpu_median)
        measured_cpu = cpu_marks[config.epochs - 1] - cpu_start
        cpu_error = predicted_cpu / measured_cpu - 1.0
    return {
        "device": describe_device(device),
        "config": dataclasses.asdict(config),
        "dataset": {"examples": examples, "image_shape": list(image_shape), "proxy_k": proxy.k},
        "plan": plan.to_dict(),
        "timing": {name: value.to_dict() if value is not None else None
                   for name, value in timings.items() if name != "peak_memory_gib"},
        "predicted_s": predicted,
        "measured_s": measured,
        "call_s": call,
        "error": error,
        "target_error": TARGET_ERROR,
        "within_target": abs(error) <= TARGET_ERROR,
        "predicted_cpu_s": predicted_cpu,
        "measured_cpu_s": measured_cpu,
        "cpu_error": cpu_error,
        "search_steps_per_epoch": search_steps,
        "epoch_seconds": [record["seconds"] for record in result.history],
    }


def format_validation(result: dict[str, Any]) -> str:
    """The validation as a few lines of text."""
    config, plan = result["config"], result["plan"]
    step = result["timing"]["step"]
    lines = [
        f"validation of the extrapolation on {result['device']['name']} ({result['device']['type']})",
        f"search: {config['algo']} order {config['order']}, {result['dataset']['proxy_k']:,}-image proxy of "
        f"{result['dataset']['examples']:,} images {'x'.join(map(str, result['dataset']['image_shape']))}, batch "
        f"{config['batch_size']}, {config['channels']} channels, {config['layers']} cells, {config['epochs']} epochs",
        f"steps per epoch: {plan['steps_per_epoch']} predicted, {result['search_steps_per_epoch']} in the search; "
        f"step {step['median_s'] * 1e3:.1f} ms median",
        f"predicted {result['predicted_s']:.2f} s, measured {result['measured_s']:.2f} s (search loop; "
        f"{result['call_s']:.2f} s for the whole call): error {100 * result['error']:+.1f}% "
        f"({'within' if result['within_target'] else 'outside'} the {100 * result['target_error']:.0f}% target)",
    ]
    if result["cpu_error"] is not None:
        lines.append(f"in CPU time of this process: predicted {result['predicted_cpu_s']:.2f} s, measured "
                     f"{result['measured_cpu_s']:.2f} s: error {100 * result['cpu_error']:+.1f}%")
    return "\n".join(lines)
