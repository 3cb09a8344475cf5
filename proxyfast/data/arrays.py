"""In-memory image datasets: the common shape of every small dataset proxyfast reads."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["ImageArrayDataset"]


class ImageArrayDataset(torch.utils.data.Dataset):
    """Images as one uint8 array [N, H, W, C] and labels as int64 [N], held in memory.

    ``dataset[i]`` is ``(image, label)`` with ``image`` a uint8 tensor [C, H, W] (or
    ``transform(image)`` when a transform is given) and ``label`` an int.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str, classes=None, transform=None):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 array [N, H, W, C], got {images.dtype} {images.shape}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.name = name
        self.classes = list(classes) if classes is not None else sorted(set(self.labels.tolist()))
        self.transform = transform
        self._fingerprint = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return tuple(self.images.shape[1:])

    def fingerprint(self) -> str:
        """'sha256:<hex>' of the name, shape, pixels and labels: equal data, equal fingerprint."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(f"{self.name}|{self.images.shape}".encode())
            digest.update(np.ascontiguousarray(self.images).tobytes())
            digest.update(self.labels.astype("<i8").tobytes())
            self._fingerprint = "sha256:" + digest.hexdigest()
        return self._fingerprint
