"""CIFAR-style ResNets (He et al., 2016, section 4.2): the paper's baseline models.

Depth 6n + 2: a 3x3 stem, three stages of n basic blocks (widths w, 2w, 4w; the second
and third stages halve the resolution), global average pooling and a linear classifier.
ResNet-20 is n = 3, ResNet-56 is n = 9; w = 16 gives the published models (0.27M and
0.85M parameters for 10 classes). Any input channel count and size works: the pooling
is adaptive. Inputs are float images in [0, 1]; the model normalises them itself with
the per-channel ``mean`` and ``std`` it was built with, so a checkpoint is self-contained.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_int

__all__ = ["CifarResNet", "normalization_buffer", "resnet20", "resnet56"]


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # Option B of the paper (1x1 projection): simpler than zero-padding, same accuracy.
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth ``6n + 2`` for small images.

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110, ...).
        num_classes: outputs of the classifier.
        in_channels: input image channels (1 for Fashion-MNIST, 3 for CIFAR).
        width: channels of the first stage (16 in the paper).
        mean, std: per-channel input normalisation (one value per input channel, or one
            for all); default 0.5 and 0.25.
        stem_stride: stride of the first convolution; 2 quarters the cost of every layer
            (for small budgets; the paper's models use 1).
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 16,
        mean: float | Sequence[float] = 0.5,
        std: float | Sequence[float] = 0.25,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
        positive = (("num_classes", num_classes), ("in_channels", in_channels), ("width", width),
                    ("stem_stride", stem_stride))
        for name, value in positive:
            check_int(name, value)
        n = (depth - 2) // 6
        self.depth, self.num_classes, self.in_channels, self.width = depth, num_classes, in_channels, width
        self.stem_stride = stem_stride
        self.register_buffer("mean", normalization_buffer("mean", mean, in_channels))
        self.register_buffer("std", normalization_buffer("std", std, in_channels))
        if not bool((self.std > 0).all()):
            raise ValueError("std must be positive")

        self.conv1 = nn.Conv2d(in_channels, width, 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, in_planes = [], width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(in_planes, planes, 2 if stage > 0 and b == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(4 * width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for module in self.modules():
            # Each block starts as the identity: trains faster and more stably (Goyal et al., 2017).
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    @property
    def feature_dim(self) -> int:
        """Size of the penultimate features (the classifier's input)."""
        return self.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B, 4 * width] of images [B, C, H, W] in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes]."""
        return self.fc(self.forward_features(x))

    def config(self) -> dict:
        """The constructor arguments: ``CifarResNet(**model.config())`` rebuilds the architecture."""
        return {
            "depth": self.depth,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "width": self.width,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "stem_stride": self.stem_stride,
        }


def normalization_buffer(name: str, value, channels: int) -> torch.Tensor:
    """A per-channel input statistic (``mean`` or ``std``: one value, or one per channel)
    as a [1, C, 1, 1] float32 tensor, for a model's input normalization."""
    values = torch.as_tensor(value, dtype=torch.float32).flatten()
    if values.numel() == 1:
        values = values.expand(channels)
    if values.numel() != channels:
        raise ValueError(f"{name} needs 1 or {channels} values, got {values.numel()}")
    return values.clone().view(1, channels, 1, 1)


def resnet20(num_classes: int = 10, in_channels: int = 3, width: int = 16, **kwargs) -> CifarResNet:
    """ResNet-20 (0.27M parameters at width 16): the paper's CIFAR-10 and SVHN baseline."""
    return CifarResNet(20, num_classes, in_channels, width, **kwargs)


def resnet56(num_classes: int = 100, in_channels: int = 3, width: int = 16, **kwargs) -> CifarResNet:
    """ResNet-56 (0.86M parameters at width 16): the paper's CIFAR-100 baseline."""
    return CifarResNet(56, num_classes, in_channels, width, **kwargs)
