"""A DARTS supernet training step with the fused mixed op against the reference one.

    pytest benchmarks/test_bench_mixed.py --benchmark-only --benchmark-group-by=group
    pytest benchmarks/test_bench_mixed.py --benchmark-only --benchmark-group-by=group -m slow   # CPU figures

A step is the weight half of a DARTS iteration: forward, cross entropy, backward and
the SGD update (momentum 0.9, weight decay 3e-4). Both implementations start from the
same initialisation and data; each group holds the two, timed in the same run.

Shapes: the CIFAR setting (16 channels, 8 cells, batch 64, 32x32) and the ImageNet stem
(224x224 taken to 28x28 before the cells, 16 channels, 8 cells, batch 64) on the GPU.
A CPU step at batch 64 takes minutes on a small machine, so the CPU groups are scaled
down: batch 8 for the figures (marked slow), and a small quick pair (8 channels, 5
cells, batch 2) that CI runs once.

Memory (extra_info): on the GPU ``peak_bytes``, the peak allocated during one step
above what was allocated before it (``torch.cuda.max_memory_allocated``); on both
devices ``saved_bytes``, what the step's autograd graph keeps for backward (saved
tensors, each storage counted once), the CPU allocator reporting no peak.

The parameter-free edge groups isolate the kernel: an edge of only ``none``, the two
pools (with their batch norms) and skip, forward and backward at the CIFAR shape
(C=16, batch 64, 32x32), where no convolution hides the difference.

Targets (docs/design.md, "Performance targets"): on the GPU at least 1.3x faster with at
most 0.75x the peak memory; on the CPU not slower.
"""

from dataclasses import dataclass

import pytest
import torch
from torch.nn import functional as F

from proxyfast.nas.mixed import MixedOp
from proxyfast.nas.supernet import SearchNetwork

IMPLS = ["reference", "fused"]


@dataclass(frozen=True)
class Shape:
    stem: str
    size: int
    batch: int
    channels: int = 16
    layers: int = 8

    def label(self, device: str) -> str:
        return (f"supernet-step-{device} [{self.stem} stem, C={self.channels}, {self.layers} cells, "
                f"batch {self.batch}, {self.size}x{self.size}]")


GPU_SHAPES = {"cifar": Shape("cifar", 32, 64), "imagenet": Shape("imagenet", 224, 64)}
CPU_SHAPES = {"cifar": Shape("cifar", 32, 8), "imagenet": Shape("imagenet", 224, 8)}
CPU_QUICK_SHAPES = {"cifar": Shape("cifar", 16, 2, channels=8, layers=5),
                    "imagenet": Shape("imagenet", 48, 2, channels=8, layers=5)}


def make_step(impl: str, shape: Shape, device: str):
    """A supernet with the given mixed-op implementation and a function running one step."""
    torch.manual_seed(0)
    model = SearchNetwork(channels=shape.channels, num_classes=10, layers=shape.layers, stem=shape.stem,
                          impl=impl).to(device)
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(shape.batch, 3, shape.size, shape.size, generator=generator).to(device)
    labels = torch.randint(0, 10, (shape.batch,), generator=generator).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    def saved_bytes() -> int:
        storages = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            storages[(storage.device, storage.data_ptr())] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = F.cross_entropy(model(images), labels)
        del loss
        return sum(storages.values())

    return step, saved_bytes


def run_benchmark(benchmark, impl: str, shape: Shape, device: str, rounds: int, warmup_rounds: int = 1):
    step, saved_bytes = make_step(impl, shape, device)
    step()  # creates the momentum buffers: the timed steps are steady-state ones
    benchmark.group = shape.label(device)
    benchmark.extra_info.update(reference=impl == "reference", saved_bytes=saved_bytes())
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        benchmark.extra_info["peak_bytes"] = torch.cuda.max_memory_allocated() - before
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", sorted(GPU_SHAPES))
def test_supernet_step_gpu(benchmark, shape, impl):
    run_benchmark(benchmark, impl, GPU_SHAPES[shape], "cuda", rounds=10, warmup_rounds=2)


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", sorted(CPU_SHAPES))
def test_supernet_step_cpu(benchmark, shape, impl):
    run_benchmark(benchmark, impl, CPU_SHAPES[shape], "cpu", rounds=5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", sorted(CPU_QUICK_SHAPES))
def test_supernet_step_cpu_quick(benchmark, shape, impl):
    run_benchmark(benchmark, impl, CPU_QUICK_SHAPES[shape], "cpu", rounds=5)


def make_free_edge_step(impl: str, stride: int, device: str):
    """Forward and backward of a parameter-free edge (none, max pool, avg pool, and skip
    at stride 1) at the CIFAR shape."""
    primitives = ("none", "max_pool_3x3", "avg_pool_3x3") + (("skip_connect",) if stride == 1 else ())
    torch.manual_seed(0)
    edge = MixedOp(16, stride, primitives, impl=impl).to(device)
    x = torch.randn(64, 16, 32, 32, device=device, requires_grad=True)
    alphas = torch.randn(len(primitives), device=device, requires_grad=True)
    grad = torch.randn(64, 16, 32 // stride, 32 // stride, device=device)

    def step():
        edge(x, torch.softmax(alphas, dim=-1)).backward(grad)
        if device == "cuda":
            torch.cuda.synchronize()

    return step


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_parameter_free_edge(benchmark, device, stride, impl):
    step = make_free_edge_step(impl, stride, device)
    step()
    benchmark.group = f"parameter-free-edge-{device} [C=16, batch 64, 32x32, stride {stride}, forward + backward]"
    benchmark.extra_info.update(reference=impl == "reference")
    benchmark.pedantic(step, rounds=10, warmup_rounds=1, iterations=1)
