"""Checkpoints of long jobs: atomic writes, safe reads, and resuming only the same run.

A checkpoint is a ``torch.save`` dict of tensors and plain data written atomically (a
reader never sees a partial file) and read with ``weights_only=True``. A job that
resumes states what defines its run (a nested dict of settings and fingerprints);
:func:`resume_state` refuses a checkpoint whose run differs and names every field that
differs, so that a changed setting never continues a run silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from .._atomic import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_checkpoint", "resume_state", "run_differences",
           "save_checkpoint"]

CHECKPOINT_FORMAT = "proxyfast-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Writes a training checkpoint atomically (a reader never sees a partial file)."""
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    with atomic_write(path) as file:
        torch.save(state, file)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, on the CPU (tensors and plain data only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{os.fspath(path)}: not a readable proxyfast checkpoint: {error}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{os.fspath(path)}: not a proxyfast checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{os.fspath(path)}: written by a newer proxyfast (checkpoint version {state['version']})")
    return state


def run_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted names of the fields where two nested dicts differ, sorted."""
    if isinstance(saved, dict) and isinstance(current, dict):
        names = []
        for key in sorted(set(saved) | set(current), key=str):
            names += run_differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return names
    return [] if saved == current else [prefix.rstrip(".")]


def resume_state(path: str | os.PathLike, run: dict[str, Any], *, written_by: str, remedy: str,
                 recognise: Callable[[dict[str, Any]], bool] = lambda state: True) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to be one that ``written_by`` wrote
    (``recognise``) for this very ``run``; otherwise a ValueError that ends with
    ``remedy`` (what the user can do)."""
    state = load_checkpoint(path)
    if not isinstance(state.get("run"), dict) or not recognise(state):
        raise ValueError(f"checkpoint {os.fspath(path)!r} was not written by {written_by}; {remedy}")
    changed = run_differences(state["run"], run)
    if changed:
        raise ValueError(f"checkpoint {os.fspath(path)!r} belongs to a different run "
                         f"(differs in {', '.join(changed)}); {remedy}")
    return state
