"""Mixed operations: one edge of the supernet, a softmax-weighted sum of every candidate.

``MixedOp`` computes ``sum_i w_i * op_i(x)`` with ``w = softmax(alpha)`` computed once per
cell type by the network. How the sum is computed is pluggable: ``impl`` names a function
in a registry (``register_mixed_impl``), so a fused implementation can replace the
reference one without touching the network. ``"reference"`` is the definition, one
module after another; ``"fused"`` (``proxyfast.nas.fused``) computes the parameter-free
operations and the weighted sum in one C++/CUDA kernel, and is the default wherever the
extension is built (``default_mixed_impl``). ``PartialMixedOp`` is the partial-channel
edge of PC-DARTS (Xu et al., ICLR 2020): only ``1/k`` of the channels go through the
candidates, the rest bypass them, and a channel shuffle mixes the two groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .genotypes import PRIMITIVES
from .operations import OPS

__all__ = [
    "MixedOp",
    "PartialMixedOp",
    "available_mixed_impls",
    "channel_shuffle",
    "default_mixed_impl",
    "reference_mixed",
    "register_mixed_impl",
]

MixedImpl = Callable[[torch.Tensor, torch.Tensor, Sequence[nn.Module]], torch.Tensor]
"""``impl(x, weights, ops)``: ``sum_i weights[i] * ops[i](x)``."""


def reference_mixed(x: torch.Tensor, weights: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
    """The definition, one operation after another; every output is kept for backward."""
    return sum(w * op(x) for w, op in zip(weights, ops))


_IMPLS: dict[str, MixedImpl] = {"reference": reference_mixed}


def register_mixed_impl(name: str, impl: MixedImpl) -> None:
    """Makes ``impl`` available as ``MixedOp(..., impl=name)``."""
    if not callable(impl):
        raise TypeError(f"a mixed-op implementation must be callable, got {impl!r}")
    _IMPLS[name] = impl


def available_mixed_impls() -> list[str]:
    """The names ``impl`` accepts."""
    return sorted(_IMPLS)


def default_mixed_impl() -> str:
    """``"fused"`` where the C++ extension provides it, else ``"reference"``."""
    return "fused" if "fused" in _IMPLS else "reference"


def _lookup(impl: str) -> MixedImpl:
    try:
        return _IMPLS[impl]
    except KeyError:
        raise ValueError(f"unknown mixed-op implementation {impl!r}; one of {', '.join(available_mixed_impls())}") from None


class MixedOp(nn.Module):
    """One edge of the supernet: every operation of ``primitives`` on ``channels`` channels.

    Pooling is followed by a non-affine batch norm, as in DARTS, so that its output has
    the same scale as the convolutions' and the comparison is fair. ``impl`` names the
    implementation (``available_mixed_impls()``); ``None`` takes ``default_mixed_impl()``.
    """

    def __init__(self, channels: int, stride: int, primitives: Sequence[str] = PRIMITIVES,
                 impl: str | None = None) -> None:
        super().__init__()
        impl = default_mixed_impl() if impl is None else impl
        self.impl = impl
        self._impl = _lookup(impl)
        self.primitives = tuple(primitives)
        ops = []
        for name in self.primitives:
            op = OPS[name](channels, stride, False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self._impl(x, weights, self.ops)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleaves ``groups`` equal blocks of channels: channel ``g * (C // groups) + j``
    moves to ``j * groups + g`` (ShuffleNet, Zhang et al., 2018)."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class PartialMixedOp(nn.Module):
    """The PC-DARTS edge: the mixed op on the first ``channels // k`` channels only.

    The other channels bypass the candidates (max-pooled when the edge strides, so the
    shapes agree), and a channel shuffle with ``k`` groups interleaves the two parts, so
    a different subset is sampled by the next edge. Memory and compute of the candidates
    fall by ``k``, which lets PC-DARTS use larger batches.
    """

    def __init__(self, channels: int, stride: int, k: int = 4, primitives: Sequence[str] = PRIMITIVES,
                 impl: str | None = None) -> None:
        super().__init__()
        if k < 1 or channels % k:
            raise ValueError(f"partial channels: {channels} channels do not split into k={k} equal groups")
        self.k = k
        self.stride = stride
        self.mixed = MixedOp(channels // k, stride, primitives, impl)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        part = x.shape[1] // self.k
        sampled, bypass = x[:, :part], x[:, part:]
        if self.stride != 1:
            bypass = F.max_pool2d(bypass, 2, 2, ceil_mode=True)
        return channel_shuffle(torch.cat([self.mixed(sampled, weights), bypass], dim=1), self.k)
