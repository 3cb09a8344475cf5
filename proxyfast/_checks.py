"""Argument checks shared by the public functions and the command line: one wording for
one mistake. ``name`` is what the message calls the argument: ``"fraction"`` in the
library, ``"--fraction"`` on the command line."""

from __future__ import annotations

import math
import numbers
import os
import re
from typing import Any

import torch

__all__ = [
    "check_bin_width",
    "check_device",
    "check_fraction",
    "check_input_files",
    "check_int",
    "check_output_dir",
    "check_output_paths",
    "check_real",
    "check_seed",
    "MAX_SEED",
    "NotAnIntegerError",
    "same_file",
]


class NotAnIntegerError(TypeError, ValueError):
    """A count or size that is not an integer. Both a TypeError (the convention) and a
    ValueError, which the checks of counts raised before they were gathered here, so that
    callers catching either keep working."""


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int; :class:`NotAnIntegerError` unless it is an integer (bools are
    not), ValueError when it is outside [``minimum``, ``maximum``]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise NotAnIntegerError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


MAX_SEED = 2**63 - 1


def check_seed(name: str, value: Any) -> int:
    """A seed as an int: an integer (or a 0-d integer tensor) in [0, 2^63 - 1], the range
    every seeded op and file accepts."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise NotAnIntegerError(f"{name} must be an integer in [0, 2^63 - 1], got {type(value).__name__}")
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, 2^63 - 1], got {value}")
    return int(value)


def check_real(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False,
               open_high: bool = False) -> float:
    """``value`` as a float; TypeError unless it is a real number (bools are not),
    ValueError when it is NaN or outside the interval (closed unless ``open_low`` or
    ``open_high``; an infinite bound is always open, so infinities are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    above = value > low if open_low or low == -math.inf else value >= low
    below = value < high if open_high or high == math.inf else value <= high
    if not (above and below):  # also true for NaN
        if low == -math.inf and high == math.inf:
            raise ValueError(f"{name} must be finite, got {value!r}")
        left = "(" if open_low or low == -math.inf else "["
        right = ")" if open_high or high == math.inf else "]"
        raise ValueError(f"{name} must be in {left}{low:g}, {high:g}{right}, got {value!r}")
    return value


def check_fraction(name: str, value: Any) -> float:
    """A share of the data in (0, 1]."""
    return check_real(name, value, 0.0, 1.0, open_low=True)


def check_bin_width(name: str, value: Any) -> float:
    """A log10-entropy bin width: a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")


def check_device(name: str, value: Any) -> torch.device:
    """``value`` (a ``torch.device`` or a string such as ``"cpu"``, ``"cuda"``,
    ``"cuda:1"``) as a ``torch.device`` that this process can use."""
    if isinstance(value, torch.device):
        device = value
    elif isinstance(value, str) and _DEVICE.fullmatch(value.strip()):
        device = torch.device(value.strip())
    else:
        raise ValueError(f"{name} {value!r} is not a valid device: use cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} {str(device)!r} is not supported: use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {str(device)!r} is not available (no CUDA device is available to this torch)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {str(device)!r} is not available: there are {torch.cuda.device_count()} "
                             "CUDA device(s)")
    return device


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file, through symbolic links, ``..`` and hard
    links; a path that does not exist yet is compared by its resolved name."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _given(paths: dict[str, Any] | None) -> list[tuple[str, Any]]:
    return [(name, path) for name, path in (paths or {}).items() if path is not None]


def check_input_files(inputs: dict[str, Any]) -> None:
    """Refuses an input file that does not exist or is not a file. ``inputs`` maps a
    name for the message (``"--checkpoint"``) to a path or None (not given)."""
    for name, path in _given(inputs):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{name} {os.fspath(path)!r}: no such file")
        if os.path.isdir(path):
            raise IsADirectoryError(f"{name} {os.fspath(path)!r} is a directory, not a file")


def check_output_paths(outputs: dict[str, Any], inputs: dict[str, Any] | None = None) -> None:
    """Refuses, before anything is read or written, an output file that is also an input,
    two outputs that are one file, an output path that names something other than a
    regular file (a directory, a device), or one whose directory does not exist. Both map a name for the message (``"--out"``)
    to a path or None (not given)."""
    given_outputs, given_inputs = _given(outputs), _given(inputs)
    for i, (out_name, out) in enumerate(given_outputs):
        if os.path.exists(out) and not os.path.isfile(out):
            raise ValueError(f"{out_name} {os.fspath(out)!r} is not a regular file: give the path of a file to write")
        directory = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(directory):
            raise ValueError(f"{out_name} {os.fspath(out)!r}: the directory {directory!r} does not exist")
        for in_name, source in given_inputs:
            if same_file(out, source):
                raise ValueError(f"{out_name} {os.fspath(out)!r} is also the input {in_name}: writing it would "
                                 "destroy the input; choose another output path")
        for other_name, other in given_outputs[i + 1:]:
            if same_file(out, other):
                raise ValueError(f"{out_name} and {other_name} are the same file {os.fspath(out)!r}: "
                                 "give each output its own path")


def check_output_dir(name: str, directory: Any, writes: list[str], inputs: dict[str, Any] | None = None) -> None:
    """Refuses an output directory that exists as something else, or an input file that
    is one of the files ``writes`` (names inside the directory) would replace."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"{name} {os.fspath(directory)!r} exists and is not a directory")
    for file_name in writes:
        out = os.path.join(directory, file_name)
        for in_name, source in _given(inputs):
            if same_file(out, source):
                raise ValueError(f"{in_name} {os.fspath(source)!r} is inside {name} and would be replaced by "
                                 f"its {file_name}; move it or choose another output directory")
