"""GPU benchmarks: each group times proxyfast against its named baselines in one run.

    pytest benchmarks/test_bench_gpu.py --benchmark-only --benchmark-group-by=group

Targets: entropy at >= 85% of the bandwidth of a device copy (it
reads the logits once, the copy reads and writes them; see the "bytes" extra info),
>= 4x torch eager and >= 1.2x torch.compile of the textbook formula; weighted_sample
>= 2x torch.multinomial(replacement=False); select(p1) from logits already on the device
in milliseconds. Every timed call ends with torch.cuda.synchronize().
"""

import numpy as np
import pytest
import torch

from proxyfast import ops

from .baselines import textbook_entropy
from .conftest import IMAGENET_K, IMAGENET_N

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ENTROPY_SHAPE = (262_144, 1000)
ENTROPY_GROUP = "entropy-gpu [262144 x 1000 fp32]"
SAMPLE_GROUP = f"sample-gpu [N={IMAGENET_N}, k={IMAGENET_K}]"
SELECT_GROUP = f"select-p1-gpu [N={IMAGENET_N}, fraction=0.1, bin_width=0.25]"


def synced(fn, *args, **kwargs):
    """fn(*args, **kwargs) followed by a device synchronization, so the time is real."""

    def run():
        out = fn(*args, **kwargs)
        torch.cuda.synchronize()
        return out

    return run


def device_generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


@pytest.fixture(scope="module")
def logits():
    return torch.randn(*ENTROPY_SHAPE, device="cuda", generator=device_generator(0)) * 4


@pytest.mark.benchmark(group=ENTROPY_GROUP)
def test_entropy_gpu_proxyfast(benchmark, logits):
    benchmark.extra_info.update(bytes=logits.numel() * logits.element_size(), reference=True)
    benchmark(synced(ops.entropy, logits, check_finite=False))


@pytest.mark.benchmark(group=ENTROPY_GROUP)
def test_entropy_gpu_torch_eager(benchmark, logits):
    benchmark.extra_info.update(bytes=logits.numel() * logits.element_size())
    benchmark(synced(textbook_entropy, logits))


@pytest.mark.benchmark(group=ENTROPY_GROUP)
def test_entropy_gpu_torch_compile(benchmark, logits):
    compiled = torch.compile(textbook_entropy)
    try:
        compiled(logits)  # compile outside the timing
    except Exception as error:  # a missing triton or compiler: no baseline to time
        pytest.skip(f"torch.compile is not usable here: {type(error).__name__}: {error}")
    benchmark.extra_info.update(bytes=logits.numel() * logits.element_size())
    benchmark(synced(compiled, logits))


@pytest.mark.benchmark(group=ENTROPY_GROUP)
def test_entropy_gpu_copy_yardstick(benchmark, logits):
    """The bandwidth yardstick: a device-to-device copy reads and writes every logit."""
    benchmark.extra_info.update(bytes=2 * logits.numel() * logits.element_size())
    benchmark(synced(lambda z: torch.empty_like(z).copy_(z), logits))


TRANSPOSED_GROUP = "entropy-gpu [262144 x 1000 fp32, column-major]"


@pytest.fixture(scope="module")
def transposed_logits(logits):
    """The same values stored column-major (a [C, N] tensor, transposed): one thread per row."""
    return logits.t().contiguous().t()


@pytest.mark.benchmark(group=TRANSPOSED_GROUP)
def test_entropy_gpu_transposed_proxyfast(benchmark, transposed_logits):
    benchmark.extra_info.update(bytes=transposed_logits.numel() * transposed_logits.element_size(), reference=True)
    benchmark(synced(ops.entropy, transposed_logits, check_finite=False))


@pytest.mark.benchmark(group=TRANSPOSED_GROUP)
def test_entropy_gpu_transposed_torch_eager(benchmark, transposed_logits):
    benchmark.extra_info.update(bytes=transposed_logits.numel() * transposed_logits.element_size())
    benchmark(synced(textbook_entropy, transposed_logits))


@pytest.mark.benchmark(group=TRANSPOSED_GROUP)
def test_entropy_gpu_transposed_torch_compile(benchmark, transposed_logits):
    compiled = torch.compile(textbook_entropy)
    try:
        compiled(transposed_logits)
    except Exception as error:  # a missing triton or compiler: no baseline to time
        pytest.skip(f"torch.compile is not usable here: {type(error).__name__}: {error}")
    benchmark.extra_info.update(bytes=transposed_logits.numel() * transposed_logits.element_size())
    benchmark(synced(compiled, transposed_logits))


EDGE_GROUP = "mixed-edge-gpu [parameter-free edge, C=16, batch 64, 32x32, stride 1, forward + backward]"


def free_edge_step(impl: str, compiled: bool = False):
    """Forward and backward of the parameter-free edge (none, max pool, avg pool, skip)."""
    from proxyfast.nas.mixed import MixedOp

    torch.manual_seed(0)
    edge = MixedOp(16, 1, ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"), impl=impl).cuda()
    run = torch.compile(edge) if compiled else edge
    x = torch.randn(64, 16, 32, 32, device="cuda", requires_grad=True)
    alphas = torch.randn(4, device="cuda", requires_grad=True)
    grad = torch.randn(64, 16, 32, 32, device="cuda")

    def step():
        run(x, torch.softmax(alphas, dim=-1)).backward(grad)
        torch.cuda.synchronize()

    return step


@pytest.mark.benchmark(group=EDGE_GROUP)
def test_edge_gpu_proxyfast_fused(benchmark):
    step = free_edge_step("fused")
    step()
    benchmark.extra_info.update(reference=True)
    benchmark.pedantic(step, rounds=20, warmup_rounds=2, iterations=1)


@pytest.mark.benchmark(group=EDGE_GROUP)
def test_edge_gpu_torch_eager(benchmark):
    step = free_edge_step("reference")
    step()
    benchmark.pedantic(step, rounds=20, warmup_rounds=2, iterations=1)


@pytest.mark.benchmark(group=EDGE_GROUP)
def test_edge_gpu_torch_compile(benchmark):
    step = free_edge_step("reference", compiled=True)
    try:
        step()  # compile outside the timing
    except Exception as error:
        pytest.skip(f"torch.compile is not usable here: {type(error).__name__}: {error}")
    benchmark.pedantic(step, rounds=20, warmup_rounds=2, iterations=1)


@pytest.fixture(scope="module")
def weights():
    pareto = np.random.default_rng(1).pareto(1.5, size=IMAGENET_N) + 0.01
    return torch.from_numpy(pareto).to(device="cuda", dtype=torch.float32)


@pytest.mark.benchmark(group=SAMPLE_GROUP)
def test_sample_gpu_proxyfast(benchmark, weights):
    benchmark.extra_info.update(reference=True)
    benchmark(synced(torch.ops.proxyfast.weighted_sample.default, weights, IMAGENET_K, 0, 0))


@pytest.mark.benchmark(group=SAMPLE_GROUP)
def test_sample_gpu_proxyfast_checked_wrapper(benchmark, weights):
    benchmark(synced(ops.weighted_sample, weights, IMAGENET_K, 0))


@pytest.mark.benchmark(group=SAMPLE_GROUP)
def test_sample_gpu_torch_multinomial(benchmark, weights):
    generator = device_generator(0)
    benchmark(synced(torch.multinomial, weights, IMAGENET_K, replacement=False, generator=generator))


@pytest.fixture(scope="module")
def imagenet_logits():
    return torch.randn(IMAGENET_N, 1000, device="cuda", generator=device_generator(2)) * 4


@pytest.mark.benchmark(group=SELECT_GROUP)
def test_select_p1_gpu_from_logits(benchmark, imagenet_logits):
    import proxyfast

    benchmark.extra_info.update(bytes=imagenet_logits.numel() * imagenet_logits.element_size(), reference=True)
    benchmark(synced(proxyfast.select, imagenet_logits, fraction=0.1, method="p1", bin_width=0.25))


@pytest.mark.benchmark(group=SELECT_GROUP)
def test_select_p1_gpu_from_entropies(benchmark, imagenet_entropies):
    import proxyfast

    entropies = torch.from_numpy(imagenet_entropies).cuda()
    benchmark(synced(proxyfast.select, entropies, fraction=0.1, method="p1", bin_width=0.25))


@pytest.mark.benchmark(group=SELECT_GROUP)
def test_select_p1_gpu_entropy_only(benchmark, imagenet_logits):
    """The entropy op alone on the same logits: the floor of select from logits."""
    benchmark.extra_info.update(bytes=imagenet_logits.numel() * imagenet_logits.element_size())
    benchmark(synced(ops.entropy, imagenet_logits, check_finite=False))
