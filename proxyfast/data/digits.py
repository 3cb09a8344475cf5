"""scikit-learn's handwritten digits: 1,797 8x8 images, 10 classes; installed with scikit-learn."""

from __future__ import annotations

import numpy as np

from .arrays import ImageArrayDataset

__all__ = ["digits"]

# The images hold 0..16; they are stored as uint8 0..255 like every other dataset here.
_SCALE = 255.0 / 16.0
# A fixed split: every fifth example is a test example (no random state involved).
_TEST_EVERY = 5


def digits(train: bool | None = None, transform=None) -> ImageArrayDataset:
    """The digits as uint8 [N, 8, 8, 1] images (0..16 scaled to 0..255) and labels 0..9.

    Args:
        train: None for all 1,797 examples; True / False for a fixed split, every fifth
            example (index % 5 == 4) in the test part (1,438 train, 359 test).
        transform: applied to each uint8 [1, 8, 8] image tensor on access.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits dataset ships with scikit-learn: pip install scikit-learn") from None
    data = load_digits()
    images = np.rint(np.asarray(data.images) * _SCALE).astype(np.uint8)[..., None]
    labels = np.asarray(data.target, dtype=np.int64)
    name = "digits"
    if train is not None:
        keep = (np.arange(len(labels)) % _TEST_EVERY == _TEST_EVERY - 1) != bool(train)
        images, labels = images[keep], labels[keep]
        name = f"digits-{'train' if train else 'test'}"
    return ImageArrayDataset(images, labels, name, [str(d) for d in range(10)], transform)
