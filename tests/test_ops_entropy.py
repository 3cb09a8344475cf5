"""The entropy op against the float64 log-domain reference (tests/reference.py)."""

import math

import mpmath
import numpy as np
import pytest
import torch

from proxyfast import ops
from reference import entropy_reference

FLT_MIN = float(np.finfo(np.float32).tiny)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def assert_entropy_close(logits: torch.Tensor, entropy: torch.Tensor, log10_entropy: torch.Tensor):
    """Relative error <= 1e-5 against float64 on the same (possibly rounded) logits; the
    log10 entropy to within fp32 rounding of its value plus the same 1e-5 of H."""
    want_h, want_log10 = entropy_reference(logits.double().numpy())
    got_h = entropy.double().numpy()
    got_log10 = log10_entropy.double().numpy()
    assert np.all(np.isfinite(got_log10))
    normal = want_h >= FLT_MIN
    rel = np.abs(got_h[normal] - want_h[normal]) / want_h[normal]
    assert rel.max(initial=0.0) <= 1e-5, f"worst relative error {rel.max()}"
    assert np.all(got_h[~normal] <= 2 * FLT_MIN)
    tol = 1e-5 / math.log(10) + 2e-7 * np.abs(want_log10)
    err = np.abs(got_log10 - want_log10)
    assert np.all(err <= tol), f"worst log10 error {err.max()}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c", [(1, 2), (3, 3), (257, 10), (100, 31), (50, 33), (64, 1000), (5, 4097), (3, 21843)])
def test_random_logits(rng, dtype, n, c):
    scale = rng.choice([0.01, 1.0, 8.0, 40.0])
    logits = torch.from_numpy(rng.normal(size=(n, c)) * scale).to(dtype)
    entropy, log10_entropy = ops.entropy(logits)
    assert entropy.dtype == torch.float32 and entropy.shape == (n,)
    assert_entropy_close(logits, entropy, log10_entropy)


@pytest.mark.parametrize("c", [2, 3, 10, 1000, 21843])
def test_margins_from_0_to_1000(rng, c):
    margins = np.concatenate([[0.0, 1e-3, 0.5, 1, 5, 20, 37, 50, 88, 90, 104, 200, 745, 746], rng.uniform(0, 1000, 20), [1000]])
    logits = rng.normal(size=(len(margins), c)) - 0.5
    logits[:, 0] = 0.0
    logits[:, 1:] -= margins[:, None] + np.abs(logits[:, 1:])  # every other logit at least `margin` below
    logits[:, 1] = -margins
    logits = rng.permuted(logits, axis=1)  # the maximum anywhere in the row
    z = torch.from_numpy(logits).float()
    entropy, log10_entropy = ops.entropy(z)
    assert_entropy_close(z, entropy, log10_entropy)


def test_reference_agrees_with_high_precision():
    """The float64 reference itself against mpmath at 1000 digits (no underflow there)."""
    mpmath.mp.dps = 1000
    rows = [[0.0, -50.0, -60.0], [0.0, -200.0, -300.0], [3.0, 3.0, -700.0], [0.0, -1000.0, -1000.5], [0.1, -2.0, 1.7, 0.3]]
    for row in rows:
        m = max(row)
        weights = [mpmath.e ** (mpmath.mpf(x) - m) for x in row]
        total = sum(weights)
        exact = -sum((w / total) * mpmath.log(w / total) for w in weights)
        _, log10_h = entropy_reference(np.array([row]))
        assert abs(log10_h[0] - float(mpmath.log10(exact))) <= 1e-12 * max(1.0, abs(log10_h[0]))


def test_ties_and_uniform_rows():
    logits = torch.tensor([[2.0, 2.0, 2.0, 2.0], [5.0, 5.0, -900.0, -900.0], [1.0, 1.0, 0.0, 0.0], [-7.0, 3.0, 3.0, -7.0]])
    entropy, log10_entropy = ops.entropy(logits)
    assert entropy[0].item() == pytest.approx(math.log(4), rel=1e-7)
    assert entropy[1].item() == pytest.approx(math.log(2), rel=1e-7)
    assert_entropy_close(logits, entropy, log10_entropy)


def test_large_logit_values(rng):
    """Logits far from zero: the kernel works with differences only."""
    logits = torch.from_numpy(rng.normal(size=(20, 100)) * 3 + 1e4).float()
    assert_entropy_close(logits, *ops.entropy(logits))


@pytest.mark.parametrize("layout", ["transposed", "column_slice", "row_slice", "expanded"])
def test_non_contiguous(rng, layout):
    base = torch.from_numpy(rng.normal(size=(97, 61)) * 4).float()
    if layout == "transposed":
        logits = base.t()
    elif layout == "column_slice":
        logits = base[:, ::3]
    elif layout == "row_slice":
        logits = base[::2, 5:50]
    else:
        logits = base[:1].expand(40, -1)
    entropy, log10_entropy = ops.entropy(logits)
    expected = ops.entropy(logits.contiguous())
    assert torch.equal(entropy, expected[0]) and torch.equal(log10_entropy, expected[1])
    assert_entropy_close(logits.contiguous(), entropy, log10_entropy)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_upcast(rng, dtype):
    logits = torch.from_numpy(rng.normal(size=(300, 77)) * 5).to(dtype)
    got = ops.entropy(logits)
    want = ops.entropy(logits.float())
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_threads_do_not_change_results(rng):
    """One, two and four threads, set explicitly (and restored): bit-identical entropies."""
    logits = torch.from_numpy(rng.normal(size=(5000, 50))).float()
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 4):
            torch.set_num_threads(count)
            assert torch.get_num_threads() == count
            results.append(ops.entropy(logits))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert torch.equal(results[0][0], other[0]) and torch.equal(results[0][1], other[1])


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_logits(bad):
    logits = torch.zeros(4, 5)
    logits[2, 3] = bad
    with pytest.raises(ValueError, match=r"logits has non-finite values .* rows \[2\]"):
        ops.entropy(logits)
    entropy, log10_entropy = ops.entropy(logits, check_finite=False)
    assert torch.isnan(entropy[2]) and torch.isnan(log10_entropy[2])
    assert torch.isfinite(entropy[[0, 1, 3]]).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="logits must be 2-D"):
        ops.entropy(torch.zeros(5))
    with pytest.raises(ValueError, match="logits must be 2-D"):
        ops.entropy(torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="logits must be float32, float16 or bfloat16"):
        ops.entropy(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="logits must be float32, float16 or bfloat16"):
        ops.entropy(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="logits is empty"):
        ops.entropy(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="at least 2 classes"):
        ops.entropy(torch.zeros(3, 1))
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        ops.entropy(np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="logits must be 2-D"):
        torch.ops.proxyfast.entropy.default(torch.zeros(3))


def test_opcheck():
    logits = torch.randn(7, 5)
    torch.library.opcheck(torch.ops.proxyfast.entropy.default, (logits,))
    torch.library.opcheck(torch.ops.proxyfast.histogram_bins.default, (torch.randn(9), -3.0, 0.5, 12, 3.0))
    torch.library.opcheck(torch.ops.proxyfast.histogram_bins.default,
                          (torch.randn(9, dtype=torch.float64), -3.0, 0.5, 12, 3.0))
    torch.library.opcheck(torch.ops.proxyfast.weighted_sample.default, (torch.rand(9) + 0.1, 4, 3, 0))
    torch.library.opcheck(torch.ops.proxyfast.weighted_sample_by_bin.default,
                          (torch.tensor([0, 2, 2, 1], dtype=torch.int32), torch.tensor([1.0, 0.5, 2.0],
                                                                                    dtype=torch.float64), 2, 3, 0))


def test_runs_under_torch_compile(rng):
    logits = torch.from_numpy(rng.normal(size=(64, 10))).float()

    @torch.compile(fullgraph=True, backend="aot_eager")
    def entropy_of(z):
        return torch.ops.proxyfast.entropy.default(z * 2.0)

    got = entropy_of(logits)
    want = ops.entropy(logits * 2.0)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_has_cuda_kernels_matches_the_build():
    has = ops.has_cuda_kernels()
    assert isinstance(has, bool)
    if not has:
        assert torch._C._dispatch_has_kernel_for_dispatch_key("proxyfast::entropy", "CPU")
