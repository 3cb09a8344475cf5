"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from their python-pickle batches.

Point ``root`` at the directory the archive unpacks to (``cifar-10-batches-py`` or
``cifar-100-python``) or at its parent. The batches are unpickled with a restricted
unpickler that only builds plain containers and numpy arrays, so a crafted file cannot
run code.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from ._files import CorruptDatasetError, DatasetNotFoundError, require_dir
from .arrays import ImageArrayDataset

__all__ = ["cifar10", "cifar100"]

_HOW_TO_GET = (
    "Download the python version from https://www.cs.toronto.edu/~kriz/cifar.html on a machine "
    "with network access, unpack it (tar xzf cifar-10-python.tar.gz) and pass root= the unpacked directory."
)
# Everything a CIFAR pickle may reference: numpy's array reconstruction (and the codec
# that protocol-2 pickles written by Python 3 use for its bytes), nothing else.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            # The batches were written by Python 2: byte strings stay bytes.
            data = _RestrictedUnpickler(io.BytesIO(file.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as error:
        raise CorruptDatasetError(f"{path}: not a CIFAR python-pickle batch: {error}") from None
    if not isinstance(data, dict):
        raise CorruptDatasetError(f"{path}: not a CIFAR python-pickle batch (holds a {type(data).__name__})")
    # Keys are bytes in the original files and str in re-pickled copies: accept both.
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in data.items()}


def _batch_dir(root: str | os.PathLike, subdir: str, first_file: str, dataset: str) -> Path:
    root = require_dir(root, dataset, _HOW_TO_GET)
    for candidate in (root, root / subdir):
        if (candidate / first_file).is_file():
            return candidate
    raise DatasetNotFoundError(f"{dataset}: file {str(root / first_file)!r} not found. {_HOW_TO_GET}")


def _read_batches(paths: list[Path], label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        if "data" not in batch or label_key not in batch:
            raise CorruptDatasetError(f"{path}: a CIFAR batch needs 'data' and '{label_key}' entries")
        data = np.asarray(batch["data"])
        batch_labels = np.asarray(batch[label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
            raise CorruptDatasetError(
                f"{path}: 'data' must be uint8 [N, 3072] with one label per row, got {data.dtype} {data.shape} "
                f"and {len(batch_labels)} labels"
            )
        if batch_labels.size and (batch_labels.min() < 0 or batch_labels.max() >= num_classes):
            raise CorruptDatasetError(f"{path}: a label is outside 0..{num_classes - 1}")
        # Each row is the red, green and blue 32x32 planes in turn.
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _class_names(path: Path, key: str, num_classes: int) -> list[str] | None:
    if not path.is_file():
        return None
    names = _unpickle(path).get(key)
    if not isinstance(names, list) or len(names) != num_classes:
        raise CorruptDatasetError(f"{path}: '{key}' must list {num_classes} class names")
    return [name.decode() if isinstance(name, bytes) else str(name) for name in names]


def cifar10(root: str | os.PathLike, train: bool = True, transform=None) -> ImageArrayDataset:
    """CIFAR-10: 50,000 training or 10,000 test images, uint8 [N, 32, 32, 3], 10 classes.

    Args:
        root: ``cifar-10-batches-py`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
            ``batches.meta``) or its parent directory.
        train: the training batches, else the test batch.
        transform: applied to each uint8 [3, 32, 32] image tensor on access.
    """
    first = "data_batch_1" if train else "test_batch"
    directory = _batch_dir(root, "cifar-10-batches-py", first, "CIFAR-10")
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    paths = []
    for name in names:
        if not (directory / name).is_file():
            raise DatasetNotFoundError(f"CIFAR-10: file {str(directory / name)!r} not found. {_HOW_TO_GET}")
        paths.append(directory / name)
    images, labels = _read_batches(paths, "labels", 10)
    classes = _class_names(directory / "batches.meta", "label_names", 10)
    return ImageArrayDataset(images, labels, f"cifar10-{'train' if train else 'test'}", classes, transform)


def cifar100(root: str | os.PathLike, train: bool = True, transform=None, coarse: bool = False) -> ImageArrayDataset:
    """CIFAR-100: 50,000 training or 10,000 test images, uint8 [N, 32, 32, 3].

    Args:
        root: ``cifar-100-python`` (``train``, ``test``, ``meta``) or its parent directory.
        train: the training file, else the test file.
        transform: applied to each uint8 [3, 32, 32] image tensor on access.
        coarse: the 20 superclass labels instead of the 100 fine labels.
    """
    name = "train" if train else "test"
    directory = _batch_dir(root, "cifar-100-python", name, "CIFAR-100")
    label_key, num_classes = ("coarse_labels", 20) if coarse else ("fine_labels", 100)
    images, labels = _read_batches([directory / name], label_key, num_classes)
    classes = _class_names(directory / "meta", "coarse_label_names" if coarse else "fine_label_names", num_classes)
    tag = f"cifar100{'-coarse' if coarse else ''}-{name}"
    return ImageArrayDataset(images, labels, tag, classes, transform)
