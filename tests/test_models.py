"""The CIFAR-style ResNets: shapes, sizes, inputs of any channel count and size."""

import pytest
import torch

from proxyfast.models import CifarResNet, resnet20, resnet56


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32), (3, 17), (4, 64)])
def test_any_input_channels_and_size(channels, size):
    model = resnet20(num_classes=7, in_channels=channels, width=4).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, channels, size, size))
        features = model.forward_features(torch.rand(3, channels, size, size))
    assert logits.shape == (2, 7) and features.shape == (3, 16) == (3, model.feature_dim)


def test_parameter_counts_match_the_published_models():
    # He et al. report 0.27M (ResNet-20) and 0.85M (ResNet-56); the 1x1 projection
    # shortcuts used here add about 3K.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 0.27e6 <= count(resnet20(10)) <= 0.28e6
    assert 0.85e6 <= count(resnet56(10)) <= 0.87e6
    assert len([m for m in resnet56().modules() if isinstance(m, torch.nn.Conv2d)]) == 55 + 2  # + 2 projections


def test_stem_stride_halves_the_first_resolution():
    model = resnet20(10, 1, width=4, stem_stride=2).eval()
    seen = []
    model.layer1.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        model(torch.rand(1, 1, 28, 28))
    assert seen[0][-2:] == (14, 14)


def test_config_rebuilds_the_architecture():
    model = resnet20(10, 1, width=8, mean=0.3, std=0.4, stem_stride=2)
    copy = CifarResNet(**model.config())
    copy.load_state_dict(model.state_dict())
    x = torch.rand(2, 1, 28, 28)
    model.eval(), copy.eval()
    torch.testing.assert_close(model(x), copy(x))


def test_normalisation_is_per_channel():
    model = resnet20(10, 3, width=4, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.25])
    assert model.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="mean needs 1 or 3 values"):
        resnet20(10, 3, mean=[0.1, 0.2])
    with pytest.raises(ValueError, match="std must be positive"):
        resnet20(10, 1, std=0.0)


@pytest.mark.parametrize("depth", [19, 2, 21])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth)


def test_wrong_input_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\]"):
        resnet20(10, 3, width=4)(torch.rand(1, 1, 8, 8))
