"""Dataset fingerprints: what ties a scores file to the data it was computed on."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["dataset_fingerprint"]


def dataset_fingerprint(dataset) -> str | None:
    """A stable ``'sha256:<hex>'`` identifying ``dataset``, or None when it cannot be known.

    Datasets with a ``fingerprint()`` method (every proxyfast dataset) give theirs; a
    ``torch.utils.data.Subset`` combines its base's fingerprint with its indices. Other
    datasets give None: their scores cannot be checked against them.
    """
    if isinstance(dataset, torch.utils.data.Subset):
        base = dataset_fingerprint(dataset.dataset)
        if base is None:
            return None
        digest = hashlib.sha256(f"subset|{base}|".encode())
        digest.update(np.asarray(dataset.indices, dtype="<i8").tobytes())
        return "sha256:" + digest.hexdigest()
    method = getattr(dataset, "fingerprint", None)
    return method() if callable(method) else None
