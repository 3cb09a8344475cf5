"""The CUDA sources run on the host model (csrc/cuda/host_model.h, docs/cuda.md) against
the CPU ops: the kernels' arithmetic, indexing, block reductions and shuffles and the glue's
checks, launch configurations and algorithm, on a machine without a GPU.

Each op of ``torch.ops.proxyfast_host_model`` is the CUDA op compiled for the host, on
CPU tensors. Tolerances as in test_cuda.py and test_cuda_mixed.py; the sampled indices
and the histogram bins are identical.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from _host_model import ROOT, host_ops
from proxyfast import ops

FLT_MIN = float(np.finfo(np.float32).tiny)
LOGIT_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
EDGE_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
RELATIVE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
cpu = torch.ops.proxyfast


@pytest.fixture(scope="module")
def host():
    return host_ops()


# Entropy.


def assert_entropy_close(got, logits):
    """got = (entropy, log10 entropy) of `logits` against the CPU op's."""
    want_h, want_log10 = (t.double() for t in cpu.entropy(logits))
    got_h, got_log10 = (t.double() for t in got)
    nan = torch.isnan(want_log10)
    assert torch.equal(torch.isnan(got_log10), nan) and torch.equal(torch.isnan(got_h), torch.isnan(want_h))
    normal = ~torch.isnan(want_h) & (want_h >= FLT_MIN)
    if bool(normal.any()):
        rel = ((got_h[normal] - want_h[normal]).abs() / want_h[normal]).max().item()
        assert rel <= 1e-5, f"worst relative error {rel}"
    tiny = ~torch.isnan(want_h) & (want_h < FLT_MIN)
    assert bool((got_h[tiny] <= 2 * FLT_MIN).all())
    torch.testing.assert_close(got_log10[~nan], want_log10[~nan], rtol=1e-6, atol=1e-6)


def random_logits(rng, n, c, dtype=torch.float32):
    scale = 10.0 ** rng.uniform(-2, 2, size=(n, 1))
    return torch.from_numpy(rng.normal(size=(n, c)) * scale).to(dtype)


def hard_rows(rng, c):
    """Margins from 0 to 800, ties at the maximum, huge and non-finite logits."""
    rows = []
    for margin in (0.0, 1e-3, 1.0, 20.0, 90.0, 104.0, 800.0):
        row = rng.normal(size=c) - 3.0 - margin
        row[rng.integers(c)] = 0.0
        rows.append(row)
    rows.append(np.zeros(c))
    for copies in sorted({2, max(2, c // 2), c}):
        row = rng.normal(size=c) - 10
        row[rng.choice(c, copies, replace=False)] = 3.0
        rows.append(row)
    row = rng.normal(size=c)
    row[rng.integers(c)] = 1e30
    rows.append(row)
    for bad in (np.inf, -np.inf, np.nan):
        for position in {0, c - 1, int(rng.integers(c))}:
            row = rng.normal(size=c)
            row[position] = bad
            rows.append(row)
    return np.stack(rows)


# Shapes reaching every kernel: warp per row with 8 and 32 logits per lane, block per row
# with logits in registers and streamed, and one thread per row for column-major input.
ENTROPY_SHAPES = [(1, 2), (37, 3), (70, 33), (20, 256), (20, 257), (9, 1025), (3, 4097), (2, 16385)]


@pytest.mark.parametrize("dtype", LOGIT_DTYPES)
@pytest.mark.parametrize("n, c", ENTROPY_SHAPES)
def test_entropy_matches_cpu(host, rng, dtype, n, c):
    logits = random_logits(rng, n, c, dtype)
    assert_entropy_close(host.entropy(logits), logits)


@pytest.mark.parametrize("dtype", LOGIT_DTYPES)
@pytest.mark.parametrize("c", [2, 31, 300, 5000])
def test_entropy_hard_rows_and_strides(host, rng, dtype, c):
    base = torch.from_numpy(hard_rows(rng, c)).to(dtype)
    n = base.shape[0]
    wide = torch.zeros(n, 2 * c + 1, dtype=dtype)
    wide[:, 1::2] = base
    tall = torch.zeros(3 * n, c, dtype=dtype)
    tall[1::3] = base
    views = {"contiguous": base, "transposed": base.t().contiguous().t(), "every other column": wide[:, 1::2],
             "every third row": tall[1::3], "row stride 0": base[:1].expand(5, c)}
    for name, view in views.items():
        assert_entropy_close(host.entropy(view), view.contiguous())
        got = host.entropy(view)
        assert torch.isnan(got[0]).sum() == torch.isnan(cpu.entropy(view.contiguous())[0]).sum(), name


def test_entropy_keeps_fp64_accuracy(host, rng):
    """The compensated fp32 sums stay as accurate as the fp64 ones were (and as the CPU
    op, ~3e-8 here): long bfloat16 rows, whose many equal logits make a plain fp32 sum
    drift to 2e-7 - 5e-7, against a float64 reference."""
    for c in (70_000, 2**18, 2**20):
        for spread in (0.05, 2.0):
            logits = (torch.from_numpy(rng.normal(size=(3, c)) * spread) - 5).to(torch.bfloat16)
            logits[1] = 0.25  # uniform: H = log C exactly
            reference = logits.double()
            want = -(torch.softmax(reference, dim=1) * torch.log_softmax(reference, dim=1)).sum(dim=1)
            got = host.entropy(logits)[0].double()
            error = ((got - want).abs() / want).max().item()
            assert error <= 1e-7, f"C = {c}, spread {spread}: relative error {error:.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_bins", [1, 37, 8192, 8193])
def test_histogram_bins_matches_cpu(host, rng, n_bins, dtype):
    lo, width = -9.0, 12.0 / n_bins
    top = lo + n_bins * width
    values = rng.normal(-3.0, 2.5, size=5000)
    on_edges = lo + rng.integers(0, n_bins + 1, size=50) * width
    values[:107] = np.concatenate([on_edges, np.nextafter(on_edges, -np.inf),
                                   [lo, top, lo - 1e-3, top + 1e-3, np.nan, np.inf, -np.inf]])
    values = torch.from_numpy(values.astype(dtype))
    for view in (values, values[1::3]):
        got, want = host.histogram_bins(view, lo, width, n_bins, top), cpu.histogram_bins(view, lo, width, n_bins, top)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    ids, counts = host.histogram_bins(torch.empty(0, dtype=values.dtype), lo, width, n_bins, top)
    assert ids.shape == (0,) and torch.equal(counts, torch.zeros(n_bins, dtype=torch.int64))


# Weighted sampling: the GPU algorithm (binade histogram, compaction, stable radix sort)
# picks the CPU op's indices, in its order.


def sample_weights(rng, n, dtype):
    weights = rng.pareto(1.5, size=n) + 0.01
    weights[rng.random(n) < 0.3] = 0.0
    return torch.from_numpy(weights).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 1000, 70_001])
def test_weighted_sample_matches_cpu(host, rng, dtype, n):
    weights = sample_weights(rng, n, dtype)
    weights[0] = 1.0
    positive = int((weights > 0).sum())
    for k in sorted({0, 1, positive // 3, positive}):
        for seed, stream in [(0, 0), (int(rng.integers(2**63 - 1)), 1), (2**63 - 1, 2**32 - 1)]:
            got = host.weighted_sample(weights, k, seed, stream)
            assert torch.equal(got, cpu.weighted_sample(weights, k, seed, stream)), (k, seed, stream)
    strided = weights.repeat_interleave(2)[::2]
    assert torch.equal(host.weighted_sample(strided, positive // 2, 9, 0), cpu.weighted_sample(strided, positive // 2, 9, 0))


def test_weighted_sample_ties_and_extremes(host, rng):
    equal = torch.ones(20_000, dtype=torch.float64)  # a full shuffle: every clock distinct, every binade used
    seed = int(rng.integers(2**63 - 1))
    assert torch.equal(host.weighted_sample(equal, 20_000, seed, 1), cpu.weighted_sample(equal, 20_000, seed, 1))
    extreme = torch.tensor([1e-320, 1.0, 1e300, 0.0], dtype=torch.float64)
    assert host.weighted_sample(extreme, 3, 3, 0).tolist() == cpu.weighted_sample(extreme, 3, 3, 0).tolist() == [2, 1, 0]


def raised(fn):
    with pytest.raises(RuntimeError) as error:
        fn()
    return str(error.value).splitlines()[0]


def test_weighted_sample_validates_weights_for_any_k(host):
    for bad in (-1.0, float("nan"), float("inf")):
        weights = torch.tensor([1.0, bad, 2.0], dtype=torch.float64)
        for k in (0, 1):  # k = 0 too: the weights are validated whatever k is
            message = raised(lambda: cpu.weighted_sample(weights, k, 0, 0))
            assert "weights must be finite and non-negative; 1 are not" in message
            assert raised(lambda: host.weighted_sample(weights, k, 0, 0)) == message


def test_weighted_sample_checks_like_cpu(host):
    weights = torch.tensor([1.0, 0.0, 2.0])
    message = raised(lambda: cpu.weighted_sample(weights, 3, 0, 0))
    assert "k = 3 exceeds the number of positive weights (2)" in message
    assert raised(lambda: host.weighted_sample(weights, 3, 0, 0)) == message
    for args in [(weights, 4, 0, 0), (weights, -1, 0, 0), (weights, 1, -1, 0), (weights, 1, 0, 2**32),
                 (weights.double()[None], 1, 0, 0), (weights.half(), 1, 0, 0)]:
        assert raised(lambda: host.weighted_sample(*args)) == raised(lambda: cpu.weighted_sample(*args))
    assert host.weighted_sample(torch.empty(0), 0, 0, 0).shape == (0,)


# The mixed edge.

B, R, N = ops.NORM_BATCH, ops.NORM_RUNNING, ops.NORM_NONE
NORM_MODES = {"train": [B, B, B, B, B, N], "eval": [R, R, R, R, R, N], "mixed": [B, R, N, B, R, B],
              "all batch": [B, B, B, B, B, B]}


def edge_args(shape, stride, dtype, modes, branches=4, skip=True):
    """The op's arguments: (x, weights, branches, branch_slots, free_slots, stride,
    norm_modes, eps, running_stats), random."""
    n, c, h, w = shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    x = torch.randn(n, c, h, w).to(dtype)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    weights = torch.softmax(torch.randn(8, dtype=acc), dim=-1)
    outs = [(torch.randn(n, c, ho, wo) * 2 + 1).to(dtype) for _ in range(branches)]
    running = torch.rand(2 * (2 + branches), c, dtype=torch.float64) + 0.5
    running[0::2] -= 1.0
    free = [3 if skip and stride == 1 else -1, 1, 2]
    norm = NORM_MODES[modes][:2 + branches]
    return [x, weights, outs, [4, 5, 6, 7][:branches], free, stride, norm, [1e-5] * (2 + branches), running]


def run_edge(op, backward, args, grad):
    out, stats = op(*args)
    x, weights, branches, branch_slots, free, stride, norm, eps, _ = args
    grads = backward(grad, x, weights, branches, branch_slots, free, stride, norm, eps, stats, [True, True])
    return out, stats, grads[0], grads[1], list(grads[2])


def assert_edge_close(got, want, dtype, count):
    """Within RELATIVE of the largest magnitude; looser for batch statistics of few
    values (`count` per channel), whose backward cancels more."""
    conditioning = max(1.0, 32.0 / count)
    accumulation = torch.float64 if dtype == torch.float64 else torch.float32
    tolerances = [dtype, accumulation, dtype, accumulation] + [dtype] * len(want[4])
    for name, g, w, tol in zip(["output", "stats", "x grad", "weight grads"] + [f"branch {b}" for b in range(9)],
                               [*got[:4], *got[4]], [*want[:4], *want[4]], tolerances):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        g, w = g.double(), w.double()
        assert torch.equal(torch.isnan(g), torch.isnan(w)), f"{name}: NaN positions differ"
        assert torch.equal(torch.isinf(g), torch.isinf(w)), f"{name}: inf positions differ"
        finite = torch.isfinite(w)
        scale = w[finite].abs().max().item() if bool(finite.any()) else 1.0
        error = (g[finite] - w[finite]).abs().max().item() / (scale or 1.0) if bool(finite.any()) else 0.0
        assert error <= RELATIVE[tol] * conditioning, f"{name}: relative error {error:.3g}"


def compare_edge(host, args, dtype):
    x, stride = args[0], args[5]
    n, c, h, w = x.shape
    grad = torch.randn(n, c, (h - 1) // stride + 1, (w - 1) // stride + 1).to(dtype)
    got = run_edge(host.mixed_edge, host.mixed_edge_backward, args, grad)
    want = run_edge(cpu.mixed_edge, cpu.mixed_edge_backward, args, grad)
    assert_edge_close(got, want, dtype, grad[:, 0].numel())
    return got, want


@pytest.mark.parametrize("dtype", EDGE_DTYPES)
@pytest.mark.parametrize("modes", sorted(NORM_MODES))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(4, 6, 9, 7), (2, 7, 4, 4), (2, 3, 1, 13), (3, 5, 16, 1), (2, 2, 5, 4)])
def test_edge_matches_cpu(host, shape, stride, modes, dtype, rng):
    torch.manual_seed(int(rng.integers(2**31)))
    compare_edge(host, edge_args(shape, stride, dtype, modes), dtype)


@pytest.mark.parametrize("stride", [1, 2])
def test_edge_parts_left_out(host, stride, rng):
    torch.manual_seed(int(rng.integers(2**31)))
    for branches, free in [(0, [-1, 1, -1]), (0, [-1, -1, 2]), (2, [-1, -1, -1]), (1, [0 if stride == 1 else -1, 1, 2])]:
        args = edge_args((3, 4, 7, 6), stride, torch.float64, "train", branches=branches)
        args[4] = free
        compare_edge(host, args, torch.float64)


def test_edge_max_pool_ties(host, rng):
    """Integer values tie in most windows: the gradient goes to the same (first) maximum."""
    torch.manual_seed(int(rng.integers(2**31)))
    for stride in (1, 2):
        args = edge_args((4, 3, 11, 10), stride, torch.float64, "train", branches=0)
        args[0] = torch.randint(0, 3, (4, 3, 11, 10)).double()
        compare_edge(host, args, torch.float64)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("modes", ["train", "all batch"])
def test_edge_non_finite_propagates_like_cpu(host, bad, modes, rng):
    """A NaN or inf input makes the batch statistics of its channel NaN on both devices
    (the variance is not clamped to a finite value)."""
    torch.manual_seed(int(rng.integers(2**31)))
    args = edge_args((3, 4, 6, 5), 1, torch.float64, modes)
    args[0][1, 2, 4, 3] = bad  # away from the first window: the pivot stays finite
    args[2][0][2, 1, 5, 4] = bad
    got, want = compare_edge(host, args, torch.float64)
    assert bool(torch.isnan(got[1][3, 2])) and bool(torch.isnan(want[1][3, 2]))  # avg pool variance, channel 2
    assert bool(torch.isnan(got[1][2, 2])) and bool(torch.isnan(want[1][2, 2]))  # and its mean


def test_edge_more_channels_than_a_grid_dimension(host):
    """gridDim.y stops at 65,535; no channel limit follows from it. (The kernels that
    reduce per channel loop over the channels beyond their grid: the host model launches
    them with at most 3 in gridDim.y, so every test above with more channels runs that
    loop. Here, the forward pass without batch statistics, which is cheap to model.)"""
    args = edge_args((2, 65_537, 1, 1), 1, torch.float64, "eval", branches=1)
    out, stats = host.mixed_edge(*args)
    want_out, want_stats = cpu.mixed_edge(*args)
    torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats, want_stats, rtol=0, atol=0)


def test_edge_checks_like_cpu(host):
    args = edge_args((2, 3, 5, 5), 1, torch.float32, "train")
    cases = []
    for index, value in [(0, torch.randn(2, 3, 5)), (0, torch.randn(2, 3, 5, 5).int()), (1, torch.ones(8).double()),
                         (3, [4, 5, 6, 6]), (4, [3, 1]), (5, 3), (6, [0, 1, 0, 0, 0, 0]), (7, [1e-5] * 5),
                         (8, None), (4, [3, 1, 9]), (0, torch.randn(2, 3, 5, 5).transpose(2, 3))]:
        changed = list(args)
        changed[index] = value
        if index == 8:
            changed[6] = [R] * 6
        cases.append(changed)
    changed = list(args)
    changed[0] = torch.randn(1, 3, 1, 1)
    changed[2] = [torch.randn(1, 3, 1, 1) for _ in range(4)]
    cases.append(changed)  # batch statistics of one value
    for case in cases:
        assert raised(lambda: host.mixed_edge(*case)) == raised(lambda: cpu.mixed_edge(*case))


def test_running_update_matches_cpu(host, rng):
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        mean, var = torch.randn(300, dtype=torch.float64), torch.rand(300, dtype=torch.float64)
        mean[5], var[6] = float("nan"), float("inf")
        running = [torch.randn(300).to(dtype), (torch.rand(300) + 0.5).to(dtype)]
        model = [t.clone() for t in running]
        cpu.batch_norm_running_update(*running, mean, var, 0.1, 50)
        host.batch_norm_running_update(*model, mean, var, 0.1, 50)
        for a, b in zip(model, running):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def test_running_update_without_channels(host):
    """No channels: nothing to update, and no launch (an empty grid is an error on the device)."""
    empty = [torch.empty(0), torch.empty(0), torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.float64)]
    cpu.batch_norm_running_update(*empty, 0.1, 50)
    host.batch_norm_running_update(*empty, 0.1, 50)


def test_running_update_checks_like_cpu(host):
    good = [torch.zeros(4), torch.ones(4), torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)]
    for index, value in [(0, torch.zeros(5)), (1, torch.ones(4).double()), (2, torch.zeros(4)),
                         (3, torch.ones(3, dtype=torch.float64)), (0, torch.zeros(8)[::2])]:
        args = list(good)
        args[index] = value
        assert raised(lambda: host.batch_norm_running_update(*args, 0.1, 50)) == \
            raised(lambda: cpu.batch_norm_running_update(*args, 0.1, 50))
    for momentum, count in [(1.5, 50), (float("nan"), 50), (0.1, 1)]:
        assert raised(lambda: host.batch_norm_running_update(*good, momentum, count)) == \
            raised(lambda: cpu.batch_norm_running_update(*good, momentum, count))


def test_running_update_checks_the_device_of_every_tensor():
    """A batch variance on another device than the rest is refused before any kernel
    reads it (on a GPU, a host pointer read by the kernel poisons the CUDA context).
    Here the other device is `meta`, whose tensors have no data: reading it would crash,
    so the check runs in a child process."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        import torch
        from _host_model import host_ops
        host = host_ops()
        rm, rv = torch.zeros(4), torch.ones(4)
        mean, var = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64, device="meta")
        try:
            host.batch_norm_running_update(rm, rv, mean, var, 0.1, 50)
        except RuntimeError as error:
            print("refused:", str(error).splitlines()[0])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused:" in result.stdout and "on one device" in result.stdout, result.stdout
