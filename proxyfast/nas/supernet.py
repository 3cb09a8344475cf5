"""The DARTS search network (supernet) and its cells.

``SearchNetwork`` stacks ``layers`` cells; the cells at one and two thirds of the depth
are reduction cells (stride 2, twice the channels). All normal cells share one set of
architecture parameters (``alphas_normal``, one row of ``len(PRIMITIVES)`` logits per
edge) and all reduction cells another (``alphas_reduce``). With ``partial_channels=k``
the network is PC-DARTS: each edge is a ``PartialMixedOp`` and the inputs of each node are
weighted by a softmax over per-edge parameters (``betas_normal``, ``betas_reduce``),
the edge normalisation that makes the found cell stable despite the channel sampling.

The architecture parameters are ordinary registered parameters, so ``nn.DataParallel``
replicates them and ``DistributedDataParallel`` synchronises their gradients, like any
weight; ``arch_parameters()`` and ``weight_parameters()`` separate the two sets for the
two optimisers of the bi-level search.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_int
from .genotypes import PRIMITIVES, Genotype
from .mixed import MixedOp, PartialMixedOp
from .operations import FactorizedReduce, ReLUConvBN, cifar_stem, imagenet_stem

__all__ = ["SearchCell", "SearchNetwork", "derive_cell", "num_edges"]

STEMS = ("cifar", "imagenet")


def num_edges(steps: int) -> int:
    """Edges of a cell with ``steps`` intermediate nodes: node ``i`` has ``i + 2`` inputs."""
    return sum(i + 2 for i in range(steps))


class SearchCell(nn.Module):
    """A cell of the supernet: every earlier node feeds every intermediate node.

    Args:
        steps: intermediate nodes.
        multiplier: how many of the last intermediate nodes are concatenated (the output
            has ``multiplier * channels`` channels).
        c_prev_prev, c_prev: channels of the two inputs.
        channels: channels of each node.
        reduction: a reduction cell (the edges from the inputs stride 2).
        reduction_prev: the previous cell reduced, so the first input has twice the
            resolution of the second and is reduced here.
        partial_channels: ``k`` of PC-DARTS, or ``None`` for full edges.
        impl: the mixed-op implementation.
    """

    def __init__(self, steps: int, multiplier: int, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool, partial_channels: int | None = None,
                 impl: str | None = None, primitives: Sequence[str] = PRIMITIVES) -> None:
        super().__init__()
        self.steps, self.multiplier, self.reduction = steps, multiplier, reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(c_prev_prev, channels, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        edges = []
        for i in range(steps):
            for j in range(i + 2):
                stride = 2 if reduction and j < 2 else 1
                if partial_channels is None:
                    edges.append(MixedOp(channels, stride, primitives, impl))
                else:
                    edges.append(PartialMixedOp(channels, stride, partial_channels, primitives, impl))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``weights``: one row of op weights per edge; ``edge_weights``: one weight per
        edge (PC-DARTS edge normalisation), or ``None``."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for i in range(self.steps):
            inputs = range(offset, offset + len(states))
            if edge_weights is None:
                node = sum(self.edges[e](h, weights[e]) for e, h in zip(inputs, states))
            else:
                node = sum(edge_weights[e] * self.edges[e](h, weights[e]) for e, h in zip(inputs, states))
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier:], dim=1)


class SearchNetwork(nn.Module):
    """The DARTS / PC-DARTS supernet.

    Args:
        channels: channels of the first cells' nodes (16 in DARTS on CIFAR).
        num_classes: outputs of the classifier.
        layers: cells (8 in the search).
        in_channels: input image channels.
        steps: intermediate nodes per cell (4).
        multiplier: nodes concatenated into a cell's output (4).
        stem_multiplier: the CIFAR stem, and DARTS's ImageNet stem, output
            ``stem_multiplier * channels`` channels.
        stem: ``"cifar"`` (one 3x3 convolution, full resolution) or ``"imagenet"`` (three
            stride-2 3x3 convolutions, 224x224 to 28x28). The ImageNet stem's width follows
            each method's ImageNet search code: DARTS as the proxy-data paper runs it
            (``model_search_imagenet.py`` of Na et al.) widens to ``stem_multiplier *
            channels`` (3 -> 24 -> 48, then 48 -> 48 for C = 16); PC-DARTS
            (``model_search_imagenet.py`` of Xu et al.) keeps ``channels`` (3 -> 8 -> 16).
        stem_stride: stride of the CIFAR stem's convolution; 2 halves the resolution of
            every cell and quarters its cost (a search within a CPU budget). The ImageNet
            stem has its own strides and takes only 1.
        partial_channels: ``k`` for PC-DARTS (4 in the paper), ``None`` for DARTS.
        impl: the mixed-op implementation (``available_mixed_impls()``); ``None`` takes
            ``default_mixed_impl()``, the fused kernels where the extension is built.
    """

    def __init__(self, channels: int = 16, num_classes: int = 10, layers: int = 8, in_channels: int = 3,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3, stem: str = "cifar",
                 partial_channels: int | None = None, impl: str | None = None,
                 primitives: Sequence[str] = PRIMITIVES, stem_stride: int = 1) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        for name, value in (("channels", channels), ("num_classes", num_classes), ("layers", layers),
                            ("in_channels", in_channels), ("steps", steps), ("multiplier", multiplier),
                            ("stem_stride", stem_stride)):
            check_int(name, value)
        if multiplier > steps:
            raise ValueError(f"multiplier ({multiplier}) cannot exceed steps ({steps})")
        if stem != "cifar" and stem_stride != 1:
            raise ValueError(f"stem_stride applies to the cifar stem only; the {stem} stem takes 1, "
                             f"got {stem_stride}")
        self.channels, self.num_classes, self.layers = channels, num_classes, layers
        self.steps, self.multiplier, self.stem_kind, self.stem_stride = steps, multiplier, stem, stem_stride
        self.partial_channels = partial_channels
        self.primitives = tuple(primitives)

        if stem == "cifar":
            c_stem = stem_multiplier * channels
            self.stem = cifar_stem(in_channels, c_stem, stem_stride)
            c_prev_prev, c_prev, reduction_prev = c_stem, c_stem, False
        else:
            c_stem = channels if partial_channels is not None else stem_multiplier * channels
            self.stem0, self.stem1 = imagenet_stem(in_channels, c_stem)
            # The two cell inputs are the 56x56 and the 28x28 maps; the first cell reduces
            # the larger one, as after a reduction cell.
            c_prev_prev, c_prev, reduction_prev = c_stem, c_stem, True

        cells = []
        c_cell = channels
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cell *= 2
            cells.append(SearchCell(steps, multiplier, c_prev_prev, c_prev, c_cell, reduction, reduction_prev,
                                    partial_channels, impl, self.primitives))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, multiplier * c_cell
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

        # Small random logits: near-uniform weights, but no exact ties in the genotype.
        edges, ops = num_edges(steps), len(self.primitives)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(edges, ops))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(edges, ops))
        if partial_channels is not None:
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(edges))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(edges))

    @property
    def edge_normalization(self) -> bool:
        """Whether the inputs of each node are weighted by the betas (PC-DARTS)."""
        return self.partial_channels is not None

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters, for the architecture optimiser."""
        params = [self.alphas_normal, self.alphas_reduce]
        if self.edge_normalization:
            params += [self.betas_normal, self.betas_reduce]
        return params

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every other parameter, for the weight optimiser."""
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def _edge_weights(self, betas: torch.Tensor) -> torch.Tensor:
        # A softmax over each node's incoming edges, laid out edge by edge like the alphas.
        weights, start = [], 0
        for i in range(self.steps):
            weights.append(F.softmax(betas[start:start + i + 2], dim=-1))
            start += i + 2
        return torch.cat(weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem_kind == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        weights = {False: F.softmax(self.alphas_normal, dim=-1), True: F.softmax(self.alphas_reduce, dim=-1)}
        edge_weights = {False: None, True: None}
        if self.edge_normalization:
            edge_weights = {False: self._edge_weights(self.betas_normal), True: self._edge_weights(self.betas_reduce)}
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights[cell.reduction], edge_weights[cell.reduction])
        return self.classifier(self.global_pooling(s1).flatten(1))

    @torch.no_grad()
    def genotype(self) -> Genotype:
        """The discrete cell the parameters point to: for each node the two inputs with the
        strongest non-``none`` operation, and on each the strongest operation, ``none``
        excluded (DARTS, section 2.4). Edge weights (PC-DARTS) scale the op weights."""
        normal = F.softmax(self.alphas_normal, dim=-1)
        reduce = F.softmax(self.alphas_reduce, dim=-1)
        if self.edge_normalization:
            normal = normal * self._edge_weights(self.betas_normal)[:, None]
            reduce = reduce * self._edge_weights(self.betas_reduce)[:, None]
        concat = list(range(2 + self.steps - self.multiplier, self.steps + 2))
        return Genotype(normal=derive_cell(normal, self.steps, self.primitives), normal_concat=concat,
                        reduce=derive_cell(reduce, self.steps, self.primitives), reduce_concat=concat)


def derive_cell(weights: torch.Tensor, steps: int, primitives: Sequence[str] = PRIMITIVES) -> list[tuple[str, int]]:
    """The two strongest inputs of each node and the strongest operation on each, ``none``
    excluded, from one row of op weights per edge; ties go to the lower index."""
    weights = weights.detach().to("cpu", torch.float64, copy=True)
    if "none" in primitives:
        weights[:, list(primitives).index("none")] = float("-inf")
    strength, best = weights.max(dim=1)
    cell, start = [], 0
    for i in range(steps):
        end = start + i + 2
        # A stable sort, so that equal strengths keep the lower input first.
        order = sorted(range(i + 2), key=lambda j: -strength[start + j].item())[:2]
        cell.extend((primitives[best[start + j].item()], j) for j in order)
        start = end
    return cell
