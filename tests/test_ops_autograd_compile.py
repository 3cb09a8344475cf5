"""The entropy op under autograd and torch.compile, and a fused supernet compiled whole."""

import math

import mpmath
import pytest
import torch

from proxyfast import ops
from proxyfast.nas.supernet import SearchNetwork


def textbook_entropy64(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """H and log10 H in float64, differentiable by autograd; exact enough for margins up to
    ~15 (beyond, ``log_softmax`` of the maximum rounds to 0 and H loses ~1/margin)."""
    log_p = torch.log_softmax(z, dim=1)
    h = -(log_p.exp() * log_p).sum(dim=1)
    return h, torch.log10(h)


def mp_log10_entropy(row):
    top = max(row)
    weights = [mpmath.e ** (mpmath.mpf(x) - top) for x in row]
    total = sum(weights)
    return mpmath.log10(-sum((w / total) * mpmath.log(w / total) for w in weights))


class EntropyWithOpGradient(torch.autograd.Function):
    """Float64 entropy whose backward is the formula the op registers."""

    @staticmethod
    def forward(ctx, z):
        h, log10_h = textbook_entropy64(z)
        ctx.save_for_backward(z, log10_h)
        return h, log10_h

    @staticmethod
    def backward(ctx, grad_h, grad_log10_h):
        z, log10_h = ctx.saved_tensors
        dh, dlog_h = ops._entropy_gradients(z, log10_h)
        return grad_h.unsqueeze(1) * dh + (grad_log10_h / math.log(10)).unsqueeze(1) * dlog_h


def confident_logits(margins, classes, rng):
    """One row per margin: the maximum ``margin`` above the next logit, placed anywhere."""
    rows = torch.from_numpy(rng.normal(size=(len(margins), classes)))
    rows[:, 0] = 0.0
    rows[:, 1:] = -torch.tensor(margins, dtype=torch.float64)[:, None] - rows[:, 1:].abs()
    return rows[:, torch.from_numpy(rng.permutation(classes))]


def test_gradient_formula_passes_gradcheck_in_float64(rng):
    ordinary = torch.from_numpy(rng.normal(size=(6, 5)) * 3)
    ties = torch.tensor([[1.0, 1.0, 0.0, -2.0, 0.5], [2.0, 2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    confident = confident_logits([3.0, 8.0], 5, rng)  # beyond, finite differences of float64 are too coarse
    z = torch.cat([ordinary, ties, confident]).requires_grad_()
    assert torch.autograd.gradcheck(EntropyWithOpGradient.apply, (z,), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_op_gradient_matches_float64_autograd(rng, dtype):
    z = torch.cat([torch.from_numpy(rng.normal(size=(40, 17)) * 4), confident_logits([4.0, 8.0], 17, rng)])
    z = z.to(dtype)
    upstream_h, upstream_log10 = torch.from_numpy(rng.normal(size=(2, len(z))))
    leaf = z.clone().requires_grad_()
    h, log10_h = ops.entropy(leaf)
    assert h.requires_grad and log10_h.requires_grad
    (h.double() @ upstream_h + log10_h.double() @ upstream_log10).backward()

    exact = z.double().requires_grad_()
    want_h, want_log10 = textbook_entropy64(exact)
    (want_h @ upstream_h + want_log10 @ upstream_log10).backward()
    assert leaf.grad.dtype == dtype
    scale = exact.grad.abs().amax(dim=1, keepdim=True)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2  # the gradient is rounded to the logits' dtype
    assert torch.all((leaf.grad.double() - exact.grad).abs() <= tolerance * scale)


def test_gradient_of_confident_rows_matches_high_precision(rng):
    """Margins where float64 autograd cannot serve as the reference: the op's gradient of
    log10 H against central differences at 400 digits."""
    z = confident_logits([15.0, 30.0, 120.0, 700.0], 6, rng).float()
    leaf = z.clone().requires_grad_()
    ops.entropy(leaf)[1].sum().backward()
    for row, grad in zip(z.double().tolist(), leaf.grad.double()):
        want = []
        with mpmath.workdps(400):
            step = mpmath.mpf("1e-30")
            for j in range(len(row)):
                up, down = list(row), list(row)
                up[j] = mpmath.mpf(row[j]) + step
                down[j] = mpmath.mpf(row[j]) - step
                want.append(float((mp_log10_entropy(up) - mp_log10_entropy(down)) / (2 * step)))
        torch.testing.assert_close(grad, torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_gradient_of_log10_entropy_is_finite_where_entropy_underflows():
    """Margin 1000: H is 0 even in float64, but log10 H is finite and so is its gradient;
    for [0, -a, -a - 1] with large a it tends to 1 / (1 + 1/e) / ln 10 on the second logit."""
    z = torch.tensor([[0.0, -1000.0, -1001.0]], requires_grad=True)
    _, log10_h = ops.entropy(z)
    log10_h.sum().backward()
    grad = z.grad[0].double()
    assert torch.isfinite(grad).all()
    assert grad.sum().abs() < 1e-7
    assert grad[1].item() == pytest.approx(1 / (1 + math.exp(-1)) / math.log(10), rel=2e-3)


def test_outputs_need_grad_only_when_logits_do(rng):
    z = torch.from_numpy(rng.normal(size=(4, 6))).float()
    assert not any(t.requires_grad for t in ops.entropy(z))
    with torch.no_grad():
        assert not any(t.requires_grad for t in ops.entropy(z.requires_grad_()))


def test_opcheck_with_autograd():
    torch.library.opcheck(torch.ops.proxyfast.entropy.default, (torch.randn(7, 5, requires_grad=True),))


def test_entropy_compiles_without_graph_breaks(rng):
    z = torch.from_numpy(rng.normal(size=(64, 10))).float()

    def scores(logits):
        return ops.entropy(logits * 2.0)

    explanation = torch._dynamo.explain(scores)(z)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(scores, fullgraph=True, backend="aot_eager")
    got = compiled(z)
    want = scores(z)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_compiled_entropy_still_refuses_non_finite_logits():
    compiled = torch.compile(lambda z: ops.entropy(z), fullgraph=True)
    good = torch.zeros(3, 4)
    assert torch.allclose(compiled(good)[0], torch.full((3,), math.log(4)))
    bad = good.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(RuntimeError, match="logits has non-finite values"):
        compiled(bad)
    with pytest.raises(ValueError, match=r"logits has non-finite values .* rows \[1\]"):
        ops.entropy(bad)


def test_compiled_entropy_gradient_matches_eager(rng):
    z = torch.from_numpy(rng.normal(size=(16, 9)) * 3).float()
    compiled = torch.compile(lambda logits: ops.entropy(logits)[1].sum(), fullgraph=True, backend="aot_eager")
    leaf = z.clone().requires_grad_()
    compiled(leaf).backward()
    eager = z.clone().requires_grad_()
    ops.entropy(eager)[1].sum().backward()
    torch.testing.assert_close(leaf.grad, eager.grad)


def test_fused_supernet_compiles_without_graph_breaks():
    """fullgraph=True raises at the first graph break; a normal and a reduction cell."""
    torch.manual_seed(0)
    sizes = dict(channels=4, num_classes=10, layers=2, steps=2, multiplier=2, impl="fused")
    eager_net = SearchNetwork(**sizes)
    compiled_net = SearchNetwork(**sizes)
    compiled_net.load_state_dict(eager_net.state_dict())
    images = torch.randn(2, 3, 16, 16)

    compiled = torch.compile(compiled_net, fullgraph=True, backend="aot_eager")
    want = eager_net(images)
    got = compiled(images)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.square().sum().backward()
    want.square().sum().backward()
    for (name, a), (_, b) in zip(compiled_net.named_parameters(), eager_net.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, a), (_, b) in zip(compiled_net.named_buffers(), eager_net.named_buffers()):
        torch.testing.assert_close(a, b, msg=name)
