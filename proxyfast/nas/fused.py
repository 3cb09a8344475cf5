"""The fused mixed op: ``MixedOp(..., impl="fused")``, one ``proxyfast.mixed_edge`` call per edge.

The reference edge, ``sum(w * op(x) for ...)``, materialises every candidate's output,
the weighted copies and the partial sums, and keeps for backward the pooled tensors
(with the max pool's int64 indices), the batch norms' inputs and the weighted outputs.
The fused edge runs only the convolutions as modules; one kernel does the rest:

- ``none`` (``Zero``) contributes nothing and is skipped;
- ``skip_connect`` at stride 1 (``nn.Identity``) is read from ``x``;
- 3x3 max and average pooling, each followed by its ``BatchNorm2d(affine=False)``, are
  computed on the fly from ``x``;
- a convolution branch that ends in a ``BatchNorm2d(affine=False)`` (the separable and
  dilated convolutions: nested ``nn.Sequential``) runs without that batch norm, which the
  kernel applies while it forms the weighted sum, so the normalised output is never
  stored; any other module (``FactorizedReduce``, the skip of a stride-2 edge) is a
  branch whose output the kernel weighs in as it is.

The batch norms use batch statistics in training, updating the running statistics as
PyTorch does, and running statistics in eval. The backward recomputes the pools and the
normalised values rather than keeping them. A module the kernel does not cover exactly
(another pooling configuration, an affine or subclassed batch norm, a container with
hooks) runs as a branch, so the result is always the reference one. Inputs the op has no
kernel for (another device, an integer dtype, an empty batch) use the reference path.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import ops as _ops
from .mixed import reference_mixed, register_mixed_impl
from .operations import Zero

__all__ = ["fused_mixed"]

_MAX_POOL, _AVG_POOL = 0, 1


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _is_chain(module: nn.Module) -> bool:
    """An ``nn.Sequential`` (or a subclass such as ``SepConv`` that keeps its forward)
    without hooks: calling it is calling its children in turn."""
    return (isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward
            and not _hooked(module))


def _hooked(module: nn.Module) -> bool:
    # The fused path does not call the modules it replaces, so their hooks would not run.
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _plain_batch_norm(module: nn.Module, channels: int) -> bool:
    """A non-affine ``BatchNorm2d`` on ``channels`` channels, which the kernel applies."""
    return (type(module) is nn.BatchNorm2d and not module.affine and module.num_features == channels
            and not _hooked(module))


def _pool_kind(op: nn.Module, channels: int) -> tuple[int, int] | None:
    """``(kind, stride)`` when ``op`` is a 3x3, padding-1 pool followed by a non-affine
    ``BatchNorm2d`` on ``channels`` channels, exactly as the search space builds it."""
    if not _is_chain(op) or len(op) != 2:
        return None
    pool, bn = op[0], op[1]
    if not _plain_batch_norm(bn, channels) or _hooked(pool):
        return None
    if _pair(getattr(pool, "kernel_size", None)) != (3, 3) or _pair(getattr(pool, "padding", None)) != (1, 1):
        return None
    if getattr(pool, "ceil_mode", True):
        return None
    stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    if stride not in ((1, 1), (2, 2)):
        return None
    if type(pool) is nn.MaxPool2d and _pair(pool.dilation) == (1, 1) and not pool.return_indices:
        return _MAX_POOL, stride[0]
    if type(pool) is nn.AvgPool2d and not pool.count_include_pad and pool.divisor_override is None:
        return _AVG_POOL, stride[0]
    return None


def _split_batch_norm(op: nn.Module, channels: int) -> tuple[list[nn.Module], nn.BatchNorm2d | None, list[nn.Module]]:
    """``(modules, bn, containers)``: ``op`` is ``modules`` applied in turn, then ``bn``
    when it ends in a non-affine batch norm the kernel can apply (``op`` a chain of
    ``nn.Sequential`` such as ``SepConv``, whose ``containers`` are then not called);
    else ``([op], None, [])``."""
    leaves: list[nn.Module] = []
    containers: list[nn.Module] = []

    def flatten(module: nn.Module) -> bool:
        if not isinstance(module, nn.Sequential):
            leaves.append(module)
            return True
        containers.append(module)
        return _is_chain(module) and all(flatten(child) for child in module)

    if isinstance(op, nn.Sequential) and flatten(op) and len(leaves) > 1 and _plain_batch_norm(leaves[-1], channels):
        return leaves[:-1], leaves[-1], containers
    return [op], None, []


@dataclass
class _Plan:
    """How the kernel computes an edge: which module is which, for x of ``channels``."""

    ids: tuple[int, ...]  # the modules it was made for
    channels: int
    skip_slot: int
    pools: list  # per kind: (slot, its batch norm), or None
    branches: list  # (slot, modules to run, closing batch norm or None)
    stride: int | None  # None: read from the branch outputs
    covered: bool  # False: the edge takes the reference path
    replaced: tuple[nn.Module, ...]  # modules the kernel stands in for (not called)


# Plans per module list: classifying the modules costs more than checking a plan.
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _make_plan(ops: Sequence[nn.Module], channels: int) -> _Plan:
    skip_slot = -1
    pools: list = [None, None]
    branches: list = []
    strides, replaced = set(), []
    for slot, op in enumerate(ops):
        kind = type(op)
        if kind is Zero and not _hooked(op):
            strides.add(op.stride)
            replaced.append(op)
        elif kind is nn.Identity and skip_slot < 0 and not _hooked(op):
            skip_slot = slot
            strides.add(1)
            replaced.append(op)
        elif (pool := _pool_kind(op, channels)) is not None and pools[pool[0]] is None:
            pools[pool[0]] = (slot, op[1])
            strides.add(pool[1])
            replaced += [op, op[0], op[1]]
        else:
            modules, bn, containers = _split_batch_norm(op, channels)
            branches.append((slot, modules, bn))
            replaced += containers + ([bn] if bn is not None else [])
    covered = len(strides) <= 1 and len(branches) <= _ops.MIXED_EDGE_MAX_BRANCHES and bool(strides or branches)
    return _Plan(tuple(map(id, ops)), channels, skip_slot, pools, branches, next(iter(strides), None), covered,
                 tuple(replaced))


def _plan(ops: Sequence[nn.Module], channels: int) -> _Plan:
    """The cached plan of ``ops`` while its modules stay the same and no module the
    kernel replaces gains a hook; else a new one."""
    # Under torch.compile the plan is made while tracing and guarded by the compiled
    # graph; a cache whose size changes would make every edge recompile.
    cacheable = isinstance(ops, nn.Module) and not torch.compiler.is_compiling()
    plan = _PLANS.get(ops) if cacheable else None
    if (plan is None or plan.channels != channels or plan.ids != tuple(map(id, ops))
            or any(_hooked(module) for module in plan.replaced)):
        plan = _make_plan(ops, channels)
        if cacheable:
            _PLANS[ops] = plan
    return plan


def _batch_norm_mode(bn: nn.BatchNorm2d) -> tuple[bool, float, bool]:
    """``(use batch statistics, momentum, update running statistics)``, decided as
    ``nn.BatchNorm2d.forward`` does, including its ``num_batches_tracked`` count."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    update = bn.training and bn.track_running_stats and bn.running_mean is not None
    return use_batch, momentum, update


def _kernel_covers(x: torch.Tensor) -> bool:
    return (x.dim() == 4 and x.dtype in _ops.MIXED_EDGE_DTYPES and x.numel() > 0
            and (x.device.type == "meta" or _ops.has_mixed_edge_kernel(x.device.type)))


def _run(modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for module in modules:
        x = module(x)
    return x


def fused_mixed(x: torch.Tensor, weights: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
    """``sum_i weights[i] * ops[i](x)`` with one fused kernel for the weighted sum, the
    parameter-free operations and the branches' closing batch norms (see the module
    docstring)."""
    if not _kernel_covers(x):
        return reference_mixed(x, weights, ops)
    channels = x.shape[1]
    plan = _plan(ops, channels)
    if not plan.covered:
        return reference_mixed(x, weights, ops)
    pools, branches = plan.pools, plan.branches

    outputs = [_run(modules, x) for _, modules, _ in branches]
    stride = plan.stride
    if stride is None:
        stride = 1 if outputs[0].shape[-2:] == x.shape[-2:] else 2
    count = x.shape[0] * ((x.shape[2] - 1) // stride + 1) * ((x.shape[3] - 1) // stride + 1)
    norms = [None if pool is None else pool[1] for pool in pools] + [bn for _, _, bn in branches]
    if count < 2 and any(bn is not None and bn.training for bn in norms):
        return reference_mixed(x, weights, ops)  # which raises batch norm's own error
    # Mixed dtypes (autocast) meet in the promoted one, as the reference sum would.
    dtype = x.dtype
    for output in outputs:
        dtype = torch.promote_types(dtype, output.dtype)
    x = x.to(dtype).contiguous()
    outputs = [output.to(dtype).contiguous() for output in outputs]
    acc_dtype = torch.float64 if dtype == torch.float64 else torch.float32

    modes, eps, updates = [], [], []
    running: list[torch.Tensor | None] = []
    for term, bn in enumerate(norms):
        if bn is None:
            modes.append(_ops.NORM_NONE)
            eps.append(1e-5)
            running += [None, None]
            continue
        use_batch, momentum, update = _batch_norm_mode(bn)
        modes.append(_ops.NORM_BATCH if use_batch else _ops.NORM_RUNNING)
        eps.append(float(bn.eps))
        running += [None, None] if use_batch else [bn.running_mean, bn.running_var]
        if update:
            updates.append((term, bn, momentum))
    running_stats = None
    if any(row is not None for row in running):
        zeros = x.new_zeros(channels, dtype=torch.float64)
        running_stats = torch.stack([zeros if row is None else row.to(torch.float64) for row in running])

    free_slots = [plan.skip_slot, *(pool[0] if pool is not None else -1 for pool in pools)]
    out, stats = torch.ops.proxyfast.mixed_edge.default(
        x, weights.to(acc_dtype).contiguous(), outputs, [slot for slot, _, _ in branches], free_slots, stride, modes,
        eps, running_stats)
    with torch.no_grad():
        for term, bn, momentum in updates:
            _ops.batch_norm_running_update(bn.running_mean, bn.running_var, stats[2 * term], stats[2 * term + 1],
                                           momentum, count)
    return out



def register() -> None:
    """Makes the fused implementation available as ``MixedOp(..., impl="fused")``
    (the package's ``__init__`` calls this once)."""
    register_mixed_impl("fused", fused_mixed)
