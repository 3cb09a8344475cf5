"""Scoring: the per-example entropies (and features) of a baseline's predictions.

:func:`score` runs a model over a dataset into :class:`Scores`; :mod:`.entropy_list`
reads and writes the paper's plain-text ``index entropy label`` lists; :mod:`.builtin`
holds the published CIFAR-100 / ResNet-56 list and its resampling at ImageNet scale.
"""

from . import builtin
from .builtin import BUILTIN_ENTROPY_LIST, IMAGENET_TRAIN_SIZE, builtin_entropy_list, imagenet_scale_scores
from .entropy_list import read_entropy_list, write_entropy_list
from .scores import (
    FORMAT_VERSION,
    MAGIC,
    DatasetMismatchError,
    Scores,
    as_scores,
    input_memory_format,
    model_info,
    score,
)

__all__ = [
    "BUILTIN_ENTROPY_LIST",
    "DatasetMismatchError",
    "FORMAT_VERSION",
    "IMAGENET_TRAIN_SIZE",
    "MAGIC",
    "Scores",
    "as_scores",
    "builtin_entropy_list",
    "imagenet_scale_scores",
    "input_memory_format",
    "model_info",
    "read_entropy_list",
    "score",
    "write_entropy_list",
]
