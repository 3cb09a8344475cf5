"""Baseline: training the model whose predictions the selection is built on.

:func:`train` trains a classifier with checkpoints and resume (and can count forgetting
events on the way); :func:`forgetting` counts them in a run of its own.
"""

from .forgetting_events import Forgetting, ForgettingTracker
from .train import (
    TrainResult,
    dataset_image_size,
    evaluate,
    forgetting,
    load_checkpoint,
    load_model,
    random_crop_flip,
    save_checkpoint,
    train,
)

__all__ = [
    "Forgetting",
    "ForgettingTracker",
    "TrainResult",
    "dataset_image_size",
    "evaluate",
    "forgetting",
    "load_checkpoint",
    "load_model",
    "random_crop_flip",
    "save_checkpoint",
    "train",
]
