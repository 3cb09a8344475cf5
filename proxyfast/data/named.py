"""Datasets by name, for the command line: ``load_dataset("fashion-mnist", train=False)``."""

from __future__ import annotations

import os

from .cifar import cifar10, cifar100
from .digits import digits
from .fashion_mnist import fashion_mnist
from .image_folder import ImageFolder
from .svhn import svhn

__all__ = ["DATASET_NAMES", "load_dataset"]

DATASET_NAMES = ("fashion-mnist", "digits", "cifar10", "cifar100", "svhn", "imagefolder")


def load_dataset(name: str, root: str | os.PathLike | None = None, train: bool = True, image_size: int | None = None):
    """The train or test split of a dataset named in :data:`DATASET_NAMES`.

    ``root`` is needed for all but ``fashion-mnist`` (default: the Debian package's
    directory) and ``digits`` (ships with scikit-learn). For ``imagefolder`` it is the
    split's directory itself, and ``image_size`` resizes and centre-crops the images.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    if name == "fashion-mnist":
        return fashion_mnist(root, train=train)
    if name == "digits":
        return digits(train=train)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root directory (--data-root)")
    if name == "cifar10":
        return cifar10(root, train=train)
    if name == "cifar100":
        return cifar100(root, train=train)
    if name == "svhn":
        return svhn(root, split="train" if train else "test")
    return ImageFolder(root, size=image_size)
