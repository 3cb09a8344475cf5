"""Where a long job runs and with how many CPU threads: one rule for the library and the CLI.

A job given no device runs on the first CUDA device when this torch sees one, else on
the CPU; a job that is handed a model and no device runs where the model's parameters
are. Threads are torch's choice unless the caller sets them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._checks import check_device, check_int

__all__ = ["default_device", "resolve_device", "set_threads"]


def default_device() -> torch.device:
    """The current CUDA device when this torch sees one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_device(device: Any = None, model: nn.Module | None = None, name: str = "device") -> torch.device:
    """``device`` checked (named ``name`` in the error); None means the device of
    ``model``'s parameters when a model is given, else :func:`default_device`."""
    if device is not None:
        return check_device(name, device)
    if model is not None:
        return next((parameter.device for parameter in model.parameters()), torch.device("cpu"))
    return default_device()


def set_threads(threads: int | None, name: str = "threads") -> None:
    """Sets torch's CPU thread count (None leaves torch's choice)."""
    if threads is not None:
        torch.set_num_threads(check_int(name, threads))
