"""A dataset for loader tests whose pixels name each example."""

import numpy as np

from proxyfast.data import ImageArrayDataset


def index_dataset(n, shape=(6, 5, 1), seed=0):
    """Random pixels and labels, except that pixels (0, 0) and (0, 1) of channel 0 spell
    the example's index, so a batch says which examples it holds."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 1, 0] = np.arange(n) // 256
    return ImageArrayDataset(images, rng.integers(0, 10, size=n), name="index")
