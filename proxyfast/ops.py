"""Python wrappers of the ``torch.ops.proxyfast`` custom operators.

Each wrapper checks its arguments and raises a ``ValueError`` or ``TypeError`` naming
the argument; the C++ operators check again so that direct calls stay safe. Fake
(meta) kernels let the operators run under ``torch.compile`` and on meta tensors.
"""

from __future__ import annotations

import math

import torch

from . import _C  # noqa: F401  (loads the library, which registers the operators)

__all__ = ["entropy", "entropy_histogram", "histogram_bins", "weighted_sample", "has_cuda_kernels", "LOGIT_DTYPES"]

LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_SEED = 2**63 - 1


def has_cuda_kernels() -> bool:
    """Whether this build of the extension has the CUDA kernels (built with CUDA_HOME set)."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("proxyfast::entropy", "CUDA")


def _check_logits(logits):
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D [N, C], got shape {tuple(logits.shape)}")
    if logits.dtype not in LOGIT_DTYPES:
        raise TypeError(f"logits must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.shape[0] == 0:
        raise ValueError("logits is empty: it has no rows")
    if logits.shape[1] < 2:
        raise ValueError(f"logits needs at least 2 classes per row, got {logits.shape[1]}")


def _raise_on_non_finite(log10_entropy):
    bad = ~torch.isfinite(log10_entropy)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()[:5].tolist()
        raise ValueError(f"logits has non-finite values (inf or NaN) in {int(bad.sum())} rows, e.g. rows {rows}")


def entropy(logits: torch.Tensor, check_finite: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax entropy of each row of ``logits`` [N, C], in nats, and its log10.

    One pass over the logits, no N x C temporary; fp32/fp16/bf16 input with any strides,
    fp32 output accumulated in fp64. The log10 entropy is finite for every finite row,
    also where the entropy itself underflows fp32 (margins above ~90). With
    ``check_finite`` a row holding inf or NaN raises; without it that row gives NaN.
    """
    _check_logits(logits)
    ent, log10_ent = torch.ops.proxyfast.entropy.default(logits)
    if check_finite:
        _raise_on_non_finite(log10_ent)
    return ent, log10_ent


def _check_bins(lo, bin_width, n_bins, top):
    for name, value in (("lo", lo), ("bin_width", bin_width), ("top", top)):
        if not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if bin_width <= 0:
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if top < lo:
        raise ValueError(f"top ({top}) must not be below lo ({lo})")


def entropy_histogram(logits, lo, bin_width, n_bins, top, check_finite=True):
    """Entropy fused with binning into known edges ``lo + b * bin_width`` (last edge ``top``).

    Returns (entropy, log10 entropy, int32 bin ids with -1 outside [lo, top], int64 counts).
    """
    _check_logits(logits)
    _check_bins(lo, bin_width, n_bins, top)
    out = torch.ops.proxyfast.entropy_histogram.default(logits, float(lo), float(bin_width), int(n_bins), float(top))
    if check_finite:
        _raise_on_non_finite(out[1])
    return out


def histogram_bins(values, lo, bin_width, n_bins, top):
    """Bins a 1-D float32 tensor into edges ``lo + b * bin_width``; (int32 ids, int64 counts)."""
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.dtype != torch.float32:
        raise TypeError("values must be a 1-D float32 tensor")
    _check_bins(lo, bin_width, n_bins, top)
    return torch.ops.proxyfast.histogram_bins.default(values, float(lo), float(bin_width), int(n_bins), float(top))


def check_seed(seed) -> int:
    """Returns ``seed`` as an int after checking it is an integer in [0, 2^63)."""
    if isinstance(seed, bool) or not isinstance(seed, int) and not (
        isinstance(seed, torch.Tensor) and seed.dim() == 0 and not seed.is_floating_point()
    ):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2^63 - 1], got {seed}")
    return seed


def weighted_sample(weights: torch.Tensor, k: int, seed: int = 0, stream: int = 0) -> torch.Tensor:
    """``k`` distinct indices drawn without replacement, each draw proportional to the
    weights of the items not yet drawn (numpy's ``choice(n, k, replace=False, p=w/w.sum())``),
    returned in draw order as int64 on the device of ``weights``.

    Efraimidis-Spirakis keys from a Philox counter-based generator: CPU and CUDA give the
    same indices for the same ``seed`` and ``stream``. Zero-weight items are never drawn.
    """
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights.dim() != 1:
        raise ValueError(f"weights must be 1-D, got shape {tuple(weights.shape)}")
    if weights.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"weights must be float32 or float64, got {weights.dtype}")
    if weights.numel() == 0:
        raise ValueError("weights is empty")
    if weights.numel() > 2**31 - 1:
        raise ValueError(f"weights may hold at most 2^31 - 1 items, got {weights.numel()}")
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    seed = check_seed(seed)
    low, high = (float(v) for v in torch.aminmax(weights))
    if math.isnan(low) or math.isnan(high) or math.isinf(high):
        raise ValueError("weights must be finite; found inf or NaN")
    if low < 0:
        raise ValueError("weights must be non-negative; found a negative weight")
    positive = int(torch.count_nonzero(weights))
    if k > positive:
        raise ValueError(f"k = {k} exceeds the number of positive weights ({positive})")
    return torch.ops.proxyfast.weighted_sample.default(weights, k, seed, int(stream))


@torch.library.register_fake("proxyfast::entropy")
def _entropy_fake(logits):
    n = logits.shape[0]
    return logits.new_empty((n,), dtype=torch.float32), logits.new_empty((n,), dtype=torch.float32)


@torch.library.register_fake("proxyfast::entropy_histogram")
def _entropy_histogram_fake(logits, lo, bin_width, n_bins, top):
    n = logits.shape[0]
    return (
        logits.new_empty((n,), dtype=torch.float32),
        logits.new_empty((n,), dtype=torch.float32),
        logits.new_empty((n,), dtype=torch.int32),
        logits.new_empty((n_bins,), dtype=torch.int64),
    )


@torch.library.register_fake("proxyfast::histogram_bins")
def _histogram_bins_fake(values, lo, bin_width, n_bins, top):
    return values.new_empty(values.shape, dtype=torch.int32), values.new_empty((n_bins,), dtype=torch.int64)


@torch.library.register_fake("proxyfast::weighted_sample")
def _weighted_sample_fake(weights, k, seed, stream):
    return weights.new_empty((k,), dtype=torch.int64)
