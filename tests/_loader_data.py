"""A dataset for loader tests whose pixels name each example."""

import numpy as np

import proxyfast
from proxyfast.data import ImageArrayDataset
from proxyfast.scoring import Scores


def index_dataset(n, shape=(6, 5, 1), seed=0):
    """Random pixels and labels, except that pixels (0, 0) and (0, 1) of channel 0 spell
    the example's index, so a batch says which examples it holds."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 1, 0] = np.arange(n) // 256
    return ImageArrayDataset(images, rng.integers(0, 10, size=n), name="index")


def index_proxy(n, k):
    """A P1 proxy of k of n examples, from made-up scores."""
    scores = Scores.from_log10_entropy(np.random.default_rng(1).normal(-2, 1, size=n))
    return proxyfast.select(scores, k=k, method="p1", seed=3, bin_width=0.5)
