"""Score distributions that ship with proxyfast.

The built-in list is real: the per-example entropies of the 50,000 CIFAR-100 training
images under a ResNet-56, published with the paper (Apache License 2.0; see
proxyfast/data/README.md). :func:`imagenet_scale_scores` resamples it to ImageNet's size
for timing and demonstrations: the shape of the distribution is the real one, but the
scores are CIFAR-100 scores, not ImageNet scores.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from .._checks import check_int
from .entropy_list import read_entropy_list
from .scores import Scores

__all__ = ["BUILTIN_ENTROPY_LIST", "IMAGENET_TRAIN_SIZE", "builtin_entropy_list", "imagenet_scale_scores"]

BUILTIN_ENTROPY_LIST = "cifar100_resnet56_entropy.txt.gz"
IMAGENET_TRAIN_SIZE = 1_281_167
# Jitter of the resampled log10 entropies: a bootstrap alone would repeat each of the
# 50,000 values ~26 times; 0.05 is a fifth of the paper's ImageNet bin width.
_JITTER_LOG10 = 0.05


def builtin_entropy_list() -> Scores:
    """The 50,000 CIFAR-100 / ResNet-56 entropies with their labels (bin width 0.25 in the paper)."""
    with resources.as_file(resources.files("proxyfast.data").joinpath(BUILTIN_ENTROPY_LIST)) as path:
        scores = read_entropy_list(path)
    scores.meta["source"] = f"proxyfast built-in {BUILTIN_ENTROPY_LIST}"
    return scores


def imagenet_scale_scores(n: int = IMAGENET_TRAIN_SIZE, seed: int = 0) -> Scores:
    """``n`` scores drawn from the empirical distribution of the built-in list.

    A seeded bootstrap of its log10 entropies plus Gaussian jitter (sigma 0.05 in log10).
    This is a resampling of real CIFAR-100 scores at ImageNet scale, not ImageNet scores;
    it carries no labels.
    """
    check_int("n", n)
    source = builtin_entropy_list().log10_entropy.numpy().astype(np.float64)
    rng = np.random.default_rng(seed)
    log10 = source[rng.integers(0, len(source), size=n)] + rng.normal(0.0, _JITTER_LOG10, size=n)
    scores = Scores.from_log10_entropy(log10)
    scores.meta.update(source=f"resampling of the built-in CIFAR-100 scores (n={n}, seed={seed})")
    return scores
