"""CPU benchmarks: each group times proxyfast against its named baseline in one run.

    pytest benchmarks/test_bench_cpu.py --benchmark-only --benchmark-group-by=group

Targets (docs/design.md, "Performance targets"): entropy >= 3x torch eager;
weighted_sample >= 10x numpy ``Generator.choice(replace=False, p=...)``; select(p1) >= 100x the paper's sampler.
"""

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast import ops

from .baselines import paper_p1_loop, paper_p_sampler, textbook_entropy
from .conftest import IMAGENET_K, IMAGENET_N

ENTROPY_SHAPE = (100_000, 1000)


@pytest.fixture(scope="module")
def logits():
    return torch.randn(*ENTROPY_SHAPE, generator=torch.Generator().manual_seed(0)) * 4


@pytest.mark.benchmark(group="entropy-cpu [100000 x 1000 fp32]")
def test_entropy_proxyfast(benchmark, logits):
    benchmark(ops.entropy, logits)


@pytest.mark.benchmark(group="entropy-cpu [100000 x 1000 fp32]")
def test_entropy_torch_eager(benchmark, logits):
    benchmark(textbook_entropy, logits)


@pytest.mark.benchmark(group="entropy-cpu [100000 x 1000 fp32]")
def test_entropy_torch_compile(benchmark, logits):
    compiled = torch.compile(textbook_entropy)
    compiled(logits)  # compile outside the timing
    benchmark(compiled, logits)


@pytest.fixture(scope="module")
def weights():
    return torch.from_numpy(np.random.default_rng(1).pareto(1.5, size=IMAGENET_N) + 0.01)


@pytest.mark.benchmark(group="weighted-sample-cpu [N=1281167, k=128116]")
def test_sample_proxyfast(benchmark, weights):
    benchmark(ops.weighted_sample, weights, IMAGENET_K, 0)


@pytest.mark.benchmark(group="weighted-sample-cpu [N=1281167, k=128116]")
def test_sample_torch_exponential_keys_topk(benchmark, weights):
    # What a torch user writes: Efraimidis-Spirakis keys log(u) / w, the k largest.
    generator = torch.Generator().manual_seed(0)
    benchmark(lambda: torch.topk(torch.rand(IMAGENET_N, dtype=torch.float64, generator=generator).log() / weights,
                                 IMAGENET_K).indices)


@pytest.mark.benchmark(group="weighted-sample-cpu [N=1281167, k=128116]")
def test_sample_torch_multinomial(benchmark, weights):
    generator = torch.Generator().manual_seed(0)
    benchmark(torch.multinomial, weights, IMAGENET_K, replacement=False, generator=generator)


@pytest.mark.benchmark(group="weighted-sample-cpu [N=1281167, k=128116]")
def test_sample_numpy_generator_choice(benchmark, weights):
    p = (weights / weights.sum()).numpy()
    rng = np.random.default_rng(0)
    benchmark(rng.choice, IMAGENET_N, IMAGENET_K, replace=False, p=p)


@pytest.mark.benchmark(group="select-p1-cpu [ImageNet scale, from entropies]")
def test_select_p1_proxyfast(benchmark, imagenet_entropies):
    entropy = torch.from_numpy(imagenet_entropies)
    scores = proxyfast.Scores.from_entropy(entropy)
    benchmark(proxyfast.select, scores, fraction=0.1, method="p1", bin_width=0.25)


@pytest.mark.benchmark(group="select-p1-cpu [ImageNet scale, from entropies]")
def test_select_p1_proxyfast_from_float64_array(benchmark, imagenet_entropies):
    # The path a user takes with entropies read from a list: a float64 ndarray.
    benchmark(proxyfast.select, imagenet_entropies, fraction=0.1, method="p1", bin_width=0.25)


@pytest.mark.benchmark(group="select-p1-cpu [ImageNet scale, from entropies]")
def test_select_p1_numpy_vectorized(benchmark, imagenet_entropies):
    rng = np.random.default_rng(0)
    benchmark(paper_p_sampler, imagenet_entropies, 0.1, 1, 0.25, rng)


@pytest.mark.benchmark(group="select-p1-cpu [ImageNet scale, from entropies]")
def test_select_p1_paper_code(benchmark, imagenet_entropies):
    rng = np.random.RandomState(0)
    benchmark.pedantic(paper_p1_loop, args=(imagenet_entropies, 0.1, 0.25, rng), rounds=1, iterations=1)


# ImageNet-21K scale (14.2M examples): the per-example cost should stay flat from 1.28M.
IMAGENET21K_N = 14_197_122


@pytest.fixture(scope="module")
def imagenet21k_entropies() -> np.ndarray:
    rng = np.random.default_rng(0)
    return 10.0 ** np.clip(rng.normal(-2.0, 2.0, size=IMAGENET21K_N), -15, 0.8)


@pytest.mark.slow
@pytest.mark.benchmark(group="select-p1-cpu [ImageNet-21K scale, N=14197122, from entropies]")
def test_select_p1_21k_proxyfast_from_float64_array(benchmark, imagenet21k_entropies):
    benchmark.pedantic(proxyfast.select, args=(imagenet21k_entropies,),
                       kwargs={"fraction": 0.1, "method": "p1", "bin_width": 0.25}, rounds=3, iterations=1)


@pytest.mark.slow
@pytest.mark.benchmark(group="select-p1-cpu [ImageNet-21K scale, N=14197122, from entropies]")
def test_select_p1_21k_numpy_vectorized(benchmark, imagenet21k_entropies):
    rng = np.random.default_rng(0)
    benchmark.pedantic(paper_p_sampler, args=(imagenet21k_entropies, 0.1, 1, 0.25, rng), rounds=3, iterations=1)


@pytest.mark.slow
@pytest.mark.benchmark(group="weighted-sample-cpu [N=14197122, k=1419712]")
def test_sample_21k_proxyfast(benchmark):
    weights = torch.from_numpy(np.random.default_rng(0).uniform(0.0, 1.0, size=IMAGENET21K_N))
    benchmark.pedantic(ops.weighted_sample, args=(weights, IMAGENET21K_N // 10, 0), rounds=3, iterations=1)


@pytest.mark.slow
@pytest.mark.benchmark(group="weighted-sample-cpu [N=14197122, k=1419712]")
def test_sample_21k_numpy_generator_choice(benchmark):
    weights = np.random.default_rng(0).uniform(0.0, 1.0, size=IMAGENET21K_N)
    rng = np.random.default_rng(0)
    benchmark.pedantic(rng.choice, args=(IMAGENET21K_N, IMAGENET21K_N // 10),
                       kwargs={"replace": False, "p": weights / weights.sum()}, rounds=1, iterations=1)
