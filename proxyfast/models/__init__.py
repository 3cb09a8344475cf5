"""Baseline models: the CIFAR-style ResNets of the paper."""

from .resnet import CifarResNet, resnet20, resnet56

__all__ = ["CifarResNet", "resnet20", "resnet56"]
