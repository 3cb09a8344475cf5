"""Python wrappers of the ``torch.ops.proxyfast`` custom operators.

Each wrapper checks its arguments and raises a ``ValueError`` or ``TypeError`` naming
the argument; the C++ operators check again so that direct calls stay safe. Fake
(meta) kernels let the operators run under ``torch.compile`` and on meta tensors.
"""

from __future__ import annotations

import math

import torch

from . import _checks
from ._extension import _C  # noqa: F401  (loads the library, which registers the operators)

__all__ = [
    "entropy",
    "histogram_bins",
    "weighted_sample",
    "weighted_sample_by_bin",
    "raise_on_non_finite",
    "has_cuda_kernels",
    "has_mixed_edge_kernel",
    "mixed_edge",
    "batch_norm_running_update",
    "LOGIT_DTYPES",
    "MIXED_EDGE_DTYPES",
    "NORM_NONE",
    "NORM_BATCH",
    "NORM_RUNNING",
]

LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_STREAM = 2**32 - 1  # Philox streams are 32-bit


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
    raise_on_non_finite(log10_entropy)


def raise_on_non_finite(log10_entropy: torch.Tensor, batch_size: int | None = None, first: int = 0) -> None:
    """Raises the ``ValueError`` of ``entropy(check_finite=True)`` if a log10 entropy is
    not finite (its row of logits held inf or NaN). The test runs on the device and one
    flag crosses to the host, so a loop can call ``entropy(check_finite=False)`` per batch
    and this once at the end, without a host sync per batch. With ``batch_size``, the
    rows are consecutive batches of that many examples numbered from ``first``, and the
    error names the examples of the first batch holding such a row.
    """
    bad = ~torch.isfinite(log10_entropy)
    if not bool(bad.any()):
        return
    prefix = ""
    if batch_size is not None:
        start = int(torch.argmax(bad.to(torch.uint8))) // batch_size * batch_size
        bad = bad[start:start + batch_size]
        prefix = f"examples {first + start}..{first + start + len(bad) - 1}: "
    rows = torch.nonzero(bad).flatten()[:5].tolist()
    raise ValueError(f"{prefix}logits has non-finite values (inf or NaN) in {int(bad.sum())} rows, e.g. rows {rows}")


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
        if torch.compiler.is_compiling():
            # Traced: an assertion the compiled graph runs, with no host read while tracing.
            torch._assert_async(torch.isfinite(log10_ent).all(), _NON_FINITE_IN_GRAPH)
        else:
            _raise_on_non_finite(log10_ent)
    return ent, log10_ent


_NON_FINITE_IN_GRAPH = "proxyfast.entropy: logits has non-finite values (inf or NaN)"
_LN10 = math.log(10.0)


def _entropy_gradients(logits: torch.Tensor, log10_entropy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dH/dz, d ln(H)/dz) per row of ``logits``, float64, from ``dH/dz_i = -p_i (ln p_i + H)``.

    Each row's gradients sum to zero (H does not change when every logit moves alike), so
    the argmax's entry is minus the sum of the others: this avoids the cancellation in
    ``ln p_max + H`` for confident rows. ``d ln H / dz_i = -exp(ln p_i - ln H) (ln p_i + H)``
    stays finite where H underflows float64 (margins above ~700): ``ln H`` is then taken
    from ``log10_entropy``, which the op computes in the log domain.
    """
    z = logits.double()
    top, argmax = z.max(dim=1, keepdim=True)
    shifted = z - top
    others = shifted.exp().scatter(1, argmax, 0.0)
    log_norm = torch.log1p(others.sum(dim=1, keepdim=True))  # ln sum_j exp(z_j - max), to full precision
    log_p = shifted - log_norm
    h = (log_p.exp() * -log_p).sum(dim=1, keepdim=True)
    log_h = torch.where(h > 0, h.clamp_min(torch.finfo(torch.float64).tiny).log(),
                        log10_entropy.double().unsqueeze(1) * _LN10)
    factor = log_p + h
    grad_h = (-log_p.exp() * factor).scatter(1, argmax, 0.0)
    grad_log_h = (-(log_p - log_h).exp() * factor).scatter(1, argmax, 0.0)
    grad_h = grad_h.scatter(1, argmax, -grad_h.sum(dim=1, keepdim=True))
    grad_log_h = grad_log_h.scatter(1, argmax, -grad_log_h.sum(dim=1, keepdim=True))
    return grad_h, grad_log_h


def _entropy_setup_context(ctx, inputs, output):
    (logits,) = inputs
    _, log10_ent = output
    ctx.save_for_backward(logits, log10_ent)


def _entropy_backward(ctx, grad_entropy, grad_log10_entropy):
    logits, log10_ent = ctx.saved_tensors
    grad_h, grad_log_h = _entropy_gradients(logits, log10_ent)
    grad = torch.zeros_like(grad_h)
    if grad_entropy is not None:
        grad = grad + grad_entropy.double().unsqueeze(1) * grad_h
    if grad_log10_entropy is not None:
        grad = grad + (grad_log10_entropy.double() / _LN10).unsqueeze(1) * grad_log_h
    return grad.to(logits.dtype)


def _check_bins(lo, bin_width, n_bins, top):
    lo, top = _checks.check_real("lo", lo), _checks.check_real("top", top)
    _checks.check_bin_width("bin_width", bin_width)
    _checks.check_int("n_bins", n_bins)
    if top < lo:
        raise ValueError(f"top ({top}) must not be below lo ({lo})")


def histogram_bins(values, lo, bin_width, n_bins, top):
    """Bins a 1-D float32 or float64 tensor into edges ``lo + b * bin_width``, comparing in
    float64; (int32 ids, int64 counts)."""
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.dtype not in (torch.float32, torch.float64):
        raise TypeError("values must be a 1-D float32 or float64 tensor")
    _check_bins(lo, bin_width, n_bins, top)
    return torch.ops.proxyfast.histogram_bins.default(values, float(lo), float(bin_width), int(n_bins), float(top))


def check_seed(seed) -> int:
    """Returns ``seed`` as an int after checking it is an integer in [0, 2^63)."""
    return _checks.check_seed("seed", seed)


def _check_draw(k, seed, stream) -> tuple[int, int, int]:
    """The sampler's k, seed and stream, checked; shared by both sampling ops."""
    return _checks.check_int("k", k, 0), check_seed(seed), _checks.check_int("stream", stream, 0, _MAX_STREAM)


def _check_weights(name: str, weights: torch.Tensor) -> None:
    """Sampling weights must be finite and non-negative (one pass: their min and max)."""
    low, high = (float(v) for v in torch.aminmax(weights))
    if math.isnan(low) or math.isnan(high) or math.isinf(high):
        raise ValueError(f"{name} must be finite; found inf or NaN")
    if low < 0:
        raise ValueError(f"{name} must be non-negative; found a negative weight")


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
    k, seed, stream = _check_draw(k, seed, stream)
    _check_weights("weights", weights)
    positive = int(torch.count_nonzero(weights))
    if k > positive:
        raise ValueError(f"k = {k} exceeds the number of positive weights ({positive})")
    return torch.ops.proxyfast.weighted_sample.default(weights, k, seed, stream)


def weighted_sample_by_bin(bin_ids: torch.Tensor, bin_weights: torch.Tensor, k: int, seed: int = 0,
                          stream: int = 0, bin_counts: torch.Tensor | None = None) -> torch.Tensor:
    """``weighted_sample(bin_weights[bin_ids], k, seed, stream)``, the same indices, where
    items share the weight of their bin: no N-sized weights are made, and the weights are
    checked per bin. ``bin_ids`` int32 [N] in [0, len(bin_weights)), ``bin_weights``
    float64; ``bin_counts``, the items per bin if known, spares a pass counting them.
    CPU only: on another device it gathers the weights and calls :func:`weighted_sample`.
    """
    if not isinstance(bin_ids, torch.Tensor) or bin_ids.dim() != 1 or bin_ids.dtype != torch.int32:
        raise TypeError("bin_ids must be a 1-D int32 tensor")
    if not isinstance(bin_weights, torch.Tensor) or bin_weights.dim() != 1 or bin_weights.dtype != torch.float64:
        raise TypeError("bin_weights must be a 1-D float64 tensor")
    if bin_weights.device != bin_ids.device:
        raise ValueError(f"bin_weights is on {bin_weights.device}, bin_ids on {bin_ids.device}")
    if bin_ids.device.type != "cpu":
        return weighted_sample(bin_weights.index_select(0, bin_ids), k, seed, stream)
    if bin_ids.numel() == 0:
        raise ValueError("bin_ids is empty")
    if bin_weights.numel() == 0:
        raise ValueError("bin_weights is empty")
    k, seed, stream = _check_draw(k, seed, stream)
    _check_weights("bin_weights", bin_weights)
    if bin_counts is None:
        low_id, high_id = (int(v) for v in torch.aminmax(bin_ids))
        if low_id < 0 or high_id >= bin_weights.numel():
            raise ValueError(f"bin_ids must lie in [0, {bin_weights.numel()}), found "
                             f"{low_id if low_id < 0 else high_id}")
        bin_counts = torch.bincount(bin_ids, minlength=bin_weights.numel())
    elif bin_counts.shape != bin_weights.shape:
        raise ValueError(f"bin_counts must have the shape of bin_weights {tuple(bin_weights.shape)}, "
                         f"got {tuple(bin_counts.shape)}")
    positive = int(bin_counts[bin_weights > 0].sum())
    if k > positive:
        raise ValueError(f"k = {k} exceeds the number of positive weights ({positive})")
    return torch.ops.proxyfast.weighted_sample_by_bin.default(bin_ids, bin_weights, k, seed, stream)


@torch.library.register_fake("proxyfast::entropy")
def _entropy_fake(logits):
    n = logits.shape[0]
    return logits.new_empty((n,), dtype=torch.float32), logits.new_empty((n,), dtype=torch.float32)


torch.library.register_autograd("proxyfast::entropy", _entropy_backward, setup_context=_entropy_setup_context)


@torch.library.register_fake("proxyfast::histogram_bins")
def _histogram_bins_fake(values, lo, bin_width, n_bins, top):
    return values.new_empty(values.shape, dtype=torch.int32), values.new_empty((n_bins,), dtype=torch.int64)


@torch.library.register_fake("proxyfast::weighted_sample")
def _weighted_sample_fake(weights, k, seed, stream):
    return weights.new_empty((k,), dtype=torch.int64)


@torch.library.register_fake("proxyfast::weighted_sample_by_bin")
def _weighted_sample_by_bin_fake(bin_ids, bin_weights, k, seed, stream):
    return bin_ids.new_empty((k,), dtype=torch.int64)


# The fused mixed-op edge of the DARTS supernet (csrc/common/mixed_edge.h).

MIXED_EDGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
MIXED_EDGE_MAX_BRANCHES = 8
NORM_NONE, NORM_BATCH, NORM_RUNNING = 0, 1, 2
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


# Read once: the registry query is opaque to torch.compile, which would break the graph
# at every edge of a supernet.
_MIXED_EDGE_KERNELS = {
    device_type: torch._C._dispatch_has_kernel_for_dispatch_key("proxyfast::mixed_edge", key)
    for device_type, key in _DISPATCH_KEYS.items()
}


def has_mixed_edge_kernel(device_type: str) -> bool:
    """Whether the fused mixed-edge op has a kernel for ``device_type`` (``"cpu"``, ``"cuda"``)."""
    return _MIXED_EDGE_KERNELS.get(device_type, False)


def mixed_edge(x: torch.Tensor, weights: torch.Tensor, branches, branch_slots, skip_slot: int = -1,
               max_pool_slot: int = -1, avg_pool_slot: int = -1, stride: int = 1, norm_modes=None, eps=None,
               running_stats=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One edge of the DARTS supernet, fused: ``sum_i weights[i] * op_i(x)``.

    The terms of the sum are numbered: 0 the 3x3 max pool of ``x``, 1 its 3x3 average
    pool (padding 1, ``count_include_pad=False``), 2 + b the branch ``branches[b]`` (a
    convolution's output, computed outside), weighted by ``weights[max_pool_slot]``,
    ``weights[avg_pool_slot]`` and ``weights[branch_slots[b]]``; skip (stride 1) adds
    ``weights[skip_slot] * x``. A slot of -1 leaves that operation out (as for ``none``).
    ``norm_modes[t]`` says how term t is normalised by a non-affine batch norm:
    ``NORM_NONE`` (a branch taken as it is), ``NORM_BATCH`` (batch statistics, as in
    training) or ``NORM_RUNNING`` (rows 2t and 2t + 1 of ``running_stats``, [2 * terms,
    C]: mean and variance); pools are always normalised. By default the pools use batch
    statistics and the branches are taken as they are; ``eps`` defaults to 1e-5.

    Returns the edge output (x's dtype; spatial size ``ceil(H / stride)``) and the
    [2 * terms, C] float64 statistics it normalised with (biased variances; zeros for
    the terms it did not normalise). Differentiable once in ``x``, ``weights`` and the
    branches; the pooled and normalised tensors are recomputed in the backward rather
    than kept. Accumulates in fp32 (fp64 for fp64 inputs).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in MIXED_EDGE_DTYPES:
        raise TypeError(f"x must be float32, float16, bfloat16 or float64, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"x is empty: shape {tuple(x.shape)}")
    if not isinstance(weights, torch.Tensor) or weights.dim() != 1 or not weights.is_floating_point():
        raise TypeError("weights must be a 1-D floating-point tensor")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")
    branches = list(branches)
    branch_slots = [int(s) for s in branch_slots]
    if len(branches) != len(branch_slots):
        raise ValueError(f"branches ({len(branches)}) and branch_slots ({len(branch_slots)}) differ in length")
    if len(branches) > MIXED_EDGE_MAX_BRANCHES:
        raise ValueError(f"at most {MIXED_EDGE_MAX_BRANCHES} branches, got {len(branches)}")
    out_shape = (x.shape[0], x.shape[1], (x.shape[2] - 1) // stride + 1, (x.shape[3] - 1) // stride + 1)
    for b, branch in enumerate(branches):
        if not isinstance(branch, torch.Tensor) or tuple(branch.shape) != out_shape:
            shape = tuple(branch.shape) if isinstance(branch, torch.Tensor) else type(branch).__name__
            raise ValueError(f"branches[{b}] must have shape {out_shape}, got {shape}")
        if branch.dtype != x.dtype or branch.device != x.device:
            raise TypeError(f"branches[{b}] must be {x.dtype} on {x.device}, got {branch.dtype} on {branch.device}")
    free_slots = [int(skip_slot), int(max_pool_slot), int(avg_pool_slot)]
    slots = branch_slots + [s for s in free_slots if s >= 0]
    if any(not 0 <= s < weights.numel() for s in slots) or len(set(slots)) != len(slots):
        raise ValueError(f"slots must be distinct indices into the {weights.numel()} weights, got "
                         f"branch_slots={branch_slots}, skip/max/avg={free_slots}")
    if skip_slot >= 0 and stride != 1:
        raise ValueError("skip_slot: skip_connect is the identity only at stride 1 (at stride 2 it is a branch)")
    terms = 2 + len(branches)
    norm_modes = [NORM_BATCH, NORM_BATCH] + [NORM_NONE] * len(branches) if norm_modes is None else list(norm_modes)
    eps = [1e-5] * terms if eps is None else [float(e) for e in eps]
    if len(norm_modes) != terms or len(eps) != terms:
        raise ValueError(f"norm_modes and eps take one value per term (max pool, avg pool, then each branch): "
                         f"{terms}, got {len(norm_modes)} and {len(eps)}")
    present = [max_pool_slot >= 0, avg_pool_slot >= 0] + [True] * len(branches)
    modes = [int(m) if p else NORM_NONE for m, p in zip(norm_modes, present)]
    if any(m not in (NORM_NONE, NORM_BATCH, NORM_RUNNING) for m in modes):
        raise ValueError(f"norm_modes must be NORM_NONE, NORM_BATCH or NORM_RUNNING (0, 1, 2), got {norm_modes}")
    if any(p and m == NORM_NONE for p, m in zip(present[:2], modes[:2])):
        raise ValueError("norm_modes: a pool is always normalised (NORM_BATCH or NORM_RUNNING)")
    if any(m != NORM_NONE and not (e > 0 and math.isfinite(e)) for m, e in zip(modes, eps)):
        raise ValueError(f"eps must be positive and finite, got {eps}")
    if NORM_BATCH in modes and out_shape[0] * out_shape[2] * out_shape[3] < 2:
        raise ValueError(f"batch statistics need more than 1 value per channel, got x of shape {tuple(x.shape)}")
    if NORM_RUNNING in modes:
        if not isinstance(running_stats, torch.Tensor) or tuple(running_stats.shape) != (2 * terms, x.shape[1]):
            raise ValueError(f"running_stats must be a [{2 * terms}, {x.shape[1]}] tensor for a term normalised "
                             "with running statistics")
        running_stats = running_stats.to(device=x.device, dtype=torch.float64).contiguous()
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.ops.proxyfast.mixed_edge.default(
        x.contiguous(), weights.to(acc_dtype).contiguous(), [b.contiguous() for b in branches], branch_slots,
        free_slots, stride, modes, eps, running_stats)


def batch_norm_running_update(running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor,
                              var: torch.Tensor, momentum: float, count: int) -> None:
    """In place, as ``nn.BatchNorm2d`` does in training: ``running = momentum * batch +
    (1 - momentum) * running``, the variance unbiased (``var * count / (count - 1)``).
    ``mean`` and ``var`` are the batch mean and biased variance, 1-D float64."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    if count < 2:
        raise ValueError(f"count must exceed 1, got {count!r}")
    torch.ops.proxyfast.batch_norm_running_update.default(running_mean, running_var, mean, var, float(momentum),
                                                          int(count))


@torch.library.register_fake("proxyfast::mixed_edge")
def _mixed_edge_fake(x, weights, branches, branch_slots, free_slots, stride, norm_modes, eps, running_stats):
    n, c, h, w = x.shape
    out = x.new_empty((n, c, (h - 1) // stride + 1, (w - 1) // stride + 1))
    return out, x.new_empty((2 * len(norm_modes), c), dtype=torch.float64)


@torch.library.register_fake("proxyfast::mixed_edge_backward")
def _mixed_edge_backward_fake(grad, x, weights, branches, branch_slots, free_slots, stride, norm_modes, eps, stats,
                              output_mask):
    grad_x = torch.empty_like(x) if output_mask[0] else x.new_empty((0,))
    grad_branches = [torch.empty_like(b) for b in branches] if output_mask[1] else []
    return grad_x, torch.empty_like(weights), grad_branches


@torch.library.register_fake("proxyfast::batch_norm_running_update")
def _batch_norm_running_update_fake(running_mean, running_var, mean, var, momentum, count):
    return None


def _mixed_edge_setup_context(ctx, inputs, output):
    x, weights, branches, branch_slots, free_slots, stride, norm_modes, eps, _running_stats = inputs
    _, stats = output
    ctx.mark_non_differentiable(stats)
    ctx.save_for_backward(x, weights, stats, *branches)
    ctx.config = (list(branch_slots), list(free_slots), stride, list(norm_modes), list(eps))


def _mixed_edge_backward(ctx, grad_out, _grad_stats):
    x, weights, stats, *branches = ctx.saved_tensors
    if torch.is_grad_enabled() and any(t.requires_grad for t in (grad_out, x, weights, *branches)):
        raise RuntimeError("proxyfast.mixed_edge is differentiable once: double backward (create_graph=True) "
                           "is not supported; use the reference mixed op (impl='reference') for it")
    branch_slots, free_slots, stride, norm_modes, eps = ctx.config
    need_x, need_weights, need_branches = ctx.needs_input_grad[:3]
    need_branches = any(need_branches)
    grad_x, grad_weights, grad_branches = torch.ops.proxyfast.mixed_edge_backward.default(
        grad_out.contiguous(), x, weights, branches, branch_slots, free_slots, stride, norm_modes, eps, stats,
        [need_x, need_branches])
    # The gradient's structure mirrors the inputs': one entry per branch, and an empty
    # list stands for an empty branch_slots (a non-empty list of ints takes None).
    return (grad_x if need_x else None, grad_weights if need_weights else None,
            list(grad_branches) if need_branches else [None] * len(branches),
            None if branch_slots else [], None, None, None, None, None)


torch.library.register_autograd("proxyfast::mixed_edge", _mixed_edge_backward,
                                setup_context=_mixed_edge_setup_context)
