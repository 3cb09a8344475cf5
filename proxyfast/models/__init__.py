"""Baseline models: the CIFAR-style ResNets of the paper."""

from .resnet import CifarResNet, normalization_buffer, resnet20, resnet56

__all__ = ["CifarResNet", "normalization_buffer", "resnet20", "resnet56"]
