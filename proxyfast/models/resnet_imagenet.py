"""ImageNet-style ResNets (He et al., 2016, section 3.4): the paper's ImageNet baseline.

The paper scores ImageNet with the torchvision ResNet-50. This is the same network (the
"v1.5" layout: the stride of a downsampling bottleneck is on its 3x3 convolution, and
downsampling shortcuts are 1x1 projections), written here so that proxyfast needs no
torchvision: with ``width=64`` and 1000 classes it has exactly torchvision's 25,557,032
parameters. Like :class:`~proxyfast.models.CifarResNet` it takes float images in [0, 1]
and normalises them itself (ImageNet's per-channel mean and std by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_int
from .resnet import normalization_buffer

__all__ = ["ImageNetResNet", "resnet50"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by ``expansion``."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ImageNetResNet(nn.Module):
    """Bottleneck ResNet for large images: a 7x7 stride-2 stem and a 3x3 stride-2 max
    pool (224 -> 56), four stages of bottlenecks (widths w, 2w, 4w, 8w, each expanded 4x;
    stages 2 to 4 halve the resolution), global average pooling and a linear classifier.

    Args:
        blocks: bottlenecks per stage; ``(3, 4, 6, 3)`` is ResNet-50.
        num_classes: outputs of the classifier.
        in_channels: input image channels.
        width: channels of the first stage before expansion (64 in the published model;
            smaller values make cheap test models).
        mean, std: per-channel input normalisation (one value per input channel, or one
            for all); default ImageNet's.
    """

    def __init__(
        self,
        blocks: Sequence[int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        in_channels: int = 3,
        width: int = 64,
        mean: float | Sequence[float] = IMAGENET_MEAN,
        std: float | Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        blocks = tuple(blocks)
        if len(blocks) != 4 or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks):
            raise ValueError(f"blocks must be four positive integers (bottlenecks per stage), got {blocks!r}")
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("width", width)):
            check_int(name, value)
        self.blocks, self.num_classes, self.in_channels, self.width = blocks, num_classes, in_channels, width
        self.register_buffer("mean", normalization_buffer("mean", mean, in_channels))
        self.register_buffer("std", normalization_buffer("std", std, in_channels))
        if not bool((self.std > 0).all()):
            raise ValueError("std must be positive")

        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, in_planes = [], width
        for stage, count in enumerate(blocks):
            planes = width * 2**stage
            layer = []
            for b in range(count):
                layer.append(Bottleneck(in_planes, planes, 2 if stage > 0 and b == 0 else 1))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, Bottleneck):
                # Each block starts as the identity (Goyal et al., 2017).
                nn.init.zeros_(module.bn3.weight)

    @property
    def feature_dim(self) -> int:
        """Size of the penultimate features (the classifier's input)."""
        return self.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B, 32 * width] of images [B, C, H, W] in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes]."""
        return self.fc(self.forward_features(x))

    def config(self) -> dict:
        """The constructor arguments: ``ImageNetResNet(**model.config())`` rebuilds the architecture."""
        return {
            "blocks": list(self.blocks),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "width": self.width,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }


def resnet50(num_classes: int = 1000, in_channels: int = 3, width: int = 64, **kwargs) -> ImageNetResNet:
    """ResNet-50 (25.6M parameters at width 64, 1000 classes): the paper's ImageNet baseline."""
    return ImageNetResNet((3, 4, 6, 3), num_classes, in_channels, width, **kwargs)
