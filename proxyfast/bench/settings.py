"""The search settings the timing suite reproduces, and the published costs it compares with.

Each :class:`Setting` is a dataset shape with the search hyperparameters its authors
used, each fact with its source:

- **cifar10**: DARTS's CIFAR-10 search (Liu et al., ICLR 2019), which Na et al. (IJCAI
  2021) ran unchanged on their proxies: the 50,000 training
  images split into two equal halves (network weights, architecture), 32x32x3 inputs,
  batch 64, 8 cells of 16 initial channels, 50 epochs. The paper's proxy is 10% (5,000
  images), selected with bin width 0.5 from the entropies of a ResNet-20. PC-DARTS (Xu et
  al., ICLR 2020) keeps the data and the network and changes its own
  hyperparameters (``SearchConfig.for_algo("pcdarts")``: batch 256, partial channels 1/4,
  15 warm-up epochs without architecture updates).
- **imagenet**: the direct ImageNet search of Na et al.: 1,281,167 training images as
  224x224x3 crops, the ImageNet stem (three stride-2 convolutions to 28x28), 8 cells of
  16 channels, 50 epochs, the 10% proxy (128,116 images, bin width 0.25, ResNet-50
  entropies) split into halves; batch 256 on a V100 (their search script's comment for
  that card; 64 on an RTX 2080 Ti). For PC-DARTS, its own ImageNet settings: partial
  channels 1/2, the architecture frozen for the first 35 epochs, batch 1024 over 8 GPUs,
  timed here as the per-GPU batch of 128 on one device (about the same GPU-hours,
  without the gradient exchange between GPUs).

Na et al.'s search scripts run first-order DARTS unless told otherwise (``--unrolled``
is off by default), so their published costs are first-order ones. Their loaders keep
an epoch's last, incomplete batch, as :func:`proxyfast.nas.search.search` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["ALGOS", "PAPER_FIGURES", "SETTINGS", "PaperFigure", "Setting", "get_setting", "paper_figures"]

ALGOS = ("darts", "pcdarts")


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType({key: MappingProxyType(dict(value)) for key, value in mapping.items()})


@dataclass(frozen=True)
class Setting:
    """A dataset shape and the search hyperparameters published for it.

    Attributes:
        name: ``"cifar10"`` or ``"imagenet"``.
        dataset: the dataset's name for people.
        train_size: training images, the whole set the proxy is drawn from.
        image_shape: ``(channels, height, width)`` of a network input.
        num_classes: classes of the classifier.
        stem: the supernet's stem, ``"cifar"`` or ``"imagenet"``.
        epochs, channels, layers: the search's length and the supernet's size.
        proxy_fraction: the paper's proxy size as a fraction of ``train_size``.
        bin_width: the paper's log10-entropy bin width for this dataset.
        baseline: the model whose entropies the selection uses.
        algo_overrides: per algorithm, ``SearchConfig`` fields that differ from
            ``SearchConfig.for_algo(algo)`` in this setting.
    """

    name: str
    dataset: str
    train_size: int
    image_shape: tuple[int, int, int]
    num_classes: int
    stem: str
    epochs: int
    channels: int
    layers: int
    proxy_fraction: float
    bin_width: float
    baseline: str
    algo_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def overrides(self, algo: str) -> dict[str, Any]:
        """The ``SearchConfig`` fields of this setting for ``algo`` (on top of ``for_algo``)."""
        if algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
        fields = {"epochs": self.epochs, "channels": self.channels, "layers": self.layers, "stem": self.stem}
        fields.update(self.algo_overrides.get(algo, {}))
        return fields


SETTINGS: Mapping[str, Setting] = MappingProxyType({
    "cifar10": Setting(
        name="cifar10", dataset="CIFAR-10", train_size=50_000, image_shape=(3, 32, 32), num_classes=10,
        stem="cifar", epochs=50, channels=16, layers=8, proxy_fraction=0.1, bin_width=0.5, baseline="ResNet-20",
        algo_overrides=_frozen({"darts": {"batch_size": 64}}),
    ),
    "imagenet": Setting(
        name="imagenet", dataset="ImageNet", train_size=1_281_167, image_shape=(3, 224, 224), num_classes=1000,
        stem="imagenet", epochs=50, channels=16, layers=8, proxy_fraction=0.1, bin_width=0.25, baseline="ResNet-50",
        algo_overrides=_frozen({
            "darts": {"batch_size": 256},
            "pcdarts": {"batch_size": 128, "partial_channels": 2, "warmup_epochs": 35},
        }),
    ),
})


def get_setting(name: str) -> Setting:
    """The setting called ``name`` (``"cifar10"`` or ``"imagenet"``)."""
    try:
        return SETTINGS[name]
    except (KeyError, TypeError):
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {name!r}") from None


@dataclass(frozen=True)
class PaperFigure:
    """A published search cost.

    Attributes:
        setting, algo: what was searched (``algo`` with its authors' own hyperparameters).
        data: ``"full"`` (all training data) or ``"proxy"`` (a subset).
        gpu_hours: the cost in GPU-hours.
        device: the GPU it was measured on.
        source: the publication.
        note: what differs from this suite's setting, if anything.
    """

    setting: str
    algo: str
    data: str
    gpu_hours: float
    device: str
    source: str
    note: str = ""

    @property
    def gpu_days(self) -> float:
        return self.gpu_hours / 24.0


_NA = "Na et al., Accelerating Neural Architecture Search via Proxy Data, IJCAI 2021"
_XU = "Xu et al., PC-DARTS, ICLR 2020"

PAPER_FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("cifar10", "darts", "full", 0.26 * 24, "RTX 2080 Ti", _NA,
                "first-order DARTS on all 50,000 images (0.26 GPU-days)"),
    PaperFigure("cifar10", "darts", "proxy", 0.03 * 24, "RTX 2080 Ti", _NA,
                "first-order DARTS on a 10% P1 proxy (0.03 GPU-days, about 40 minutes)"),
    PaperFigure("imagenet", "darts", "proxy", 7.5, "Tesla V100", _NA,
                "first-order DARTS on a 10% P1 proxy of ImageNet (7.5 hours)"),
    PaperFigure("cifar10", "pcdarts", "full", 0.1 * 24, "GTX 1080 Ti", _XU,
                "PC-DARTS on all 50,000 images (0.1 GPU-days)"),
    PaperFigure("imagenet", "pcdarts", "proxy", 3.8 * 24, "8 Tesla V100", _XU,
                "a random 12.5% subset (10% weights, 2.5% architecture), not a P1 proxy (3.8 GPU-days)"),
)


def paper_figures(setting: str, algo: str) -> dict[str, PaperFigure]:
    """The published costs of ``algo`` in ``setting``, by ``data`` (``"full"``, ``"proxy"``)."""
    return {f.data: f for f in PAPER_FIGURES if f.setting == setting and f.algo == algo}

