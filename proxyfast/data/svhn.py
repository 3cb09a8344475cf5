"""SVHN (Netzer et al., 2011), the cropped-digits format: ``{split}_32x32.mat``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._files import CorruptDatasetError, require_file
from .arrays import ImageArrayDataset

__all__ = ["svhn"]

_SPLITS = ("train", "test", "extra")
_HOW_TO_GET = (
    "Download train_32x32.mat, test_32x32.mat (and extra_32x32.mat) from http://ufldl.stanford.edu/housenumbers/ "
    "on a machine with network access and pass root= their directory."
)


def svhn(root: str | os.PathLike, split: str = "train", transform=None) -> ImageArrayDataset:
    """SVHN digits: uint8 [N, 32, 32, 3] images, labels 0..9 (the files store digit 0 as 10).

    Args:
        root: the directory holding ``{split}_32x32.mat``, or the .mat file itself.
        split: ``train`` (73,257 images), ``test`` (26,032) or ``extra`` (531,131).
        transform: applied to each uint8 [3, 32, 32] image tensor on access.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}, got {split!r}")
    root = Path(root)
    path = require_file(root if root.suffix == ".mat" else root / f"{split}_32x32.mat", "SVHN", _HOW_TO_GET)
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise ImportError("reading SVHN needs scipy: pip install scipy") from None
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as error:
        raise CorruptDatasetError(f"{path}: not a readable MATLAB file: {error}") from None
    if "X" not in mat or "y" not in mat:
        raise CorruptDatasetError(f"{path}: an SVHN file needs the variables X and y")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise CorruptDatasetError(
            f"{path}: X must be uint8 [H, W, 3, N] with one label per image, "
            f"got {x.dtype} {x.shape} and {len(y)} labels"
        )
    labels = y.astype(np.int64) % 10
    if y.size and (y.min() < 1 or y.max() > 10):
        raise CorruptDatasetError(f"{path}: labels must be 1..10 (10 is digit 0)")
    images = np.ascontiguousarray(x.transpose(3, 0, 1, 2))
    return ImageArrayDataset(images, labels, f"svhn-{split}", [str(d) for d in range(10)], transform)
