"""Timing of repeated calls on a device, and the device's name for the record."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import check_int
from ..runtime import Progress, resolve_device

__all__ = ["CallTiming", "describe_device", "resolve_device", "synchronize", "time_calls"]


def synchronize(device: torch.device) -> None:
    """Waits for the work queued on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: torch.device) -> dict:
    """``{"type", "name", ...}``: the GPU's name and memory, or the CPU's model, its
    cores and the threads torch uses."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return {"type": "cuda", "name": props.name, "index": index, "memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"type": device.type, "name": _cpu_model(), "cores": cores, "threads": torch.get_num_threads()}


@dataclass(frozen=True)
class CallTiming:
    """Wall times of ``calls`` timed calls, after ``warmup`` untimed ones.

    Attributes:
        seconds: the wall time of each timed call, in order.
        warmup: the untimed calls before them.
        cpu_seconds: the CPU time this process used in each timed call (all its
            threads): unlike the wall time, it hardly changes when other processes
            compete for the cores.
    """

    seconds: tuple[float, ...]
    warmup: int
    cpu_seconds: tuple[float, ...] = ()

    @property
    def calls(self) -> int:
        return len(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """``(max - min) / median``: how far apart the timed calls are."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median > 0 else 0.0

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu_seconds) if self.cpu_seconds else None

    def to_dict(self) -> dict:
        return {"median_s": self.median, "min_s": min(self.seconds), "max_s": max(self.seconds),
                "spread": self.spread, "calls": self.calls, "warmup": self.warmup, "seconds": list(self.seconds),
                "cpu_median_s": self.cpu_median}


def time_calls(call: Callable[[], object], calls: int, warmup: int, device: torch.device,
               desc: str = "", progress: bool = True) -> CallTiming:
    """Times ``calls`` calls of ``call`` after ``warmup`` untimed ones; each timed call
    ends when ``device`` has finished its work."""
    check_int("calls", calls)
    check_int("warmup", warmup, 0)
    seconds, cpu_seconds = [], []
    with Progress(warmup + calls, desc, enabled=progress, unit="step") as bar:
        for _ in range(warmup):
            call()
            bar.update()
        synchronize(device)
        for _ in range(calls):
            start, cpu_start = time.perf_counter(), time.process_time()
            call()
            synchronize(device)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
            bar.update()
    return CallTiming(tuple(seconds), warmup, tuple(cpu_seconds))
