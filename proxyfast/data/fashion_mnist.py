"""Fashion-MNIST (Xiao et al., 2017) and MNIST-style IDX files.

The default location is where Debian's ``dataset-fashion-mnist`` package puts the four
IDX files (``apt-get install dataset-fashion-mnist``). Files may be gzipped or plain.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ._files import CorruptDatasetError, DatasetNotFoundError, require_dir
from .arrays import ImageArrayDataset

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT", "fashion_mnist", "read_idx"]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_HOW_TO_GET = (
    "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass root= "
    "a directory holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]."
)
# IDX type codes (the third magic byte); MNIST-style files only use unsigned bytes.
_IDX_UBYTE = 0x08


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The uint8 array stored in an IDX file (gzipped when the name ends in ``.gz``)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = bytearray(file.read())  # writable, so tensors made from it are too
    except (OSError, EOFError) as error:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise CorruptDatasetError(f"{path}: cannot read the IDX file: {error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CorruptDatasetError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != _IDX_UBYTE:
        raise CorruptDatasetError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise CorruptDatasetError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise CorruptDatasetError(
            f"{path}: IDX header promises shape {shape} ({expected} bytes) but the file holds "
            f"{len(data) - header} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetNotFoundError(f"Fashion-MNIST: file {str(root / (stem + '.gz'))!r} not found. {_HOW_TO_GET}")


def fashion_mnist(root: str | os.PathLike | None = None, train: bool = True, transform=None) -> ImageArrayDataset:
    """The Fashion-MNIST training set (60,000 images) or test set (10,000).

    Args:
        root: directory of the IDX files; default ``/usr/share/datasets/fashion-mnist``.
        train: the training split, else the test split.
        transform: applied to each uint8 [1, 28, 28] image tensor on access.

    Returns:
        An :class:`ImageArrayDataset` with images uint8 [N, 28, 28, 1] and labels int64 [N].
    """
    root = require_dir(FASHION_MNIST_ROOT if root is None else root, "Fashion-MNIST", _HOW_TO_GET)
    prefix = "train" if train else "t10k"
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CorruptDatasetError(
            f"Fashion-MNIST in {root}: images {images.shape} and labels {labels.shape} do not match "
            "([N, H, W] and [N] expected)"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise CorruptDatasetError(f"Fashion-MNIST in {root}: label {int(labels.max())} is not in 0..9")
    name = f"fashion-mnist-{'train' if train else 'test'}"
    return ImageArrayDataset(images[..., None], labels, name, classes=FASHION_MNIST_CLASSES, transform=transform)
