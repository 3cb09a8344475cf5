"""Datasets: the built-in score lists and image datasets read from local files."""

from .arrays import ImageArrayDataset
from .builtin import BUILTIN_ENTROPY_LIST, IMAGENET_TRAIN_SIZE, builtin_entropy_list, imagenet_scale_scores

__all__ = [
    "BUILTIN_ENTROPY_LIST",
    "IMAGENET_TRAIN_SIZE",
    "ImageArrayDataset",
    "builtin_entropy_list",
    "imagenet_scale_scores",
]
