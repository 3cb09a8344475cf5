"""Proxy loader benchmarks: one epoch over a 10% P1 proxy, FFCV against the PyTorch DataLoader.

    pytest benchmarks/test_bench_loaders.py --benchmark-only --benchmark-group-by=group

Data: Fashion-MNIST's training set (60,000 x 28x28x1, from Debian's dataset-fashion-mnist)
and a CIFAR-shaped synthetic set (50,000 x 32x32x3 uint8), each written once to a raw
.beton. Every round is one full epoch of batches of 256 (uint8 [B, C, H, W] and int64
labels, on the CPU); the first epoch (FFCV's numba compilation, worker start-up) is a
warm-up outside the timing. ``extra_info["images_per_s"]`` is the proxy size over the
median epoch time (the median: other work on the machine inflates a few rounds). With --benchmark-disable the data sets are cut to 5,000 examples: that
pass only checks the benchmark code.
"""

import importlib.util

import numpy as np
import pytest

import proxyfast
from proxyfast.data import DatasetNotFoundError, ImageArrayDataset, fashion_mnist, imagenet_scale_scores
from proxyfast.loaders import ffcv_loader, torch_loader, write_beton

BATCH_SIZE = 256
WORKERS = 2
ROUNDS = 20
SMALL_N = 5_000
CIFAR_SHAPE = (50_000, 32, 32, 3)


def _fashion_mnist() -> ImageArrayDataset:
    try:
        return fashion_mnist(train=True)
    except DatasetNotFoundError as error:
        pytest.skip(f"Fashion-MNIST is not installed: {error}")


def _cifar_shaped() -> ImageArrayDataset:
    rng = np.random.default_rng(0)
    n = CIFAR_SHAPE[0]
    return ImageArrayDataset(rng.integers(0, 256, size=CIFAR_SHAPE, dtype=np.uint8), rng.integers(0, 10, size=n),
                             name="cifar-shaped")


DATASETS = {"fashion-mnist": _fashion_mnist, "cifar-shaped": _cifar_shaped}


@pytest.fixture(scope="module", params=list(DATASETS))
def case(request, tmp_path_factory):
    """(name, dataset, 10% P1 proxy, .beton path or None when FFCV is not installed)."""
    dataset = DATASETS[request.param]()
    if request.config.getoption("benchmark_disable"):
        dataset = ImageArrayDataset(dataset.images[:SMALL_N], dataset.labels[:SMALL_N], dataset.name)
    # Entropies of the right size with a real distribution's shape (no trained model here).
    scores = imagenet_scale_scores(len(dataset), seed=0)
    proxy = proxyfast.select(scores, fraction=0.1, method="p1", bin_width=0.25, seed=0)
    beton = None
    if importlib.util.find_spec("ffcv") is not None:
        beton = write_beton(dataset, tmp_path_factory.mktemp("beton") / f"{request.param}.beton", num_workers=WORKERS)
    return request.param, dataset, proxy, beton


def _make_loader(kind, dataset, proxy, beton):
    if kind == "ffcv":
        if beton is None:
            pytest.skip("FFCV is not installed (pip install 'proxyfast[ffcv]')")
        return ffcv_loader(beton, proxy, batch_size=BATCH_SIZE, seed=0, num_workers=WORKERS)
    workers = int(kind.rsplit("-w", 1)[1])
    return torch_loader(dataset, proxy, batch_size=BATCH_SIZE, seed=0, num_workers=workers,
                        persistent_workers=workers > 0)


def _epoch(loader) -> int:
    images_seen = 0
    for _, labels in loader:
        images_seen += len(labels)
    return images_seen


@pytest.mark.parametrize("kind", ["torch-w0", "torch-w2", "ffcv"])
def test_proxy_epoch(benchmark, case, kind):
    name, dataset, proxy, beton = case
    loader = _make_loader(kind, dataset, proxy, beton)
    benchmark.group = f"loader-epoch [{name}, 10% P1 proxy = {proxy.k} images, batch {BATCH_SIZE}]"
    images_seen = benchmark.pedantic(_epoch, args=(loader,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert images_seen == proxy.k
    if benchmark.stats is not None:
        benchmark.extra_info["images_per_s"] = round(proxy.k / benchmark.stats.stats.median)
