"""Each vector variant of the CPU entropy kernel against the float64 reference.

PROXYFAST_CPU_CAPABILITY caps the variant the kernel picks (``avx512``, ``avx2``,
``default``: the exact scalar path), so one processor with AVX-512 tests all three. The
fast paths work in single precision and hand rows of large margin (and non-finite rows)
to the exact path; the shapes put the maximum in the vector body and in the tail.
"""

import numpy as np
import pytest
import torch

from proxyfast import ops
from test_ops_entropy import assert_entropy_close

CAPABILITIES = ["avx512", "avx2", "default"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CLASSES = [2, 3, 15, 17, 1000, 1001]


@pytest.fixture(params=CAPABILITIES)
def capability(request, monkeypatch):
    monkeypatch.setenv("PROXYFAST_CPU_CAPABILITY", request.param)
    running = torch.ops.proxyfast.entropy_cpu_capability()
    if running != request.param:
        pytest.skip(f"this processor has no {request.param} (the kernel runs {running})")
    return request.param


def margin_rows(rng, classes, margins):
    """One row per margin: the maximum 0 at a random place, the others at least
    ``margin`` below it, the runner-up exactly ``margin`` below."""
    rows = -np.abs(rng.normal(size=(len(margins), classes))) - np.asarray(margins)[:, None]
    for row, margin in zip(rows, margins):
        top, second = rng.choice(classes, size=2, replace=False)
        row[top] = 0.0
        row[second] = -margin
    return rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("classes", CLASSES)
def test_random_rows_match_the_reference(rng, capability, dtype, classes):
    scales = rng.choice([0.01, 1.0, 4.0, 30.0], size=(64, 1))
    logits = torch.from_numpy(rng.normal(size=(64, classes)) * scales + rng.normal(size=(64, 1)) * 100).to(dtype)
    assert_entropy_close(logits, *ops.entropy(logits))


@pytest.mark.parametrize("classes", CLASSES)
def test_margins_across_the_fast_path_bound(rng, capability, classes):
    """Margins below, at and beyond the fast path's bound (~44), up to 1000."""
    margins = [0.0, 1e-4, 1.0, 10.0, 30.0, 40.0, 43.0, 44.0, 44.5, 45.0, 46.0, 50.0, 60.0, 86.0, 87.0, 88.0,
               100.0, 200.0, 745.0, 1000.0]
    logits = torch.from_numpy(margin_rows(rng, classes, margins)).float()
    entropy, log10_entropy = ops.entropy(logits)
    assert_entropy_close(logits, entropy, log10_entropy)
    assert torch.isfinite(log10_entropy).all()


@pytest.mark.parametrize("classes", [2, 3, 17, 1001])
def test_ties_at_the_top(rng, capability, classes):
    """Copies of the maximum, in the vector body and in the tail, and a uniform row."""
    rows = margin_rows(rng, classes, [5.0] * 4 + [60.0] * 2)
    rows[0, -1] = rows[0].max()  # a copy in the tail
    rows[1, :] = 3.0
    rows[2, [0, classes - 1]] = 7.0
    rows[3, : classes // 2 + 1] = 0.0
    rows[4, classes // 2] = 0.0  # two copies 60 above everything else
    rows[4, classes - 1] = 0.0
    logits = torch.from_numpy(rows).float()
    entropy, log10_entropy = ops.entropy(logits)
    assert_entropy_close(logits, entropy, log10_entropy)
    assert entropy[1].item() == pytest.approx(np.log(classes), rel=1e-6)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("place", [0, 16, -1])
def test_non_finite_logit_anywhere_gives_nan(capability, bad, place):
    logits = torch.zeros(3, 33)
    logits[1, place] = bad
    entropy, log10_entropy = ops.entropy(logits, check_finite=False)
    assert torch.isnan(entropy[1]) and torch.isnan(log10_entropy[1])
    assert torch.isfinite(entropy[[0, 2]]).all()
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        ops.entropy(logits)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_equals_its_upcast(rng, capability, dtype):
    logits = torch.from_numpy(np.concatenate([rng.normal(size=(50, 1001)) * 5, margin_rows(rng, 1001, [50.0])]))
    logits = logits.to(dtype)
    got = ops.entropy(logits)
    want = ops.entropy(logits.float())
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_variants_agree_with_the_exact_path(rng, monkeypatch):
    logits = torch.from_numpy(rng.normal(size=(300, 1000)) * rng.uniform(0.1, 10, size=(300, 1))).float()
    results = {}
    for capability in CAPABILITIES:
        monkeypatch.setenv("PROXYFAST_CPU_CAPABILITY", capability)
        results[torch.ops.proxyfast.entropy_cpu_capability()] = ops.entropy(logits)[0].double()
    exact = results["default"]
    for capability, entropy in results.items():
        assert torch.all((entropy - exact).abs() <= 2e-6 * exact), capability


def test_one_class_is_refused(capability):
    with pytest.raises(ValueError, match="at least 2 classes"):
        ops.entropy(torch.zeros(4, 1))


def test_unknown_capability_is_named(monkeypatch):
    monkeypatch.setenv("PROXYFAST_CPU_CAPABILITY", "sse9")
    with pytest.raises(RuntimeError, match="PROXYFAST_CPU_CAPABILITY must be avx512, avx2 or default"):
        ops.entropy(torch.zeros(2, 3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_rows_equal_their_contiguous_copy(rng, capability, dtype):
    base = torch.from_numpy(rng.normal(size=(1001, 40)) * 4).to(dtype)
    for logits in (base.t(), base[::2].t(), base.t()[:, ::3]):
        got = ops.entropy(logits)
        want = ops.entropy(logits.contiguous())
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert_entropy_close(logits.contiguous(), *got)
