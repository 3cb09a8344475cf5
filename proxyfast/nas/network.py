"""The evaluation network: a found cell stacked deep and trained from scratch.

After the search, DARTS (Liu et al., ICLR 2019, section 3.2) builds a larger network
from the genotype alone and trains it from scratch. :class:`EvalNetwork` is that
network: ``layers`` cells with the genotype's operations (affine batch norms, since
no architecture weights compete any more), reduction cells at one and two thirds of
the depth, the genotype's nodes concatenated into each cell's output, and

- the CIFAR stem (one 3x3 convolution; ``stem_stride=2`` halves the resolution, a
  quarter of the cost for small CPU budgets) or the ImageNet stem (three stride-2
  3x3 convolutions, 224x224 down to 28x28, as in DARTS's ImageNet network);
- drop-path (Larsson et al., 2017) on every operation but the identity, in training;
- an auxiliary classifier after the cell at two thirds of the depth (Szegedy et al.,
  2015), whose loss is added with a small weight in training.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_int
from ..models import normalization_buffer
from .genotypes import Genotype, get_genotype
from .operations import OPS, FactorizedReduce, ReLUConvBN, cifar_stem, imagenet_stem
from .supernet import STEMS

__all__ = ["AuxiliaryHead", "AuxiliaryPooling", "EvalCell", "EvalNetwork", "drop_path"]


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zeroes each example's ``x`` (all channels and pixels together) with probability
    ``drop_prob`` and scales the kept ones by ``1 / (1 - drop_prob)``, so that the
    expectation is unchanged. Draws from the global random number generator of
    ``x``'s device."""
    if drop_prob <= 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep_prob)
    return x * (mask / keep_prob)


class EvalCell(nn.Module):
    """One cell of the evaluation network, wired as the genotype says.

    Args:
        genotype: the architecture.
        c_prev_prev, c_prev: channels of the cell's two inputs (the outputs of the two
            previous cells).
        channels: channels of each node.
        reduction: a reduction cell (the genotype's ``reduce`` edges; those from the
            inputs stride 2).
        reduction_prev: the previous cell reduced, so the first input has twice the
            resolution of the second and is reduced here.
    """

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(c_prev_prev, channels)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.steps = genotype.steps
        self.multiplier = len(self.concat)
        self.inputs = tuple(node for _, node in edges)
        self.ops = nn.ModuleList(OPS[op](channels, 2 if reduction and node < 2 else 1, True) for op, node in edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """The cell's output; ``drop_prob``: the drop-path rate, applied in training only."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            node = 0
            for e in (2 * i, 2 * i + 1):
                h = self.ops[e](states[self.inputs[e]])
                # The identity is never dropped: it is what keeps a deep stack trainable.
                if self.training and drop_prob > 0.0 and not isinstance(self.ops[e], nn.Identity):
                    h = drop_path(h, drop_prob)
                node = node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryPooling(nn.Module):
    """DARTS's pooling in the auxiliary head: 5x5 average windows, padding not counted, with
    stride 3 (``AuxiliaryHeadCIFAR``: 8x8 to 2x2) or 2 (``AuxiliaryHeadImageNet``: 7x7 to
    2x2). A map on which those windows do not give 2x2 (e.g. Fashion-MNIST's 7x7 with
    stride 3) is pooled adaptively to 2x2 instead, so that any image size trains."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(size >= 5 and (size - 5) // self.stride + 1 == 2 for size in x.shape[-2:]):
            return F.avg_pool2d(x, 5, self.stride, 0, count_include_pad=False)
        return F.adaptive_avg_pool2d(x, 2)


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier of DARTS (``model.py``, also the proxy-data paper's): ReLU,
    :class:`AuxiliaryPooling` to 2x2, a 1x1 convolution to 128 channels, a 2x2 convolution to
    768, and a linear layer. ``stride``: 3 for the CIFAR network, 2 for ImageNet's;
    ``batch_norm``: the batch norm after the 768-channel convolution, which DARTS's ImageNet
    head leaves out (its code keeps it commented out, as in the paper's experiments)."""

    def __init__(self, channels: int, num_classes: int, stride: int = 3, batch_norm: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # its input is also the next cell's input
            AuxiliaryPooling(stride),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """The network built from a genotype, for final training.

    In training mode with ``auxiliary=True`` the forward pass returns ``(logits,
    aux_logits)``; otherwise (evaluation mode, or no auxiliary head) it returns the
    logits alone. The drop-path rate is the attribute ``drop_path_prob``, which the
    training loop raises epoch by epoch.

    Args:
        genotype: a :class:`Genotype`, a registered name (``GENOTYPES``) or a genotype string.
        channels: channels of the first cells' nodes (36 in DARTS on CIFAR-10, 48 on ImageNet).
        num_classes: outputs of the classifier.
        layers: cells (20 in DARTS on CIFAR-10, 14 on ImageNet).
        in_channels: input image channels.
        auxiliary: add the auxiliary head after the cell at two thirds of the depth.
        stem: ``"cifar"`` or ``"imagenet"`` (224x224 to 28x28 by three stride-2 convolutions).
        stem_stride: stride of the CIFAR stem's convolution (1 as in DARTS; 2 halves the
            resolution of every cell).
        stem_multiplier: the CIFAR stem outputs ``stem_multiplier * channels`` channels.
        drop_path_prob: the initial drop-path rate, in [0, 1).
        mean, std: per-channel input normalisation (one value per input channel, or one
            for all): the network takes images in [0, 1], like the baselines.
    """

    def __init__(self, genotype: Genotype | str, channels: int = 36, num_classes: int = 10, layers: int = 20,
                 in_channels: int = 3, auxiliary: bool = False, stem: str = "cifar", stem_stride: int = 1,
                 stem_multiplier: int = 3, drop_path_prob: float = 0.0, mean=0.5, std=0.25) -> None:
        super().__init__()
        genotype = get_genotype(genotype)
        for name, value in (("channels", channels), ("num_classes", num_classes), ("layers", layers),
                            ("in_channels", in_channels), ("stem_stride", stem_stride),
                            ("stem_multiplier", stem_multiplier)):
            check_int(name, value)
        if layers < 3:
            raise ValueError(f"layers must be at least 3 (two reduction cells and a normal cell), got {layers}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        if stem == "imagenet" and stem_stride != 1:
            raise ValueError(f"stem_stride applies to the cifar stem only; the imagenet stem takes 1, "
                             f"got {stem_stride}")
        if stem == "imagenet" and channels < 2:
            raise ValueError(f"the imagenet stem needs channels >= 2, got {channels}")
        if not isinstance(auxiliary, bool):
            raise TypeError(f"auxiliary must be a bool, got {type(auxiliary).__name__}")
        self.genotype = genotype
        self.channels, self.num_classes, self.layers, self.in_channels = channels, num_classes, layers, in_channels
        self.auxiliary, self.stem_kind, self.stem_stride = auxiliary, stem, stem_stride
        self.stem_multiplier = stem_multiplier
        self.drop_path_prob = drop_path_prob
        self.register_buffer("mean", normalization_buffer("mean", mean, in_channels))
        self.register_buffer("std", normalization_buffer("std", std, in_channels))
        if not bool((self.std > 0).all()):
            raise ValueError("std must be positive")

        if stem == "cifar":
            c_stem = stem_multiplier * channels
            self.stem = cifar_stem(in_channels, c_stem, stem_stride)
            c_prev_prev, c_prev, reduction_prev = c_stem, c_stem, False
        else:
            self.stem0, self.stem1 = imagenet_stem(in_channels, channels)
            # The first cell's inputs are the 56x56 and the 28x28 maps: it reduces the
            # larger one, as after a reduction cell.
            c_prev_prev, c_prev, reduction_prev = channels, channels, True

        self.auxiliary_index = 2 * layers // 3
        cells, c_cell, c_auxiliary = [], channels, 0
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cell *= 2
            cell = EvalCell(genotype, c_prev_prev, c_prev, c_cell, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_cell
            if i == self.auxiliary_index:
                c_auxiliary = c_prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = None
        if auxiliary:
            cifar = stem == "cifar"
            self.auxiliary_head = AuxiliaryHead(c_auxiliary, num_classes, stride=3 if cifar else 2, batch_norm=cifar)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    @property
    def drop_path_prob(self) -> float:
        """The drop-path rate of every non-identity operation in training, in [0, 1)."""
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"drop_path_prob must be a number in [0, 1), got {value!r}")
        self._drop_path_prob = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        if self.stem_kind == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.auxiliary_index and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, aux_logits) if aux_logits is not None else logits

    def num_parameters(self, auxiliary: bool = False) -> int:
        """Learnable parameters; without the auxiliary head unless ``auxiliary`` (as DARTS
        reports model sizes: the head is dropped after training)."""
        head = set() if auxiliary or self.auxiliary_head is None else {id(p) for p in self.auxiliary_head.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in head)

    def config(self) -> dict:
        """The constructor arguments, as plain data: ``EvalNetwork(**model.config())``
        rebuilds the architecture."""
        return {
            "genotype": str(self.genotype),
            "channels": self.channels,
            "num_classes": self.num_classes,
            "layers": self.layers,
            "in_channels": self.in_channels,
            "auxiliary": self.auxiliary,
            "stem": self.stem_kind,
            "stem_stride": self.stem_stride,
            "stem_multiplier": self.stem_multiplier,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }

