"""The CUDA operators against their CPU twins on the same inputs.

Entropy within 1e-5 relative (the CPU op is itself checked against a float64 reference
in test_ops_entropy.py); histogram bins and counts identical; sampled indices identical,
bit for bit, for the same seed and stream.
"""

import math

import numpy as np
import pytest
import torch

from proxyfast import ops

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: torch.cuda.is_available() is False"),
]

FLT_MIN = float(np.finfo(np.float32).tiny)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
IMAGENET_N = 1_281_167
IMAGENET_K = 128_116

entropy_op = torch.ops.proxyfast.entropy.default
histogram_bins_op = torch.ops.proxyfast.histogram_bins.default
weighted_sample_op = torch.ops.proxyfast.weighted_sample.default


def cuda_generator(rng) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(int(rng.integers(2**62)))


def random_logits(rng, n, c, dtype=torch.float32):
    """Normal logits with a per-row scale from 0.01 to 100: entropies from near log(C)
    down to far below fp32's smallest normal number."""
    g = cuda_generator(rng)
    scale = 10.0 ** (torch.rand(n, 1, generator=g, device="cuda") * 4 - 2)
    return (torch.randn(n, c, generator=g, device="cuda") * scale).to(dtype)


def assert_matches_cpu(logits: torch.Tensor, got=None):
    """The CUDA entropy op on `logits` against the CPU op on the same values."""
    if got is None:
        got = entropy_op(logits)
    want_h, want_log10 = (t.double() for t in entropy_op(logits.cpu()))
    got_h, got_log10 = (t.cpu().double() for t in got)
    nan = torch.isnan(want_log10)
    assert torch.equal(torch.isnan(got_log10), nan), "NaN rows differ"
    assert torch.equal(torch.isnan(got_h), torch.isnan(want_h)), "NaN rows differ"
    normal = ~torch.isnan(want_h) & (want_h >= FLT_MIN) & torch.isfinite(want_h)
    rel = (got_h[normal] - want_h[normal]).abs() / want_h[normal]
    worst = rel.max().item() if rel.numel() else 0.0
    assert worst <= 1e-5, f"worst relative error {worst}"
    tiny = ~torch.isnan(want_h) & (want_h < FLT_MIN)
    assert bool((got_h[tiny] <= 2 * FLT_MIN).all())
    torch.testing.assert_close(got_log10[~nan], want_log10[~nan], rtol=1e-6, atol=1e-6)


SHAPES = [
    (1, 2),
    (3, 3),
    (1000, 2),
    (1000, 31),
    (1000, 33),
    (3, 256),
    (1000, 257),
    (100_003, 31),
    (100_003, 1000),
    (1000, 1024),
    (1000, 1025),
    (1000, 4097),
    (1, 16384),
    (30, 16385),
    (1000, 21843),
    (2, 1 << 20),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c", SHAPES)
def test_entropy_matches_cpu(rng, dtype, n, c):
    logits = random_logits(rng, n, c, dtype)
    h, log10_h = entropy_op(logits)
    assert h.device == logits.device and h.dtype == torch.float32 and h.shape == (n,)
    assert log10_h.device == logits.device and log10_h.dtype == torch.float32 and log10_h.shape == (n,)
    assert_matches_cpu(logits, (h, log10_h))


def strided_copies(base: torch.Tensor) -> dict:
    """Views with the values of `base` [N, C] and other strides and storage offsets."""
    n, c = base.shape
    wide = torch.zeros(n, 2 * c + 1, dtype=base.dtype, device=base.device)
    wide[:, 1::2] = base
    padded = torch.zeros(n, c + 3, dtype=base.dtype, device=base.device)
    padded[:, :c] = base
    tall = torch.zeros(3 * n, c, dtype=base.dtype, device=base.device)
    tall[1::3] = base
    return {
        "transposed": base.t().contiguous().t(),
        "every other column": wide[:, 1::2],
        "padded rows": padded[:, :c],
        "every third row": tall[1::3],
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [2, 33, 1000, 4097, 21843])
def test_entropy_any_strides(rng, dtype, c):
    base = random_logits(rng, 300, c, dtype)
    want = entropy_op(base)
    assert_matches_cpu(base, want)
    for name, view in strided_copies(base).items():
        assert torch.equal(view, base)
        got = entropy_op(view)
        if name == "transposed":  # one thread per row: another summation order
            assert_matches_cpu(view, got)
            continue
        # Each row is reduced in the same order whatever its strides: identical bits.
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), name
    expanded = base[:1].expand(50, c)  # row stride 0
    got = entropy_op(expanded)
    assert torch.equal(got[1], want[1][:1].expand(50))


def hard_rows(rng, c) -> np.ndarray:
    """Margins from 0 to 1000, ties at the maximum, extreme values, non-finite logits."""
    fixed = [0.0, 1e-3, 0.5, 1, 5, 20, 37, 50, 88, 90, 104, 200, 745, 746]
    margins = np.concatenate([fixed, rng.uniform(0, 1000, 20), [1000]])
    rows = rng.normal(size=(len(margins), c)) - 0.5
    rows[:, 0] = 0.0
    rows[:, 1:] -= margins[:, None] + np.abs(rows[:, 1:])  # every other logit at least `margin` below
    rows[:, 1] = -margins
    rows = list(rng.permuted(rows, axis=1))  # the maximum anywhere in the row
    rows.append(np.zeros(c))  # uniform: H = log C
    for copies in sorted({2, max(2, c // 2), c}):
        if copies > c:
            continue
        row = rng.normal(size=c) - 10
        row[rng.choice(c, copies, replace=False)] = 3.0  # `copies` ties at the maximum
        rows.append(row)
    row = rng.normal(size=c)
    row[rng.integers(c)] = 1e30  # one huge logit: H underflows, log10 H ~ -4e29
    rows.append(row)
    rows.append(rng.normal(size=c) * 3 + 1e4)  # far from zero
    rows.append(rng.normal(size=c) * 3 - 1e4)
    for bad in (np.inf, -np.inf, np.nan):
        for position in {0, c - 1, int(rng.integers(c))}:
            row = rng.normal(size=c)
            row[position] = bad
            rows.append(row)
    return np.stack(rows)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [2, 3, 31, 33, 1000, 4097, 21843])
def test_entropy_hard_rows(rng, dtype, c):
    rows = hard_rows(rng, c)
    logits = torch.from_numpy(rows).to(dtype).cuda()
    h, log10_h = entropy_op(logits)
    non_finite = ~torch.isfinite(logits).all(dim=1)
    assert bool(non_finite.any())
    assert bool(torch.isnan(h[non_finite]).all()) and bool(torch.isnan(log10_h[non_finite]).all())
    assert bool(torch.isfinite(log10_h[~non_finite]).all())
    assert_matches_cpu(logits, (h, log10_h))


def test_entropy_keeps_fp64_accuracy(rng):
    """Compensated fp32 sums, as accurate as fp64 ones: long bfloat16 rows (many equal
    logits, where a plain fp32 sum drifts) against a float64 reference."""
    for c in (70_000, 2**18, 2**20):
        logits = (torch.from_numpy(rng.normal(size=(3, c)) * 2.0) - 5).to(torch.bfloat16).cuda()
        reference = logits.double()
        want = -(torch.softmax(reference, dim=1) * torch.log_softmax(reference, dim=1)).sum(dim=1)
        error = ((entropy_op(logits)[0].double() - want).abs() / want).max().item()
        assert error <= 1e-7, f"C = {c}: relative error {error:.3g}"


def test_entropy_ties_exact():
    logits = torch.tensor([[2.0, 2.0, 2.0, 2.0], [5.0, 5.0, -900.0, -900.0], [-7.0, 3.0, 3.0, -7.0]], device="cuda")
    h, log10_h = entropy_op(logits)
    assert h[0].item() == pytest.approx(math.log(4), rel=1e-7)
    assert h[1].item() == pytest.approx(math.log(2), rel=1e-7)
    assert_matches_cpu(logits, (h, log10_h))


def test_entropy_no_rows():
    logits = torch.empty(0, 7, device="cuda")
    h, log10_h = entropy_op(logits)
    assert h.shape == (0,) and log10_h.shape == (0,) and h.is_cuda


def test_entropy_on_side_stream(rng):
    logits = random_logits(rng, 5000, 1000)
    want = entropy_op(logits)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = entropy_op(logits)
    stream.synchronize()
    assert torch.equal(got[1], want[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 1000, 1_000_003])
@pytest.mark.parametrize("n_bins", [1, 37, 8192, 8193, 100_000])
def test_histogram_bins_matches_cpu(rng, n, n_bins, dtype):
    lo, width = -9.0, 12.0 / n_bins
    top = lo + n_bins * width
    values = rng.normal(-3.0, 2.5, size=n)
    # Values on edges (exact in fp32 where the width allows), at both ends, outside, NaN.
    on_edges = lo + rng.integers(0, n_bins + 1, size=50) * width
    specials = np.concatenate([on_edges, np.nextafter(on_edges, -np.inf),
                               [lo, top, lo - 1e-3, top + 1e-3, np.nan, np.inf, -np.inf]])
    count = min(n, len(specials))
    values[rng.choice(n, count, replace=False)] = specials[:count]
    values = torch.from_numpy(values.astype(dtype))
    got_ids, got_counts = histogram_bins_op(values.cuda(), lo, width, n_bins, top)
    want_ids, want_counts = histogram_bins_op(values, lo, width, n_bins, top)
    assert got_ids.is_cuda and got_ids.dtype == torch.int32 and got_counts.dtype == torch.int64
    assert torch.equal(got_ids.cpu(), want_ids)
    assert torch.equal(got_counts.cpu(), want_counts)


def test_histogram_bins_strided_and_empty(rng):
    values = torch.from_numpy(rng.normal(-3.0, 2.5, size=30_000).astype(np.float32)).cuda()
    view = values[1::3]
    got_ids, got_counts = histogram_bins_op(view, -12.0, 0.25, 60, 3.0)
    want_ids, want_counts = histogram_bins_op(view.cpu(), -12.0, 0.25, 60, 3.0)
    assert torch.equal(got_ids.cpu(), want_ids) and torch.equal(got_counts.cpu(), want_counts)
    ids, counts = histogram_bins_op(torch.empty(0, device="cuda"), 0.0, 1.0, 3, 3.0)
    assert ids.shape == (0,) and torch.equal(counts.cpu(), torch.zeros(3, dtype=torch.int64))


def sample_weights(rng, n, k, dtype):
    """Heavy-tailed weights with about 30% zeros, keeping at least k positive."""
    weights = rng.pareto(1.5, size=n) + 0.01
    zeros = rng.random(n) < 0.3
    if n - zeros.sum() < k:
        zeros[:] = False
    weights[zeros] = 0.0
    return torch.from_numpy(weights).to(dtype)


def sample_both(weights: torch.Tensor, k: int, seed: int, stream: int):
    got = weighted_sample_op(weights.cuda(), k, seed, stream)
    want = weighted_sample_op(weights.cpu(), k, seed, stream)
    assert got.is_cuda and got.dtype == torch.int64 and got.shape == (k,)
    return got.cpu(), want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "n, k",
    [(1, 0), (1, 1), (2, 1), (2, 2), (1000, 0), (1000, 1), (1000, 500), (100_003, 10_000), (IMAGENET_N, IMAGENET_K)],
)
def test_weighted_sample_matches_cpu(rng, dtype, n, k):
    weights = sample_weights(rng, n, k, dtype)
    for seed, stream in [(0, 0), (int(rng.integers(2**63 - 1)), 1), (2**63 - 1, 2**32 - 1)]:
        got, want = sample_both(weights, k, seed, stream)
        assert torch.equal(got, want), (seed, stream)
        assert len(set(got.tolist())) == k and bool((weights[got] > 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_sample_all_positive_and_strided(rng, dtype):
    weights = sample_weights(rng, 20_000, 0, dtype)
    positive = int((weights > 0).sum())
    got, want = sample_both(weights, positive, 5, 0)  # every positive item, in draw order
    assert torch.equal(got, want)
    strided = weights.cuda()[::2]
    got = weighted_sample_op(strided, 1000, 9, 0)
    assert torch.equal(got.cpu(), weighted_sample_op(strided.cpu(), 1000, 9, 0))


def test_weighted_sample_equal_weights(rng):
    weights = torch.ones(50_000, dtype=torch.float64)
    got, want = sample_both(weights, 50_000, int(rng.integers(2**63 - 1)), 1)  # a full shuffle
    assert torch.equal(got, want)


def test_weighted_sample_extreme_weights():
    # A subnormal weight's clock would overflow: it is capped at the largest double on both
    # devices, so the item still counts as positive and is drawn last; a zero weight never.
    weights = torch.tensor([1e-320, 1.0, 1e300, 0.0], dtype=torch.float64)
    got, want = sample_both(weights, 3, 3, 0)
    assert torch.equal(got, want) and got.tolist() == [2, 1, 0]
    for device in ("cpu", "cuda"):
        with pytest.raises(RuntimeError, match="exceeds the number of positive weights"):
            weighted_sample_op(weights.to(device), 4, 3, 0)


def test_weighted_sample_invalid_weights_raise():
    for bad in (-1.0, float("nan"), float("inf")):
        weights = torch.tensor([1.0, bad, 2.0], dtype=torch.float64, device="cuda")
        for k in (0, 1):  # k = 0 too, as on the CPU
            with pytest.raises(RuntimeError, match="weights must be finite and non-negative; 1 are not"):
                weighted_sample_op(weights, k, 0, 0)


def error_line(fn):
    with pytest.raises(RuntimeError) as error:
        fn()
    return str(error.value).splitlines()[0]


def test_weighted_sample_errors_match_cpu():
    weights = torch.tensor([1.0, 0.0, 2.0])
    for args in [(3, 0, 0), (4, 0, 0), (-1, 0, 0), (1, -1, 0), (1, 0, 2**32)]:
        assert error_line(lambda: weighted_sample_op(weights.cuda(), *args)) == \
            error_line(lambda: weighted_sample_op(weights, *args))


def test_weighted_sample_on_side_stream(rng):
    weights = sample_weights(rng, 100_000, 100, torch.float32).cuda()
    want = weighted_sample_op(weights, 5000, 11, 0)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = weighted_sample_op(weights, 5000, 11, 0)
    stream.synchronize()
    assert torch.equal(got, want)


def test_weighted_sample_wrapper_on_cuda(rng):
    weights = sample_weights(rng, 10_000, 100, torch.float32).cuda()
    got = ops.weighted_sample(weights, 100, seed=4)
    assert got.is_cuda and torch.equal(got.cpu(), ops.weighted_sample(weights.cpu(), 100, seed=4))


def test_weighted_sample_beyond_multinomial_cap(rng):
    """torch.multinomial stops at 2^24 categories; this op does not."""
    n = 2**24 + 5
    if torch.cuda.mem_get_info()[0] < 4 * 2**30:
        pytest.skip("needs 4 GiB of free GPU memory")
    weights = torch.rand(n, generator=cuda_generator(rng), device="cuda")
    weights[-3:] = 1e12  # beyond 2^24 and almost surely drawn first (the rest sum to ~8e6)
    got = weighted_sample_op(weights, 1000, 7, 0)
    assert torch.equal(got.cpu(), weighted_sample_op(weights.cpu(), 1000, 7, 0))
    assert set(got[:3].tolist()) == {n - 3, n - 2, n - 1}
