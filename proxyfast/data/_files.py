"""Shared helpers of the dataset readers: locating files and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CorruptDatasetError", "DatasetNotFoundError", "require_file", "require_dir"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or directory is missing; the message says how to get the data."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but does not hold what its format promises."""


def require_file(path: str | os.PathLike, dataset: str, how_to_get: str) -> Path:
    """``path`` as a Path, or a :class:`DatasetNotFoundError` naming it and ``how_to_get``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{dataset}: file {str(path)!r} not found. {how_to_get}")
    return path


def require_dir(path: str | os.PathLike, dataset: str, how_to_get: str) -> Path:
    """``path`` as a Path, or a :class:`DatasetNotFoundError` naming it and ``how_to_get``."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetNotFoundError(f"{dataset}: directory {str(path)!r} not found. {how_to_get}")
    return path
