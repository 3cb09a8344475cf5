"""A directory tree of images, one subdirectory per class (the ImageNet layout)::

    root/n01440764/n01440764_10026.JPEG
    root/n01443537/...

Images are decoded with Pillow on access; nothing is held in memory but the file list.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from .._checks import check_int
from ._files import CorruptDatasetError, require_dir

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_HOW_TO_GET = "Pass root= a directory with one subdirectory of images per class (the ImageNet train/ layout)."
# The usual evaluation crop: resize the shorter side to size / 0.875, then crop the centre.
_CROP_FRACTION = 0.875


class ImageFolder(torch.utils.data.Dataset):
    """Images in class subdirectories; ``dataset[i]`` is ``(image, label)`` with ``image``
    a uint8 tensor [3, H, W] (RGB), or ``transform(image)``.

    Args:
        root: the tree's root; classes are its subdirectories in sorted order, examples
            the image files below each (recursively) in sorted order.
        transform: applied to each uint8 image tensor.
        size: when given, every image is resized (shorter side to ``round(size / 0.875)``)
            and centre-cropped to ``size`` x ``size``, so that images stack into batches.
        extensions: file name endings counted as images (case-insensitive).
    """

    def __init__(self, root: str | os.PathLike, transform=None, size: int | None = None,
                 extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> None:
        self.root = require_dir(root, "ImageFolder", _HOW_TO_GET)
        if size is not None:
            check_int("size", size)
        self.classes = sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir())
        if not self.classes:
            raise CorruptDatasetError(f"ImageFolder: {str(self.root)!r} has no class subdirectories. {_HOW_TO_GET}")
        extensions = tuple(e.lower() for e in extensions)
        self.samples: list[tuple[str, int]] = []
        for label, name in enumerate(self.classes):
            for directory, _, files in sorted(os.walk(self.root / name)):
                for file in sorted(files):
                    if file.lower().endswith(extensions):
                        self.samples.append((os.path.join(directory, file), label))
        if not self.samples:
            raise CorruptDatasetError(f"ImageFolder: no image files ({', '.join(extensions)}) under {str(self.root)!r}")
        self.labels = np.asarray([label for _, label in self.samples], dtype=np.int64)
        self.name = f"imagefolder-{self.root.name}"
        self.transform = transform
        self.size = size
        self._fingerprint = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = torch.from_numpy(self._load(path)).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def _load(self, path: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if self.size is not None:
                    image = _resize_center_crop(image, self.size)
                return np.array(image, dtype=np.uint8)  # a writable copy
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise CorruptDatasetError(f"ImageFolder: cannot decode image {path!r}: {error}") from None

    def fingerprint(self) -> str:
        """'sha256:<hex>' of the relative paths, sizes and labels of the files (not their
        pixels, which would mean reading the whole tree) and of ``size``."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"imagefolder|size={self.size}".encode())
            for path, label in self.samples:
                digest.update(f"{os.path.relpath(path, self.root)}|{os.path.getsize(path)}|{label}\n".encode())
            self._fingerprint = "sha256:" + digest.hexdigest()
        return self._fingerprint


def _resize_center_crop(image, size: int):
    from PIL import Image

    short = round(size / _CROP_FRACTION)
    width, height = image.size
    scale = short / min(width, height)
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))
