"""k-center greedy: equal to a brute-force greedy on small inputs; O(N) memory."""

import os

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast import ops
from proxyfast.scoring import Scores
from proxyfast.selection.kcenter import kcenter_greedy

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def brute_force(features: np.ndarray, k: int, first: int) -> list[int]:
    """The textbook greedy over a full N x N distance matrix."""
    x = features.astype(np.float64)
    distances = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    chosen = [first]
    nearest = distances[first].copy()
    for _ in range(k - 1):
        nearest[chosen] = -1
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, distances[chosen[-1]])
    return chosen


@pytest.mark.parametrize("n, d, k", [(300, 5, 40), (64, 1, 64), (500, 16, 7)])
def test_equals_brute_force_float64(rng, n, d, k):
    features = torch.from_numpy(rng.normal(size=(n, d)))
    got = kcenter_greedy(features, k, seed=int(rng.integers(1000)))
    assert got.tolist() == brute_force(features.numpy(), k, int(got[0]))


def test_equals_brute_force_with_ties_on_a_grid(rng):
    # Integer coordinates: exact distances and many ties, broken towards the lower index.
    features = torch.from_numpy(rng.integers(0, 6, size=(400, 3)).astype(np.float32))
    got = kcenter_greedy(features, 150, seed=5)
    assert got.tolist() == brute_force(features.numpy(), 150, int(got[0]))
    assert len(set(got.tolist())) == 150  # duplicates of picks come last, never twice


def test_distances_are_direct_far_from_the_origin(rng):
    # Points near (4096, 4096, 4096): ||x||^2 - 2x.c + ||c||^2 in float32 would lose the
    # small distances to cancellation; differences taken first keep them exact.
    features = torch.from_numpy((rng.integers(0, 6, size=(400, 3)) + 4096).astype(np.float32))
    got = kcenter_greedy(features, 150, seed=5)
    assert got.tolist() == brute_force(features.numpy(), 150, int(got[0]))


def test_float64_features_are_compared_in_float64(rng):
    # The first pick at 0, the rest 1e-10 apart around 1: in float32 their distances to
    # the first pick would all be 1, and the second pick the lowest index, not the farthest.
    values = 1.0 + 1e-10 * rng.permutation(200).astype(np.float64)
    first = int(ops.weighted_sample(torch.ones(200, dtype=torch.float64), 1, 2, stream=0))
    values[first] = 0.0
    features = torch.from_numpy(values[:, None])
    got = kcenter_greedy(features, 20, seed=2)
    assert got[1] == int(np.argmax(values))
    assert got.tolist() == brute_force(features.numpy(), 20, first)


def test_the_first_pick_is_the_seeded_uniform_draw_and_the_result_int64(rng):
    features = torch.from_numpy(rng.normal(size=(60, 2)).astype(np.float32))
    for seed in range(4):
        first = ops.weighted_sample(torch.ones(60, dtype=torch.float64), 1, seed, stream=0)
        one = kcenter_greedy(features, 1, seed=seed)
        assert one.dtype == torch.int64 and one.tolist() == first.tolist()
        many = kcenter_greedy(features, 9, seed=seed)
        assert many.dtype == torch.int64 and many[0] == first[0]
    assert kcenter_greedy(features, 9).tolist() == kcenter_greedy(features, 9, seed=0).tolist()
    assert kcenter_greedy(features, 0).dtype == torch.int64


def test_first_pick_is_seeded_and_select_integration(rng):
    features = torch.from_numpy(rng.normal(size=(200, 4)).astype(np.float32))
    scores = Scores.from_entropy(rng.uniform(0.01, 1, 200)).replace(features=features)
    firsts = {int(kcenter_greedy(features, 1, seed=s)[0]) for s in range(20)}
    assert len(firsts) > 5
    a = proxyfast.select(scores, k=30, method="kcenter", seed=3)
    b = proxyfast.select(scores, k=30, method="kcenter", seed=3)
    assert torch.equal(a.indices, b.indices)
    assert sorted(a.indices.tolist()) == sorted(kcenter_greedy(features, 30, seed=3).tolist())


def test_half_precision_features_and_edge_sizes(rng):
    features = torch.from_numpy(rng.normal(size=(50, 3)).astype(np.float32))
    assert kcenter_greedy(features, 0).shape == (0,)
    assert sorted(kcenter_greedy(features, 50).tolist()) == list(range(50))
    half = features.to(torch.float16)
    assert kcenter_greedy(half, 10, seed=1).tolist() == kcenter_greedy(half.float(), 10, seed=1).tolist()
    with pytest.raises(ValueError, match="k must be at most 50, got 51"):
        kcenter_greedy(features, 51)
    with pytest.raises(ValueError, match=r"^features must be a 2-D floating-point tensor \[N, D\]$"):
        kcenter_greedy(features[:, 0], 2)


def test_kcenter_without_features_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^method 'kcenter' needs scores with features: compute them with "
                                         r"proxyfast\.score\(model, dataset, features=True\)$"):
        proxyfast.select(Scores.from_entropy([0.5, 0.2, 0.1]), k=1, method="kcenter")


@requires_cuda
def test_cuda_matches_cpu(rng):
    features = torch.from_numpy(rng.normal(size=(5000, 8)).astype(np.float32))
    cpu = kcenter_greedy(features, 100, seed=2)
    gpu = kcenter_greedy(features.cuda(), 100, seed=2)
    assert gpu.device.type == "cuda" and gpu.cpu().tolist() == cpu.tolist()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_memory_is_o_n_where_an_n_by_k_matrix_would_not_fit():
    """N = 2,000,000, k = 4,000: an N x k float32 matrix is 32 GB; the run must stay
    within the features plus a few N-sized vectors (measured in a fresh process)."""
    import subprocess
    import sys

    # VmHWM (peak RSS) starts afresh in the new program; ru_maxrss would start from the
    # size of this (forking) process.
    code = (
        "import torch\n"
        "from proxyfast.selection.kcenter import kcenter_greedy\n"
        "def peak():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "torch.set_num_threads(2)\n"
        "x = torch.rand(2_000_000, 2, generator=torch.Generator().manual_seed(0))\n"
        "base = peak()\n"
        "idx = kcenter_greedy(x, 4_000, seed=0)\n"
        "assert len(set(idx.tolist())) == 4_000\n"
        "print(peak() - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grown_kib = int(out.stdout.strip().splitlines()[-1])
    # Features are 16 MB; the running minimum and one distance vector 8 MB each.
    assert 0 < grown_kib * 1024 < 200e6, f"peak memory grew by {grown_kib / 1024:.0f} MiB"
