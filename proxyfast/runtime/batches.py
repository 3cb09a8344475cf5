"""Batches of a dataset and the batched augmentation, shared by scoring and training."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from .._checks import check_int
from ..data import ImageArrayDataset

__all__ = ["dataset_image_size", "iterate_batches", "random_crop_flip", "to_float_images"]


def iterate_batches(
    dataset,
    batch_size: int,
    indices: torch.Tensor | np.ndarray | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yields ``(indices, inputs, labels)`` batches of ``dataset`` in the order of ``indices``
    (default: 0..N-1). ``indices`` and ``labels`` are int64 CPU tensors.

    An :class:`ImageArrayDataset` without a transform is sliced directly (uint8 images
    [B, C, H, W] in channels-last memory order, no per-example Python); any other dataset
    goes through a ``DataLoader`` whose examples are ``(input, label)`` pairs.
    """
    check_int("batch_size", batch_size)
    order = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
    if isinstance(dataset, ImageArrayDataset) and dataset.transform is None:
        labels = torch.from_numpy(dataset.labels)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            images = torch.from_numpy(dataset.images[batch.numpy()]).permute(0, 3, 1, 2)
            yield batch, images, labels[batch]
        return
    sampler = torch.utils.data.BatchSampler(order.tolist(), batch_size, drop_last=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)
    for batch, (inputs, labels) in zip(sampler, loader):
        yield torch.as_tensor(batch, dtype=torch.int64), inputs, torch.as_tensor(labels, dtype=torch.int64)


def to_float_images(inputs: torch.Tensor, device: torch.device, memory_format=torch.preserve_format) -> torch.Tensor:
    """``inputs`` on ``device``; uint8 images become float32 in [0, 1] (other dtypes pass as they are)."""
    inputs = inputs.to(device, non_blocking=True)
    if inputs.dtype == torch.uint8:
        inputs = inputs.to(torch.float32).div_(255.0)
    if inputs.dim() == 4 and memory_format is not torch.preserve_format:
        inputs = inputs.contiguous(memory_format=memory_format)
    return inputs


def random_crop_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Each image [C, H, W] of the batch shifted by up to ``pad`` pixels (zero fill) and
    flipped horizontally with probability 1/2: the standard CIFAR augmentation, batched."""
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    rows = dy + torch.arange(h)
    cols = dx + torch.arange(w)
    flip = torch.rand(b, 1, generator=generator) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(b).view(b, 1, 1, 1)
    channel = torch.arange(c).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def dataset_image_size(dataset) -> tuple[int, int]:
    """(H, W) of the dataset's images, from ``image_shape`` or its first example."""
    shape = getattr(dataset, "image_shape", None)
    if shape is not None:
        return tuple(shape[:2])
    first = dataset[0][0]
    return tuple(first.shape[-2:]) if isinstance(first, torch.Tensor) and first.dim() >= 2 else (8, 8)
