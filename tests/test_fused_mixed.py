"""The fused mixed op (``impl="fused"``, ``proxyfast.ops.mixed_edge``) against the
reference mixed op, on fresh random inputs.

Tolerances. Both implementations run on the same rounded inputs and are compared with
a float64 evaluation of the same modules, relative to that result's largest magnitude.
The fused result must be within FLOOR[dtype] of it, or, where the reference itself is
further off (a batch norm over a handful of values is ill-conditioned), within 4x the
reference's own error: fp32 1e-5, fp16 4e-3, bf16 3e-2 (a few units in the last place
of the output's largest values; the reference rounds every candidate's output and every
partial sum, the fused op rounds once).
"""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from proxyfast import nas, ops
from proxyfast.nas.fused import fused_mixed
from proxyfast.nas.genotypes import PRIMITIVES
from proxyfast.nas.mixed import MixedOp, PartialMixedOp, default_mixed_impl, reference_mixed
from proxyfast.nas.supernet import SearchNetwork

FLOOR = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float64: 1e-12}
LOW_PRECISION = (torch.float16, torch.bfloat16)


@pytest.fixture
def seed(rng):
    torch.manual_seed(int(rng.integers(2**31)))


def _batch_norms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def _randomize_running_stats(module: nn.Module) -> None:
    with torch.no_grad():
        for bn in _batch_norms(module):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)


def _with_impl(module: nn.Module, impl: str) -> nn.Module:
    copied = copy.deepcopy(module)
    for m in copied.modules():
        if isinstance(m, MixedOp):
            m.impl, m._impl = impl, nas.mixed._lookup(impl)
    return copied


def _assert_as_accurate(name, fused, reference, truth, dtype):
    truth = truth.double()
    scale = truth.abs().max().clamp_min(1e-300)
    fused_error = ((fused.double() - truth).abs().max() / scale).item()
    reference_error = ((reference.double() - truth).abs().max() / scale).item()
    bound = max(FLOOR[dtype], 4 * reference_error)
    assert fused_error <= bound, (f"{name}: fused error {fused_error:.3g} > {bound:.3g} "
                                  f"(reference error {reference_error:.3g})")


def _run_edge(op: nn.Module, x: torch.Tensor, alphas: torch.Tensor, grad: torch.Tensor):
    """Output, and gradients of <output, grad> for x, the alphas and every parameter."""
    x = x.detach().clone().requires_grad_()
    alphas = alphas.detach().clone().requires_grad_()
    out = op(x, F.softmax(alphas, dim=-1))
    (out * grad.to(out.dtype)).sum().backward()
    return out.detach(), x.grad, alphas.grad, [p.grad for p in op.parameters()]


# The edge against the reference mixed op


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(4, 6, 9, 7), (2, 4, 8, 8), (3, 2, 5, 12)])
def test_edge_matches_reference(shape, stride, training, dtype, seed):
    channels = shape[1]
    reference = MixedOp(channels, stride, impl="reference").to(dtype)
    _randomize_running_stats(reference)
    fused = _with_impl(reference, "fused")
    truth = _with_impl(reference, "reference").double()
    for m in (reference, fused, truth):
        m.train(training)
    assert fused.impl == "fused"

    x = torch.randn(shape).to(dtype)
    alphas = torch.randn(len(PRIMITIVES))
    out_shape = (shape[0], channels, (shape[2] - 1) // stride + 1, (shape[3] - 1) // stride + 1)
    grad = torch.randn(out_shape).to(dtype)
    results = {name: _run_edge(m, x.to(m_dtype), alphas.to(m_dtype), grad.to(m_dtype))
               for name, m, m_dtype in (("reference", reference, dtype), ("fused", fused, dtype),
                                        ("truth", truth, torch.float64))}
    assert results["fused"][0].dtype == dtype and results["fused"][0].shape == out_shape

    names = ["output", "x grad", "alpha grad"]
    for i, name in enumerate(names):
        _assert_as_accurate(name, results["fused"][i], results["reference"][i], results["truth"][i], dtype)
    for k, (pf, pr, pt) in enumerate(zip(*(results[n][3] for n in ("fused", "reference", "truth")))):
        _assert_as_accurate(f"parameter {k} grad", pf, pr, pt, dtype)
    for bf, br, bt in zip(*(_batch_norms(m) for m in (fused, reference, truth))):
        assert torch.equal(bf.num_batches_tracked, br.num_batches_tracked)
        _assert_as_accurate("running_mean", bf.running_mean, br.running_mean, bt.running_mean, dtype)
        _assert_as_accurate("running_var", bf.running_var, br.running_var, bt.running_var, dtype)


@pytest.mark.parametrize("stride", [1, 2])
def test_fp32_edge_is_tight_against_float64(stride, seed):
    # A well-conditioned size: the fused fp32 edge within 2e-6 of float64 everywhere.
    reference = MixedOp(8, stride, impl="reference")
    fused = _with_impl(reference, "fused")
    truth = _with_impl(reference, "reference").double()
    x, alphas = torch.randn(8, 8, 11, 10), torch.randn(len(PRIMITIVES))
    grad = torch.randn(8, 8, 11 if stride == 1 else 6, 10 if stride == 1 else 5)
    got = _run_edge(fused, x, alphas, grad)
    want = _run_edge(truth, x.double(), alphas.double(), grad.double())
    for a, b in zip([*got[:3], *got[3]], [*want[:3], *want[3]]):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=2e-6 * b.abs().max().item())
    for bf, bt in zip(_batch_norms(fused), _batch_norms(truth)):
        torch.testing.assert_close(bf.running_mean.double(), bt.running_mean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(bf.running_var.double(), bt.running_var, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None], ids=["0.1", "0.5", "cumulative"])
def test_running_statistics_follow_pytorch(momentum, seed):
    reference = MixedOp(4, 1, impl="reference").double()
    for bn in _batch_norms(reference):
        bn.momentum = momentum
    fused = _with_impl(reference, "fused")
    weights = F.softmax(torch.randn(len(PRIMITIVES), dtype=torch.float64), dim=-1)
    for _ in range(3):  # num_batches_tracked drives the cumulative average
        x = torch.randn(3, 4, 7, 6, dtype=torch.float64)
        torch.testing.assert_close(fused(x, weights), reference(x, weights), rtol=1e-12, atol=1e-12)
    for bf, br in zip(_batch_norms(fused), _batch_norms(reference)):
        assert bf.num_batches_tracked.item() == br.num_batches_tracked.item() == 3
        torch.testing.assert_close(bf.running_mean, br.running_mean, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(bf.running_var, br.running_var, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norms_without_running_statistics(training, seed):
    # track_running_stats=False: batch statistics in eval too, and nothing to update.
    reference = MixedOp(4, 2, impl="reference").double()
    for op in reference.ops:
        if isinstance(op, nn.Sequential) and isinstance(op[-1], nn.BatchNorm2d):
            op[-1] = nn.BatchNorm2d(4, affine=False, track_running_stats=False).double()
    fused = _with_impl(reference, "fused").train(training)
    reference.train(training)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    weights = F.softmax(torch.randn(len(PRIMITIVES), dtype=torch.float64), dim=-1)
    torch.testing.assert_close(fused(x, weights), reference(x, weights), rtol=1e-12, atol=1e-12)


def test_pool_ties_route_the_gradient_like_pytorch(seed):
    # Integer-valued inputs tie in most windows: the max pool's gradient must go to the
    # first maximum, as in PyTorch, or the x gradients differ by whole units.
    reference = MixedOp(3, 1, ["max_pool_3x3", "skip_connect"], impl="reference").double()
    fused = _with_impl(reference, "fused")
    x = torch.randint(0, 3, (2, 3, 7, 8)).double()
    alphas, grad = torch.randn(2, dtype=torch.float64), torch.randn(2, 3, 7, 8, dtype=torch.float64)
    for a, b in zip(_run_edge(fused, x, alphas, grad)[:3], _run_edge(reference, x, alphas, grad)[:3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("primitives", [
    ("max_pool_3x3",), ("avg_pool_3x3", "none"), ("skip_connect", "sep_conv_3x3"), ("none", "dil_conv_3x3"),
    ("dil_conv_5x5", "avg_pool_3x3", "max_pool_3x3"),
], ids=lambda p: "+".join(p))
@pytest.mark.parametrize("stride", [1, 2])
def test_any_subset_of_the_operations(primitives, stride, seed):
    if stride == 2 and primitives == ("skip_connect", "sep_conv_3x3"):
        primitives = ("skip_connect", "none")  # FactorizedReduce: a branch
    reference = MixedOp(4, stride, primitives, impl="reference").double()
    fused = _with_impl(reference, "fused")
    x = torch.randn(3, 4, 9, 6, dtype=torch.float64)
    alphas = torch.randn(len(primitives), dtype=torch.float64)
    out = reference(x, F.softmax(alphas, dim=-1))
    grad = torch.randn_like(out)
    for a, b in zip(_run_edge(fused, x, alphas, grad)[:3], _run_edge(reference, x, alphas, grad)[:3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_modules_outside_the_kernel_run_as_branches(seed):
    # A pool the kernel does not compute (count_include_pad=True) and a module it does not
    # know are computed as modules and weighed in; the sum stays the reference's, also
    # when they replace modules of an edge that already ran.
    reference = MixedOp(4, 1, impl="reference").double()
    fused = _with_impl(reference, "fused")
    x, alphas = torch.randn(2, 4, 6, 5, dtype=torch.float64), torch.randn(len(PRIMITIVES), dtype=torch.float64)
    grad = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    _run_edge(fused, x, alphas, grad)
    for op in (reference, fused):
        op.ops[PRIMITIVES.index("avg_pool_3x3")][0] = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=True)
        op.ops[PRIMITIVES.index("none")] = nn.Tanh()
    for a, b in zip(_run_edge(fused, x, alphas, grad)[:3], _run_edge(reference, x, alphas, grad)[:3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_hooked_modules_are_called(seed):
    # The kernel replaces modules it would otherwise call; a module with hooks is called.
    reference = MixedOp(4, 1, impl="reference").double()
    fused = _with_impl(reference, "fused")
    x, weights = torch.randn(2, 4, 6, 6, dtype=torch.float64), F.softmax(torch.randn(8, dtype=torch.float64), 0)
    fused(x, weights)  # hooks registered after a first call count too
    calls = []
    for op in (fused.ops[PRIMITIVES.index("sep_conv_3x3")], fused.ops[PRIMITIVES.index("max_pool_3x3")][1]):
        op.register_forward_hook(lambda module, inputs, output: calls.append(type(module).__name__))
    torch.testing.assert_close(fused(x, weights), reference(x, weights), rtol=1e-12, atol=1e-12)
    assert sorted(calls) == ["BatchNorm2d", "SepConv"]


def test_channels_last_and_non_contiguous_inputs(seed):
    reference = MixedOp(4, 1, impl="reference")
    fused = _with_impl(reference, "fused")
    base = torch.randn(2, 8, 9, 9)
    weights = F.softmax(torch.randn(len(PRIMITIVES)), dim=-1)
    for x in (base[:, :4], base[:, :4].contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(fused(x, weights), reference(x, weights), rtol=1e-5, atol=1e-5)


def test_partial_channel_edge_uses_the_fused_op(seed):
    reference = PartialMixedOp(8, 2, k=4, impl="reference")
    fused = PartialMixedOp(8, 2, k=4, impl="fused")
    fused.load_state_dict(reference.state_dict())
    assert fused.mixed.impl == "fused"
    x, alphas = torch.randn(3, 8, 9, 9), torch.randn(len(PRIMITIVES))
    grad = torch.randn(3, 8, 5, 5)
    for a, b in zip(_run_edge(fused, x, alphas, grad)[:3], _run_edge(reference, x, alphas, grad)[:3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_fused_is_the_default_where_the_extension_is_built():
    assert "fused" in nas.available_mixed_impls()
    assert default_mixed_impl() == "fused"
    assert MixedOp(4, 1).impl == "fused"
    model = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2)
    assert {edge.impl for cell in model.cells for edge in cell.edges} == {"fused"}
    pc = SearchNetwork(channels=8, layers=3, in_channels=1, steps=2, multiplier=2, partial_channels=4)
    assert {edge.mixed.impl for cell in pc.cells for edge in cell.edges} == {"fused"}


def test_inputs_without_a_kernel_take_the_reference_path(seed):
    ops_list = MixedOp(2, 1, impl="reference").ops.double()
    weights = F.softmax(torch.randn(len(PRIMITIVES), dtype=torch.float64), dim=-1)
    empty = torch.empty(0, 2, 5, 5, dtype=torch.float64)
    assert fused_mixed(empty, weights, ops_list).shape == (0, 2, 5, 5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):  # batch norm's own error
        fused_mixed(torch.randn(1, 2, 1, 1, dtype=torch.float64), weights, ops_list)


# The operator itself

B, R, N = ops.NORM_BATCH, ops.NORM_RUNNING, ops.NORM_NONE
# Per term (max pool, avg pool, then three branches): training, eval, and a mixture.
NORM_MODES = {"train": [B, B, N, B, B], "eval": [R, R, N, R, R], "mixed": [R, B, B, N, R]}


def _op_inputs(shape=(3, 4, 7, 6), stride=1, dtype=torch.float64, requires_grad=True):
    n, c, h, w = shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    x = torch.randn(n, c, h, w, dtype=dtype, requires_grad=requires_grad)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    weights = F.softmax(torch.randn(8, dtype=acc), dim=-1).requires_grad_(requires_grad)
    branches = [(torch.randn(n, c, ho, wo) * 2 + 1).to(dtype).requires_grad_(requires_grad) for _ in range(3)]
    running = torch.randn(10, c, dtype=torch.float64)
    running[1::2] = running[1::2].abs() + 0.5  # variances
    return x, weights, branches, running


def _edge_args(stride, modes, running):
    return dict(branch_slots=[4, 6, 7], skip_slot=3 if stride == 1 else -1, max_pool_slot=1, avg_pool_slot=2,
                stride=stride, norm_modes=NORM_MODES[modes], running_stats=running)


def _functional_edge(x, weights, branches, stride, modes, running):
    """The edge written with torch.nn.functional, term by term."""
    def bn(values, term):
        mode = NORM_MODES[modes][term]
        if mode == N:
            return values
        mean, var = (None, None) if mode == B else (running[2 * term].to(values), running[2 * term + 1].to(values))
        return F.batch_norm(values, mean, var, training=mode == B)

    out = weights[1] * bn(F.max_pool2d(x, 3, stride, 1), 0)
    out = out + weights[2] * bn(F.avg_pool2d(x, 3, stride, 1, count_include_pad=False), 1)
    for b, (slot, branch) in enumerate(zip([4, 6, 7], branches)):
        out = out + weights[slot] * bn(branch, 2 + b)
    return out + weights[3] * x if stride == 1 else out


@pytest.mark.parametrize("modes", sorted(NORM_MODES))
@pytest.mark.parametrize("stride", [1, 2])
def test_op_matches_the_functional_edge(stride, modes, seed):
    x, weights, branches, running = _op_inputs((3, 4, 9, 6), stride)
    out, stats = ops.mixed_edge(x, weights, branches, **_edge_args(stride, modes, running))
    want = _functional_edge(x, weights, branches, stride, modes, running)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, weights, *branches], grad)
    expected = torch.autograd.grad(want, [x, weights, *branches], grad)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert stats.shape == (10, 4)
    for term, mode in enumerate(NORM_MODES[modes]):
        if mode == R:
            torch.testing.assert_close(stats[2 * term:2 * term + 2], running[2 * term:2 * term + 2], rtol=0, atol=0)
        elif mode == N:
            assert not stats[2 * term:2 * term + 2].any()


@pytest.mark.parametrize("modes", sorted(NORM_MODES))
@pytest.mark.parametrize("stride", [1, 2])
def test_op_gradients_match_finite_differences(stride, modes, seed):
    x, weights, branches, running = _op_inputs((2, 3, 5, 4), stride)

    def edge(x, weights, *branches):
        return ops.mixed_edge(x, weights, branches, **_edge_args(stride, modes, running))[0]

    assert torch.autograd.gradcheck(edge, (x, weights, *branches), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_op_plain_branch_gradients_are_the_weighted_output_gradient(seed):
    x, weights, branches, _ = _op_inputs()
    out, _ = ops.mixed_edge(x, weights, branches, [4, 5, 6], skip_slot=3, max_pool_slot=1, avg_pool_slot=2)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [weights, *branches], grad)
    for slot, branch, g in zip([4, 5, 6], branches, got[1:]):
        torch.testing.assert_close(g, weights[slot].detach() * grad, rtol=0, atol=0)
        torch.testing.assert_close(got[0][slot], (grad * branch).sum(), rtol=1e-12, atol=1e-12)
    assert got[0][0] == 0 and got[0][7] == 0  # unused slots ("none")


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("stride", [1, 2])
def test_low_precision_is_the_fp32_computation_rounded_once(dtype, stride, seed):
    x, weights, branches, running = _op_inputs((3, 4, 9, 8), stride, dtype=dtype, requires_grad=False)
    args = _edge_args(stride, "mixed", running)
    low, low_stats = ops.mixed_edge(x, weights, branches, **args)
    high, high_stats = ops.mixed_edge(x.float(), weights, [b.float() for b in branches], **args)
    assert low.dtype == dtype
    assert torch.equal(low, high.to(dtype))
    torch.testing.assert_close(low_stats, high_stats, rtol=0, atol=0)


def test_results_do_not_depend_on_the_thread_count(seed):
    x, weights, branches, running = _op_inputs((4, 6, 13, 11), 1, dtype=torch.float32)
    threads = torch.get_num_threads()

    def run():
        out, stats = ops.mixed_edge(x, weights, branches, **_edge_args(1, "train", running))
        return (out, stats, *torch.autograd.grad(out, [x, weights, *branches], torch.ones_like(out)))

    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        many = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many):
        assert torch.equal(a, b)


@pytest.mark.parametrize("modes", sorted(NORM_MODES))
def test_opcheck(modes, seed):
    x, weights, branches, running = _op_inputs((2, 3, 5, 6), 2, dtype=torch.float32)
    args = (x, weights, branches, [4, 5, 6], [-1, 1, 2], 2, NORM_MODES[modes], [1e-5, 1e-3, 1e-5, 1e-4, 1e-5],
            running)
    torch.library.opcheck(torch.ops.proxyfast.mixed_edge.default, args)
    mean, var = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    torch.library.opcheck(torch.ops.proxyfast.batch_norm_running_update.default,
                          (torch.zeros(3), torch.ones(3), mean, var, 0.1, 10))


def test_double_backward_is_a_clear_error(seed):
    x, weights, branches, _ = _op_inputs()
    out, _ = ops.mixed_edge(x, weights, branches, [4, 5, 6], skip_slot=3, max_pool_slot=1, avg_pool_slot=2)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(out.sum(), x, create_graph=True)


def test_running_update_matches_batch_norm(seed):
    x = torch.randn(4, 3, 5, 5)
    bn = nn.BatchNorm2d(3, affine=False, momentum=0.3)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
    bn(x)
    flat = x.double().transpose(0, 1).reshape(3, -1)
    ops.batch_norm_running_update(running_mean, running_var, flat.mean(1), flat.var(1, unbiased=False), 0.3,
                                  flat.shape[1])
    torch.testing.assert_close(running_mean, bn.running_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(running_var, bn.running_var, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("change, error, message", [
    (dict(x=torch.randn(3, 4, 5)), ValueError, "x must be 4-D"),
    (dict(x=torch.ones(2, 4, 5, 5, dtype=torch.int64)), TypeError, "x must be float32"),
    (dict(stride=3), ValueError, "stride must be 1 or 2"),
    (dict(branches=[torch.randn(2, 4, 4, 5)]), ValueError, r"branches\[0\] must have shape"),
    (dict(branches=[torch.randn(2, 4, 5, 5, dtype=torch.float64)]), TypeError, r"branches\[0\] must be"),
    (dict(branch_slots=[8]), ValueError, "slots must be distinct indices"),
    (dict(branch_slots=[1]), ValueError, "slots must be distinct indices"),
    (dict(stride=2, branches=[torch.randn(2, 4, 3, 3)]), ValueError, "skip_slot"),
    (dict(norm_modes=[1, 1]), ValueError, "one value per term"),
    (dict(norm_modes=[0, 1, 0]), ValueError, "a pool is always normalised"),
    (dict(norm_modes=[1, 1, 3]), ValueError, "norm_modes must be"),
    (dict(eps=[0.0, 1e-5, 1e-5]), ValueError, "eps must be positive"),
    (dict(norm_modes=[2, 1, 0]), ValueError, "running_stats must be"),
    (dict(x=torch.randn(1, 4, 1, 1), branches=[torch.randn(1, 4, 1, 1)]), ValueError, "more than 1 value"),
])
def test_bad_arguments_are_clear_errors(change, error, message):
    args = dict(x=torch.randn(2, 4, 5, 5), weights=torch.rand(8), branches=[torch.randn(2, 4, 5, 5)],
                branch_slots=[4], skip_slot=3, max_pool_slot=1, avg_pool_slot=2, stride=1)
    args.update(change)
    with pytest.raises(error, match=message):
        ops.mixed_edge(**args)


def test_direct_operator_calls_are_checked():
    x = torch.randn(2, 4, 5, 5)
    op = torch.ops.proxyfast.mixed_edge.default
    with pytest.raises(RuntimeError, match="weight slot 1 is used twice"):
        op(x, torch.rand(8), [x], [1], [-1, 1, 2], 1, [1, 1, 0], [1e-5] * 3, None)
    with pytest.raises(RuntimeError, match="weights must be Float"):
        op(x, torch.rand(8, dtype=torch.float64), [], [], [3, 1, 2], 1, [1, 1], [1e-5] * 2, None)
    with pytest.raises(RuntimeError, match="running_stats is needed"):
        op(x, torch.rand(8), [], [], [3, 1, 2], 1, [2, 1], [1e-5] * 2, None)


# A whole supernet step


def _step(model, x, target):
    logits = model(x)
    loss = F.cross_entropy(logits, target)
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("partial_channels", [None, 4], ids=["darts", "pc-darts"])
def test_supernet_step_fused_equals_reference(partial_channels, seed):
    channels = 8 if partial_channels else 4
    init_seed = int(torch.randint(2**31, ()).item())
    torch.manual_seed(init_seed)
    reference = SearchNetwork(channels=channels, num_classes=5, layers=3, in_channels=3, steps=2, multiplier=2,
                              partial_channels=partial_channels, impl="reference")
    torch.manual_seed(init_seed)  # the same initialisation
    fused = SearchNetwork(channels=channels, num_classes=5, layers=3, in_channels=3, steps=2, multiplier=2,
                          partial_channels=partial_channels, impl="fused")
    for a, b in zip(reference.state_dict().values(), fused.state_dict().values()):
        assert torch.equal(a, b)
    x, target = torch.randn(4, 3, 11, 11), torch.randint(0, 5, (4,))
    got, want = _step(fused, x, target), _step(reference, x, target)
    torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
    for name, grad in want[2].items():
        torch.testing.assert_close(got[2][name], grad, rtol=1e-3, atol=1e-4 * grad.abs().max().item() + 1e-8,
                                   msg=lambda m: f"{name}: {m}")
    for (name, a), b in zip(reference.named_buffers(), fused.buffers()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    with torch.no_grad():  # and in eval mode, with the running statistics
        torch.testing.assert_close(fused.eval()(x), reference.eval()(x), rtol=1e-4, atol=1e-5)


def test_imagenet_stem_supernet_fused_equals_reference(seed):
    init_seed = int(torch.randint(2**31, ()).item())
    models = []
    for impl in ("reference", "fused"):
        torch.manual_seed(init_seed)
        models.append(SearchNetwork(channels=8, num_classes=5, layers=3, in_channels=3, steps=2, multiplier=2,
                                    stem="imagenet", partial_channels=4, impl=impl))
    x, target = torch.randn(2, 3, 224, 224), torch.randint(0, 5, (2,))
    want, got = (_step(m, x, target) for m in models)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
    for name in ("alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"):
        grad = want[2][name]
        torch.testing.assert_close(got[2][name], grad, rtol=1e-3, atol=1e-4 * grad.abs().max().item())


def test_architect_steps_fused_equal_reference(seed):
    init_seed = int(torch.randint(2**31, ()).item())
    models = []
    for impl in ("reference", "fused"):
        torch.manual_seed(init_seed)
        models.append(SearchNetwork(channels=4, num_classes=3, layers=3, in_channels=1, steps=2, multiplier=2,
                                    impl=impl).double())
    train = (torch.randn(4, 1, 7, 7, dtype=torch.float64), torch.randint(0, 3, (4,)))
    val = (torch.randn(4, 1, 7, 7, dtype=torch.float64), torch.randint(0, 3, (4,)))
    grads = []
    for model in models:
        architect = nas.Architect(model, order=2)
        loss, second = architect.unrolled_gradient(train, val, lr=0.05)
        first = torch.autograd.grad(architect._loss(val), architect.arch_params)
        grads.append((loss, *second, *first))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
