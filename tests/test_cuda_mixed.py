"""The CUDA mixed-edge kernels against the CPU ones (themselves checked against the
reference mixed op in test_fused_mixed.py) on the same inputs, and the fused supernet
on the GPU against the reference one.

Tolerances, relative to the largest magnitude of the CPU result: fp64 1e-12; fp32 1e-5
(the devices sum in different orders, and the batch-norm backward subtracts means of
such sums); fp16 and bf16 one unit in the last place of that magnitude (2^-10, 2^-7: a
different fp32 sum may round to the neighbouring value). The weight gradients and the
batch statistics are fp32 or fp64 whatever the input: 1e-5 (1e-12 for fp64 inputs).
"""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from proxyfast import nas, ops
from proxyfast.nas.genotypes import PRIMITIVES
from proxyfast.nas.mixed import MixedOp
from proxyfast.nas.supernet import SearchNetwork

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: torch.cuda.is_available() is False"),
]

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
RELATIVE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


@pytest.fixture
def seed(rng):
    torch.manual_seed(int(rng.integers(2**31)))


def assert_close_relative(got, want, dtype, name):
    want = want.double().cpu()
    scale = want.abs().max().item() or 1.0
    error = (got.double().cpu() - want).abs().max().item() / scale
    assert error <= RELATIVE[dtype], f"{name}: relative error {error:.3g} > {RELATIVE[dtype]:.3g}"


B, R, N = ops.NORM_BATCH, ops.NORM_RUNNING, ops.NORM_NONE
# Per term (max pool, avg pool, then four branches): training, eval, and a mixture.
NORM_MODES = {"train": [B, B, B, B, B, N], "eval": [R, R, R, R, R, N], "mixed": [B, R, N, B, R, B]}


def edge_inputs(shape, stride, dtype, branches=4):
    n, c, h, w = shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    x = torch.randn(n, c, h, w).to(dtype)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    weights = F.softmax(torch.randn(8, dtype=acc), dim=-1)
    outs = [(torch.randn(n, c, ho, wo) * 2 + 1).to(dtype) for _ in range(branches)]
    running = torch.rand(2 * (2 + branches), c, dtype=torch.float64) + 0.5
    running[0::2] -= 1.0  # means around 0, variances in [0.5, 1.5)
    return x, weights, outs, running


def run_edge(device, x, weights, branches, running, stride, modes, grad):
    x = x.to(device).requires_grad_()
    weights = weights.to(device).requires_grad_()
    branches = [b.to(device).requires_grad_() for b in branches]
    out, stats = ops.mixed_edge(x, weights, branches, [4, 5, 6, 7][:len(branches)],
                                skip_slot=3 if stride == 1 else -1, max_pool_slot=1, avg_pool_slot=2, stride=stride,
                                norm_modes=NORM_MODES[modes][:2 + len(branches)], running_stats=running.to(device))
    grads = torch.autograd.grad(out, [x, weights, *branches], grad.to(device))
    return out, stats, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("modes", sorted(NORM_MODES))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(4, 6, 9, 7), (8, 16, 32, 32), (3, 5, 1, 13)])
def test_cuda_edge_matches_cpu(shape, stride, modes, dtype, seed):
    x, weights, branches, running = edge_inputs(shape, stride, dtype)
    grad = torch.randn(shape[0], shape[1], (shape[2] - 1) // stride + 1, (shape[3] - 1) // stride + 1).to(dtype)
    got = run_edge("cuda", x, weights, branches, running, stride, modes, grad)
    want = run_edge("cpu", x, weights, branches, running, stride, modes, grad)
    assert got[0].device.type == "cuda" and got[0].dtype == dtype
    assert_close_relative(got[0], want[0], dtype, "output")
    accumulation = torch.float64 if dtype == torch.float64 else torch.float32
    assert_close_relative(got[1], want[1], accumulation, "statistics")
    names = ["x grad", "weight grads", *(f"branch {b} grad" for b in range(len(branches)))]
    for name, g, w in zip(names, got[2], want[2]):
        assert_close_relative(g, w, accumulation if name == "weight grads" else dtype, name)


def test_cuda_max_pool_ties_route_like_the_cpu(seed):
    # Integer values tie in most windows; the gradient must reach the same (first) maximum.
    x = torch.randint(0, 3, (4, 3, 11, 10)).double()
    _, weights, _, running = edge_inputs((4, 3, 11, 10), 1, torch.float64, branches=0)
    grad = torch.randn(4, 3, 11, 10, dtype=torch.float64)
    got = run_edge("cuda", x, weights, [], running, 1, "train", grad)
    want = run_edge("cpu", x, weights, [], running, 1, "train", grad)
    torch.testing.assert_close(got[2][0].cpu(), want[2][0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_running_update_matches_cpu(dtype, seed):
    mean, var = torch.randn(7, dtype=torch.float64), torch.rand(7, dtype=torch.float64)
    running = [torch.randn(7).to(dtype), (torch.rand(7) + 0.5).to(dtype)]
    on_gpu = [t.cuda() for t in running]
    ops.batch_norm_running_update(*running, mean, var, 0.1, 50)
    ops.batch_norm_running_update(*on_gpu, mean.cuda(), var.cuda(), 0.1, 50)
    for a, b in zip(on_gpu, running):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=0)


def test_cuda_results_are_deterministic(seed):
    x, weights, branches, running = edge_inputs((16, 8, 33, 31), 1, torch.float32)
    grad = torch.randn(16, 8, 33, 31)
    first = run_edge("cuda", x, weights, branches, running, 1, "train", grad)
    second = run_edge("cuda", x, weights, branches, running, 1, "train", grad)
    for a, b in zip([first[0], first[1], *first[2]], [second[0], second[1], *second[2]]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("stride", [1, 2])
def test_cuda_mixed_op_matches_reference(stride, seed):
    reference = MixedOp(8, stride, impl="reference").cuda()
    fused = copy.deepcopy(reference)
    fused.impl, fused._impl = "fused", nas.mixed._lookup("fused")
    x = torch.randn(6, 8, 15, 15, device="cuda")
    alphas = torch.randn(len(PRIMITIVES), device="cuda")
    results = []
    for op in (reference, fused):
        xi, ai = x.clone().requires_grad_(), alphas.clone().requires_grad_()
        out = op(xi, F.softmax(ai, dim=-1))
        out.square().sum().backward()
        results.append((out, xi.grad, ai.grad, *[p.grad for p in op.parameters()]))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * a.abs().max().item())
    for a, b in zip(reference.modules(), fused.modules()):
        if isinstance(a, nn.BatchNorm2d):
            torch.testing.assert_close(b.running_mean, a.running_mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(b.running_var, a.running_var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("partial_channels", [None, 4], ids=["darts", "pc-darts"])
def test_cuda_supernet_step_fused_equals_reference(partial_channels, seed):
    init_seed = int(torch.randint(2**31, ()).item())
    models = []
    for impl in ("reference", "fused"):
        torch.manual_seed(init_seed)
        models.append(SearchNetwork(channels=8, num_classes=10, layers=5, in_channels=3,
                                    partial_channels=partial_channels, impl=impl).cuda())
    x, target = torch.randn(16, 3, 32, 32, device="cuda"), torch.randint(0, 10, (16,), device="cuda")
    losses, grads = [], []
    for model in models:
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad for p in model.arch_parameters()])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4 * a.abs().max().item())


def raw_edge_args(shape, stride, dtype, modes, device):
    """The op's own arguments for torch.ops.proxyfast.mixed_edge."""
    x, weights, branches, running = edge_inputs(shape, stride, dtype)
    free = [3 if stride == 1 else -1, 1, 2]
    return [x.to(device), weights.to(device), [b.to(device) for b in branches], [4, 5, 6, 7], free, stride,
            NORM_MODES[modes], [1e-5] * 6, running.to(device)]


def on_cuda(args):
    """The op's arguments with every tensor (also in a list of them) moved to the GPU."""
    def move(a):
        if isinstance(a, torch.Tensor):
            return a.cuda()
        if isinstance(a, list) and a and isinstance(a[0], torch.Tensor):
            return [t.cuda() for t in a]
        return a
    return [move(a) for a in args]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_cuda_non_finite_statistics_match_cpu(bad, seed):
    """A NaN or inf value makes its channel's batch statistics NaN on both devices (on the
    GPU a clamped variance used to stay finite, hiding a diverging search)."""
    args = raw_edge_args((3, 4, 6, 5), 1, torch.float32, "train", "cpu")
    args[0][1, 2, 4, 3] = bad
    _, want = torch.ops.proxyfast.mixed_edge(*args)
    _, got = torch.ops.proxyfast.mixed_edge(*on_cuda(args))
    assert torch.equal(torch.isnan(got.cpu()), torch.isnan(want)) and bool(torch.isnan(want[3, 2]))


def test_cuda_more_than_65535_channels(seed):
    args = raw_edge_args((2, 65_537, 1, 2), 1, torch.float32, "train", "cpu")
    want_out, want_stats = torch.ops.proxyfast.mixed_edge(*args)
    got_out, got_stats = torch.ops.proxyfast.mixed_edge(*on_cuda(args))
    assert_close_relative(got_stats, want_stats, torch.float32, "statistics")
    assert torch.equal(torch.isnan(got_out.cpu()), torch.isnan(want_out))


def test_cuda_running_update_without_channels():
    empty = [torch.empty(0, device="cuda"), torch.empty(0, device="cuda"),
             torch.empty(0, dtype=torch.float64, device="cuda"), torch.empty(0, dtype=torch.float64, device="cuda")]
    torch.ops.proxyfast.batch_norm_running_update(*empty, 0.1, 50)
    torch.cuda.synchronize()


def test_cuda_running_update_refuses_a_host_variance():
    running = [torch.zeros(4, device="cuda"), torch.ones(4, device="cuda")]
    mean, var = torch.zeros(4, dtype=torch.float64, device="cuda"), torch.ones(4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="on one device"):
        torch.ops.proxyfast.batch_norm_running_update(*running, mean, var, 0.1, 50)
    torch.cuda.synchronize()  # the context is still sound


def test_cuda_edge_errors_match_cpu(seed):
    args = raw_edge_args((2, 3, 5, 5), 1, torch.float32, "train", "cpu")
    for index, value in [(0, torch.randn(2, 3, 5)), (1, torch.ones(8).double()), (3, [4, 5, 6, 6]), (5, 3),
                         (6, [0, 1, 0, 0, 0, 0]), (7, [1e-5] * 5)]:
        changed = list(args)
        changed[index] = value
        messages = []
        for call_args in (changed, on_cuda(changed)):
            with pytest.raises(RuntimeError) as error:
                torch.ops.proxyfast.mixed_edge(*call_args)
            messages.append(str(error.value).splitlines()[0])
        assert messages[0] == messages[1]
