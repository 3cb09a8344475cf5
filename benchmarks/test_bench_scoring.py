"""Scoring throughput and k-center greedy: time and peak memory against baselines.

    pytest benchmarks/test_bench_scoring.py --benchmark-only --benchmark-group-by=group
    pytest benchmarks/test_bench_scoring.py --benchmark-only -m slow   # k-center at N = 2M
    # entropy against one read pass, AVX-512 then AVX2:
    pytest benchmarks/test_bench_scoring.py --benchmark-only --benchmark-group-by=group -k roofline
    PROXYFAST_CPU_CAPABILITY=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
        pytest benchmarks/test_bench_scoring.py --benchmark-only --benchmark-group-by=group -k roofline

Scoring: images/s of ``proxyfast.score`` (streaming, fused entropy per batch) against the
usual loop that keeps every logit and applies the textbook entropy formula, for a
ResNet-20 on 28x28 grey images. k-center: the running-minimum greedy against the
straightforward greedy over a full distance matrix, on a size where that matrix fits;
peak memory of each is measured in a fresh process (``ru_maxrss`` growth).
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast.data import ImageArrayDataset
from proxyfast.models import resnet20
from proxyfast.selection.kcenter import kcenter_greedy

from .baselines import textbook_entropy

ROOFLINE_SHAPE = (100_000, 1000)
SCORE_N = 4096
SCORE_BATCH = 512
KCENTER_N, KCENTER_D, KCENTER_K = 10_000, 64, 1_000

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# Entropy against the memory roofline: one read pass over the same logits (x.sum(1)) is
# the floor, torch.compile of the textbook formula the peer. The group names the vector
# code the entropy kernel runs (PROXYFAST_CPU_CAPABILITY=avx2 and ATEN_CPU_CAPABILITY=avx2
# for the AVX2 run, so that torch's side takes AVX2 too).
ROOFLINE_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def roofline_group(dtype):
    kernel = torch.ops.proxyfast.entropy_cpu_capability()
    return f"entropy-roofline-cpu [{ROOFLINE_SHAPE[0]} x {ROOFLINE_SHAPE[1]} {str(dtype)[6:]}, kernel {kernel}]"


@pytest.fixture(scope="module", params=ROOFLINE_DTYPES, ids=lambda d: str(d)[6:])
def roofline_logits(request):
    logits = torch.randn(*ROOFLINE_SHAPE, generator=torch.Generator().manual_seed(0)) * 4
    return logits.to(request.param)


def test_entropy_roofline_proxyfast(benchmark, roofline_logits):
    benchmark.group = roofline_group(roofline_logits.dtype)
    benchmark(proxyfast.entropy, roofline_logits)


def test_entropy_roofline_read_pass(benchmark, roofline_logits):
    benchmark.group = roofline_group(roofline_logits.dtype)
    benchmark(torch.sum, roofline_logits, 1)


def test_entropy_roofline_torch_compile(benchmark, roofline_logits):
    benchmark.group = roofline_group(roofline_logits.dtype)
    compiled = torch.compile(textbook_entropy)
    compiled(roofline_logits)  # compile outside the timing
    benchmark(compiled, roofline_logits)


@pytest.fixture(scope="module")
def score_setup():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(SCORE_N, 28, 28, 1), dtype=np.uint8)
    dataset = ImageArrayDataset(images, rng.integers(0, 10, size=SCORE_N), "bench")
    torch.manual_seed(0)
    model = resnet20(10, in_channels=1, width=16).eval().to(memory_format=torch.channels_last)
    return model, dataset


def naive_scoring(model, dataset, device):
    """The usual loop: every batch's logits kept, then one textbook entropy over N x C."""
    logits = []
    with torch.no_grad():
        for start in range(0, len(dataset), SCORE_BATCH):
            x = torch.from_numpy(dataset.images[start:start + SCORE_BATCH]).permute(0, 3, 1, 2)
            logits.append(model(x.to(device).float() / 255))
    return textbook_entropy(torch.cat(logits))


def run_scoring(benchmark, fn, device):
    result = benchmark(fn)
    if benchmark.stats is not None:
        benchmark.extra_info["images_per_s"] = round(SCORE_N / benchmark.stats.stats.median)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result


@pytest.mark.benchmark(group=f"score-cpu [ResNet-20, {SCORE_N} x 28x28x1, batch {SCORE_BATCH}]")
def test_score_cpu_proxyfast(benchmark, score_setup):
    model, dataset = score_setup
    run_scoring(benchmark, lambda: proxyfast.score(model, dataset, batch_size=SCORE_BATCH, device="cpu"),
                torch.device("cpu"))


@pytest.mark.benchmark(group=f"score-cpu [ResNet-20, {SCORE_N} x 28x28x1, batch {SCORE_BATCH}]")
def test_score_cpu_naive_loop(benchmark, score_setup):
    model, dataset = score_setup
    run_scoring(benchmark, lambda: naive_scoring(model, dataset, torch.device("cpu")), torch.device("cpu"))


@pytest.mark.benchmark(group=f"score-cpu [ResNet-20, {SCORE_N} x 28x28x1, batch {SCORE_BATCH}]")
def test_score_cpu_proxyfast_with_features(benchmark, score_setup):
    model, dataset = score_setup
    run_scoring(benchmark, lambda: proxyfast.score(model, dataset, batch_size=SCORE_BATCH, device="cpu",
                                                   features=True), torch.device("cpu"))


def _cuda_scoring(model, dataset, amp):
    def run():
        scores = proxyfast.score(model, dataset, batch_size=SCORE_BATCH, device="cuda", amp=amp)
        torch.cuda.synchronize()
        return scores

    return run


@requires_cuda
@pytest.mark.benchmark(group=f"score-gpu [ResNet-20, {SCORE_N} x 28x28x1, batch {SCORE_BATCH}]")
@pytest.mark.parametrize("amp", [False, True])
def test_score_gpu_proxyfast(benchmark, score_setup, amp):
    model, dataset = score_setup
    run_scoring(benchmark, _cuda_scoring(model, dataset, amp), torch.device("cuda"))


@requires_cuda
@pytest.mark.benchmark(group=f"score-gpu [ResNet-20, {SCORE_N} x 28x28x1, batch {SCORE_BATCH}]")
def test_score_gpu_naive_loop(benchmark, score_setup):
    model, dataset = score_setup
    model = model.to("cuda")

    def run():
        result = naive_scoring(model, dataset, torch.device("cuda"))
        torch.cuda.synchronize()
        return result

    run_scoring(benchmark, run, torch.device("cuda"))


# -- k-center ----------------------------------------------------------------------------

def full_matrix_kcenter(features: torch.Tensor, k: int, first: int) -> list[int]:
    """The straightforward greedy: an N x N distance matrix up front, then k row scans."""
    distances = torch.cdist(features, features)
    chosen = [first]
    nearest = distances[first].clone()
    for _ in range(k - 1):
        nearest[chosen[-1]] = -1
        nearest[chosen] = -1
        chosen.append(int(torch.argmax(nearest)))
        torch.minimum(nearest, distances[chosen[-1]], out=nearest)
    return chosen


@pytest.fixture(scope="module")
def kcenter_features():
    return torch.randn(KCENTER_N, KCENTER_D, generator=torch.Generator().manual_seed(0))


def peak_rss_growth(code: str) -> int:
    """Bytes by which the peak resident size of a fresh process grows while ``code`` runs
    (after ``x``, the features, exist). Read from VmHWM, which starts afresh with the new
    program; ``ru_maxrss`` would start from the forking parent's size."""
    program = textwrap.dedent(f"""
        import torch
        from benchmarks.test_bench_scoring import full_matrix_kcenter, vm_hwm
        from proxyfast.selection.kcenter import kcenter_greedy
        torch.set_num_threads(2)
        x = torch.randn({KCENTER_N}, {KCENTER_D}, generator=torch.Generator().manual_seed(0))
        base = vm_hwm()
        {code}
        print(vm_hwm() - base)
    """)
    # The child imports this module, and through it the tests' reference module: it gets
    # this process's import path.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.split()[-1])


def vm_hwm() -> int:
    """Peak resident set size of this process in bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


KCENTER_GROUP = f"kcenter-cpu [N={KCENTER_N}, D={KCENTER_D}, k={KCENTER_K}]"


@pytest.mark.benchmark(group=KCENTER_GROUP)
def test_kcenter_proxyfast(benchmark, kcenter_features):
    picks = benchmark(kcenter_greedy, kcenter_features, KCENTER_K, 0)
    assert picks.tolist() == full_matrix_kcenter(kcenter_features, KCENTER_K, int(picks[0]))
    benchmark.extra_info["peak_rss_growth_MB"] = round(
        peak_rss_growth(f"kcenter_greedy(x, {KCENTER_K}, 0)") / 1e6, 1)


@pytest.mark.benchmark(group=KCENTER_GROUP)
def test_kcenter_full_distance_matrix(benchmark, kcenter_features):
    benchmark(full_matrix_kcenter, kcenter_features, KCENTER_K, 0)
    benchmark.extra_info["peak_rss_growth_MB"] = round(
        peak_rss_growth(f"full_matrix_kcenter(x, {KCENTER_K}, 0)") / 1e6, 1)


@requires_cuda
@pytest.mark.benchmark(group="kcenter-gpu [N=1281167, D=64, k=1000]")
def test_kcenter_gpu_imagenet_rows(benchmark):
    features = torch.randn(1_281_167, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(0))

    def run():
        picks = kcenter_greedy(features, 1000, 0)
        torch.cuda.synchronize()
        return picks

    benchmark(run)


@pytest.mark.slow
@pytest.mark.benchmark(group="kcenter-cpu-large [N=2000000, D=2, k=4000]")
def test_kcenter_large_where_n_by_k_does_not_fit(benchmark):
    """An N x k float32 matrix would need 32 GB here."""
    features = torch.rand(2_000_000, 2, generator=torch.Generator().manual_seed(0))
    benchmark.pedantic(kcenter_greedy, (features, 4_000, 0), rounds=1, iterations=1)
