import pytest
import torch
from torch import nn
from torch.nn import functional as F

from proxyfast import nas
from proxyfast.nas.genotypes import DARTS_V2, GENOTYPES, PRIMITIVES, Genotype, get_genotype
from proxyfast.nas.mixed import MixedOp, PartialMixedOp, channel_shuffle, register_mixed_impl
from proxyfast.nas.operations import OPS
from proxyfast.nas.supernet import SearchNetwork, derive_cell, num_edges


@pytest.fixture
def seed(rng):
    torch.manual_seed(int(rng.integers(2**31)))


def _cell_outputs(model, x):
    outputs = []
    hooks = [cell.register_forward_hook(lambda m, i, o: outputs.append(o.shape)) for cell in model.cells]
    logits = model(x)
    for hook in hooks:
        hook.remove()
    return logits, outputs


# Operations


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("size", [8, 7])
def test_ops_keep_channels_and_halve_resolution(name, size, seed):
    x = torch.randn(2, 4, size, size)
    for stride, expected in ((1, size), (2, (size + 1) // 2)):
        assert OPS[name](4, stride, False)(x).shape == (2, 4, expected, expected)


# Shapes through the supernet


@pytest.mark.parametrize("size", [8, 14])
@pytest.mark.parametrize("partial_channels", [None, 4])
def test_cifar_stem_shapes_through_normal_and_reduction_cells(size, partial_channels, seed):
    model = SearchNetwork(channels=4, num_classes=10, layers=3, in_channels=3, partial_channels=partial_channels)
    assert [cell.reduction for cell in model.cells] == [False, True, True]
    logits, outputs = _cell_outputs(model, torch.randn(2, 3, size, size))
    half, quarter = (size + 1) // 2, ((size + 1) // 2 + 1) // 2
    # Four nodes concatenated; channels double at each reduction.
    assert outputs == [(2, 16, size, size), (2, 32, half, half), (2, 64, quarter, quarter)]
    assert logits.shape == (2, 10)


def test_imagenet_stem_takes_224_to_28(seed):
    model = SearchNetwork(channels=8, num_classes=5, layers=3, in_channels=3, steps=2, multiplier=2,
                          stem="imagenet", partial_channels=4)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        s0 = model.stem0(x)
        assert s0.shape == (2, 8, 56, 56)
        kept = s0.clone()
        assert model.stem1(s0).shape == (2, 8, 28, 28)
        assert torch.equal(s0, kept)  # the first cell reads s0 too
        logits, outputs = _cell_outputs(model, x)
    assert outputs == [(2, 16, 28, 28), (2, 32, 14, 14), (2, 64, 7, 7)]
    assert logits.shape == (2, 5)


def _conv_channels(stem: torch.nn.Module) -> list[tuple[int, int, int]]:
    return [(m.in_channels, m.out_channels, m.stride[0]) for m in stem.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("partial_channels, widths", [
    # model_search_imagenet.py of Na et al. (the proxy-data paper's DARTS): 3 -> 24 -> 48, then 48 -> 48.
    (None, [(3, 24, 2), (24, 48, 2), (48, 48, 2)]),
    # model_search_imagenet.py of PC-DARTS (Xu et al.): 3 -> 8 -> 16, then 16 -> 16.
    (4, [(3, 8, 2), (8, 16, 2), (16, 16, 2)]),
])
def test_imagenet_search_stem_widths_follow_each_method(partial_channels, widths, seed):
    model = SearchNetwork(channels=16, num_classes=5, layers=3, stem="imagenet", partial_channels=partial_channels)
    assert _conv_channels(model.stem0) + _conv_channels(model.stem1) == widths
    c_stem = widths[-1][1]
    first = model.cells[0]
    # The first cell reduces the 56x56 stem map and reads the 28x28 one, both c_stem wide.
    assert first.preprocess0.conv_1.in_channels == c_stem
    assert first.preprocess1[1].in_channels == c_stem
    with torch.no_grad():
        s0 = model.stem0(torch.randn(1, 3, 224, 224))
        assert s0.shape == (1, c_stem, 56, 56) and model.stem1(s0).shape == (1, c_stem, 28, 28)


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="stem"):
        SearchNetwork(stem="mnist")
    with pytest.raises(ValueError, match="layers"):
        SearchNetwork(layers=0)
    with pytest.raises(ValueError, match="multiplier"):
        SearchNetwork(steps=2, multiplier=3)
    with pytest.raises(ValueError, match="equal groups"):
        SearchNetwork(channels=6, partial_channels=4)
    with pytest.raises(ValueError, match="implementation"):
        SearchNetwork(impl="no-such-impl")


# Architecture parameters


@pytest.mark.parametrize("partial_channels", [None, 4])
def test_alphas_receive_gradients(partial_channels, seed):
    model = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2, partial_channels=partial_channels)
    arch = model.arch_parameters()
    assert len(arch) == (4 if partial_channels else 2)
    assert all(p.shape == (num_edges(2), len(PRIMITIVES)) for p in arch[:2])
    # The two sets are disjoint and cover the model: the registered alphas are parameters.
    weights = list(model.weight_parameters())
    assert len(weights) + len(arch) == len(list(model.parameters()))
    assert not {id(p) for p in weights} & {id(p) for p in arch}
    assert {id(p) for p in arch} <= {id(p) for p in model.parameters()}

    F.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.randint(0, 10, (4,))).backward()
    for p in arch:
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_alphas_are_in_the_state_dict(seed):
    model = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2, partial_channels=4)
    copy = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2, partial_channels=4)
    copy.load_state_dict(model.state_dict())
    for a, b in zip(model.arch_parameters(), copy.arch_parameters()):
        assert torch.equal(a, b)


def test_first_order_step_uses_the_paper_defaults(seed):
    model = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2)
    architect = nas.Architect(model)
    group = architect.optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.5, 0.999), 1e-3)
    before = [p.detach().clone() for p in model.arch_parameters()]
    weights_before = [p.detach().clone() for p in model.weight_parameters()]
    batch = (torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    architect.step(batch, batch)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.arch_parameters()))
    assert all(torch.equal(a, b) for a, b in zip(weights_before, model.weight_parameters()))
    with pytest.raises(ValueError, match="order"):
        nas.Architect(model, order=3)
    with pytest.raises(ValueError, match="needs lr"):
        nas.Architect(model, order=2).step(batch, batch)


def test_second_order_step_moves_only_the_alphas(seed):
    model = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2, partial_channels=4)
    architect = nas.Architect(model, order=2)
    before = [p.detach().clone() for p in model.arch_parameters()]
    weights_before = [p.detach().clone() for p in model.weight_parameters()]
    batch = (torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    loss = architect.step(batch, batch, lr=0.025)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.arch_parameters()))
    assert all(torch.equal(a, b) for a, b in zip(weights_before, model.weight_parameters()))
    assert all(p.grad is None for p in model.weight_parameters())


def _smooth(model: nn.Module) -> nn.Module:
    # Finite differences that straddle a ReLU kink measure a jump, not a derivative: the
    # check of the architect's calculus needs a smooth network.
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Softplus())
    return model


def test_second_order_gradient_matches_finite_differences(seed):
    # Max pooling is not smooth either (its argmax switches).
    smooth_primitives = [p for p in PRIMITIVES if p != "max_pool_3x3"]
    model = SearchNetwork(channels=4, num_classes=3, layers=3, in_channels=1, steps=2, multiplier=2,
                          primitives=smooth_primitives)
    model = _smooth(model).double()
    # Logits spread enough that the op weights are far from uniform.
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_(0, 0.5)
    train = (torch.randn(4, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (4,)))
    val = (torch.randn(4, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (4,)))
    lr, momentum, wd = 0.5, 0.9, 3e-4
    sgd = torch.optim.SGD(model.weight_parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    F.cross_entropy(model(train[0]), train[1]).backward()
    sgd.step()  # leaves a momentum buffer, which the unrolled step must use
    sgd.zero_grad()

    # A small finite-difference radius (float64) checks the formula itself; DARTS's 0.01 is
    # an approximation, with an error of the order of its square.
    architect = nas.Architect(model, order=2, network_momentum=momentum, network_weight_decay=wd, fd_radius=1e-4)
    _, grads = architect.unrolled_gradient(train, val, lr, sgd)

    names = [name for name, p in model.named_parameters() if name not in ("alphas_normal", "alphas_reduce")]
    weights = [model.get_parameter(name).detach() for name in names]
    buffers = [sgd.state[model.get_parameter(name)]["momentum_buffer"] for name in names]

    def unrolled_val_loss():
        loss = F.cross_entropy(model(train[0]), train[1])
        g = torch.autograd.grad(loss, [model.get_parameter(n) for n in names], allow_unused=True)
        g = [torch.zeros_like(w) if gi is None else gi for w, gi in zip(weights, g)]
        unrolled = {n: w - lr * (momentum * b + gi + wd * w) for n, w, b, gi in zip(names, weights, buffers, g)}
        logits = torch.func.functional_call(model, unrolled, (val[0],), strict=False)
        return F.cross_entropy(logits, val[1]).item()

    h = 1e-5
    for param, grad in zip(model.arch_parameters(), grads):
        numeric = torch.zeros_like(param)
        for index in range(param.numel()):
            flat = param.data.view(-1)
            original = flat[index].item()
            flat[index] = original + h
            plus = unrolled_val_loss()
            flat[index] = original - h
            minus = unrolled_val_loss()
            flat[index] = original
            numeric.view(-1)[index] = (plus - minus) / (2 * h)
        torch.testing.assert_close(grad, numeric, rtol=1e-4, atol=1e-5 * numeric.abs().max().item())

    # The Hessian term matters here: the gradient at w' alone would not match.
    unrolled = dict(zip(architect.weight_names, architect.unrolled_weights(train, lr, sgd)))
    val_loss = F.cross_entropy(torch.func.functional_call(model, unrolled, (val[0],), strict=False), val[1])
    first = torch.autograd.grad(val_loss, model.arch_parameters())
    assert any((a - b).abs().max() > 1e-2 * b.abs().max() for a, b in zip(first, grads))


def test_architect_through_data_parallel(seed):
    # The architect works on the wrapped module: the same step with or without the wrapper.
    model = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2, partial_channels=4)
    batch = (torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    direct = nas.Architect(model, order=2).unrolled_gradient(batch, batch, 0.1)[1]
    wrapped = nas.Architect(nn.DataParallel(model), order=2).unrolled_gradient(batch, batch, 0.1)[1]
    assert len(wrapped) == 4
    for a, b in zip(direct, wrapped):
        torch.testing.assert_close(a, b)


# Genotype derivation


def _one_hot_alphas(edges: dict[int, str], steps: int, base: float = 0.0) -> torch.Tensor:
    alphas = torch.full((num_edges(steps), len(PRIMITIVES)), base)
    for edge, op in edges.items():
        alphas[edge, PRIMITIVES.index(op)] = 5.0
    return alphas


def test_genotype_from_hand_made_alphas():
    # Edges of node 2: 0, 1; node 3: 2, 3, 4; node 4: 5..8; node 5: 9..13.
    normal = _one_hot_alphas({0: "sep_conv_3x3", 1: "skip_connect", 3: "dil_conv_5x5", 4: "max_pool_3x3",
                              5: "sep_conv_5x5", 8: "avg_pool_3x3", 9: "dil_conv_3x3", 13: "sep_conv_3x3"}, 4)
    # `none` dominates edges 2 and 12, which leaves their other ops too weak to be chosen.
    normal[2, PRIMITIVES.index("none")] = 5.0
    normal[12, PRIMITIVES.index("none")] = 9.0
    normal[12, PRIMITIVES.index("sep_conv_5x5")] = 4.0  # strong, but only beside a stronger `none`
    reduce = _one_hot_alphas({0: "max_pool_3x3", 1: "max_pool_3x3", 2: "skip_connect", 3: "max_pool_3x3",
                              5: "skip_connect", 6: "avg_pool_3x3", 10: "max_pool_3x3", 11: "skip_connect"}, 4)

    model = SearchNetwork(channels=4, layers=3, in_channels=1)
    with torch.no_grad():
        model.alphas_normal.copy_(normal)
        model.alphas_reduce.copy_(reduce)
    genotype = model.genotype()
    assert genotype.normal == (("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 1), ("max_pool_3x3", 2),
                               ("sep_conv_5x5", 0), ("avg_pool_3x3", 3), ("dil_conv_3x3", 0), ("sep_conv_3x3", 4))
    assert genotype.reduce == (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 0), ("max_pool_3x3", 1),
                               ("skip_connect", 0), ("avg_pool_3x3", 1), ("max_pool_3x3", 1), ("skip_connect", 2))
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert Genotype.parse(str(genotype)) == genotype


def test_genotype_strongest_op_excludes_none_even_when_it_dominates():
    alphas = torch.zeros(num_edges(2), len(PRIMITIVES))
    alphas[:, PRIMITIVES.index("none")] = 10.0
    alphas[:, PRIMITIVES.index("dil_conv_3x3")] = 1.0
    cell = derive_cell(F.softmax(alphas, dim=-1), steps=2)
    assert [op for op, _ in cell] == ["dil_conv_3x3"] * 4


def test_edge_normalisation_decides_the_inputs():
    model = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2, partial_channels=4)
    with torch.no_grad():
        for alphas in (model.alphas_normal, model.alphas_reduce):
            alphas.copy_(_one_hot_alphas({e: "sep_conv_3x3" for e in range(num_edges(2))}, 2))
        # Node 3 (edges 2, 3, 4): the betas make inputs 1 and 2 the strongest.
        model.betas_normal.copy_(torch.tensor([0.0, 0.0, -3.0, 1.0, 2.0]))
        model.betas_reduce.copy_(torch.tensor([0.0, 0.0, 2.0, -3.0, 1.0]))
    genotype = model.genotype()
    assert [node for _, node in genotype.normal[2:]] == [2, 1]
    assert [node for _, node in genotype.reduce[2:]] == [0, 2]
    assert genotype.normal_concat == (2, 3)


# PC-DARTS channel bookkeeping


def test_channel_shuffle_is_the_documented_permutation(seed):
    x = torch.randn(2, 12, 3, 3)
    out = channel_shuffle(x, 4)
    for g in range(4):
        for j in range(3):
            assert torch.equal(out[:, j * 4 + g], x[:, g * 3 + j])
    assert torch.equal(channel_shuffle(out, 3), x)  # the inverse shuffle


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channels_pass_the_rest_through(stride, seed):
    channels, k = 8, 4
    op = PartialMixedOp(channels, stride, k=k)
    assert op.mixed.ops[PRIMITIVES.index("sep_conv_3x3")][0][1].in_channels == channels // k
    x = torch.randn(2, channels, 8, 8)
    weights = F.softmax(torch.randn(len(PRIMITIVES)), dim=-1)
    out = op(x, weights)
    size = 8 // stride
    assert out.shape == (2, channels, size, size)
    # Undo the shuffle: the first quarter is the mixed op on the first quarter of x, the rest x itself.
    unshuffled = channel_shuffle(out, channels // k)
    expected_rest = x[:, channels // k:] if stride == 1 else F.max_pool2d(x[:, channels // k:], 2)
    torch.testing.assert_close(unshuffled[:, channels // k:], expected_rest, rtol=0, atol=0)
    torch.testing.assert_close(unshuffled[:, : channels // k], op.mixed(x[:, : channels // k], weights))


def test_partial_channels_must_divide():
    with pytest.raises(ValueError, match="k=4"):
        PartialMixedOp(6, 1, k=4)


# Mixed-op implementations


def test_reference_mixed_op_is_the_weighted_sum(seed):
    op = MixedOp(4, 1)
    x = torch.randn(2, 4, 6, 6)
    weights = F.softmax(torch.randn(len(PRIMITIVES)), dim=-1)
    expected = sum(w * o(x) for w, o in zip(weights, op.ops))
    torch.testing.assert_close(op(x, weights), expected)


def test_a_registered_impl_plugs_in(seed):
    calls = []

    def traced(x, weights, ops):
        calls.append(len(ops))
        return nas.mixed.reference_mixed(x, weights, ops)

    register_mixed_impl("test-traced", traced)
    try:
        assert "test-traced" in nas.available_mixed_impls()
        model = SearchNetwork(channels=4, layers=3, in_channels=1, steps=2, multiplier=2, impl="test-traced")
        model(torch.randn(2, 1, 8, 8))
        assert calls == [len(PRIMITIVES)] * (3 * num_edges(2))
    finally:
        nas.mixed._IMPLS.pop("test-traced")
    with pytest.raises(ValueError, match="unknown mixed-op implementation 'test-traced'"):
        MixedOp(4, 1, impl="test-traced")


# Genotype strings


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_named_genotypes_round_trip(name):
    genotype = GENOTYPES[name]
    assert genotype.steps == 4
    assert Genotype.parse(str(genotype)) == genotype
    assert get_genotype(name.lower()) is genotype
    assert get_genotype(str(genotype)) == genotype


def test_parse_accepts_the_darts_form():
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=range(2, 6))")
    assert Genotype.parse(text) == DARTS_V2
    assert get_genotype("DARTS") is DARTS_V2


def _with(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("mutate, message", [
    (lambda s: _with(s, "'sep_conv_3x3', 0", "'sep_conv_7x7', 0"), "unknown operation 'sep_conv_7x7'"),
    (lambda s: _with(s, "'sep_conv_3x3', 0", "'none', 0"), "unknown operation 'none'"),
    (lambda s: _with(s, "('sep_conv_3x3', 0), ('sep_conv_3x3', 1)", "('sep_conv_3x3', 2), ('sep_conv_3x3', 1)"),
     r"input node must be an integer in \[0, 2\)"),
    (lambda s: _with(s, "('sep_conv_3x3', 0), ('sep_conv_3x3', 1)", "('sep_conv_3x3', -1), ('sep_conv_3x3', 1)"),
     "input node"),
    (lambda s: _with(s, "normal=[('sep_conv_3x3', 0), ", "normal=["), "two edges per intermediate node"),
    (lambda s: _with(s, "normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 6]"), "normal_concat"),
    (lambda s: _with(s, ", reduce_concat=[2, 3, 4, 5]", ""), "exactly the keywords"),
    (lambda s: _with(s, "Genotype(", "Gen("), "Genotype"),
    (lambda s: s[:-1], "not a genotype string"),
    (lambda s: _with(s, "normal_concat=[2, 3, 4, 5]", "normal_concat=__import__('os').getpid()"), "not a literal"),
    (lambda s: _with(s, "('sep_conv_3x3', 0)", "'sep_conv_3x3'"), r"\(op, input\) pair"),
])
def test_bad_genotype_strings_are_clear_errors(mutate, message):
    with pytest.raises(ValueError, match=message):
        Genotype.parse(mutate(str(DARTS_V2)))


def test_unknown_architecture_name():
    with pytest.raises(ValueError, match="unknown architecture 'resnet'.*DARTS_V2"):
        get_genotype("resnet")


# The architect's steps, exactly


def _tiny_double_model():
    model = SearchNetwork(channels=4, num_classes=3, layers=3, in_channels=1, steps=2, multiplier=2).double()
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_(0, 0.5)
    return model


def _batches():
    train = (torch.randn(4, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (4,)))
    val = (torch.randn(4, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (4,)))
    return train, val


def _adam_reference(model, grads, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3):
    """The alphas after one Adam step with the given gradients, on copies."""
    alphas = [p.detach().clone().requires_grad_() for p in model.arch_parameters()]
    adam = torch.optim.Adam(alphas, lr=lr, betas=betas, weight_decay=weight_decay)
    for p, g in zip(alphas, grads):
        p.grad = g.clone()
    adam.step()
    return alphas


def test_first_order_step_is_adam_on_the_validation_gradient(seed):
    model = _tiny_double_model()
    train, val = _batches()
    val_loss = F.cross_entropy(model(val[0]), val[1])
    grads = torch.autograd.grad(val_loss, model.arch_parameters())
    expected = _adam_reference(model, grads)
    loss = nas.Architect(model).step(train, val)
    assert not loss.requires_grad
    assert loss.item() == val_loss.item()
    for a, b in zip(model.arch_parameters(), expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


def test_second_order_step_is_adam_on_the_unrolled_gradient(seed):
    model = _tiny_double_model()
    train, val = _batches()
    sgd = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(model(train[0]), train[1]).backward()
    sgd.step()
    sgd.zero_grad()
    settings = dict(lr=1e-2, betas=(0.6, 0.99), weight_decay=1e-2)
    architect = nas.Architect(model, order=2, **settings)
    val_loss, grads = architect.unrolled_gradient(train, val, 0.1, sgd)
    expected = _adam_reference(model, grads, **settings)
    loss = architect.step(train, val, lr=0.1, network_optimizer=sgd)
    assert loss.item() == val_loss.item()
    for a, b in zip(model.arch_parameters(), expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_unrolled_weights_are_the_weight_optimisers_sgd_step(with_optimizer, seed):
    model = _tiny_double_model()
    train, _ = _batches()
    sgd = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(model(train[0]), train[1]).backward()
    sgd.step()
    sgd.zero_grad()
    weights = [p for name, p in model.named_parameters() if name not in ("alphas_normal", "alphas_reduce")]
    grads = torch.autograd.grad(F.cross_entropy(model(train[0]), train[1]), weights, allow_unused=True)
    lr, momentum, wd = 0.05, 0.9, 3e-4  # the architect's defaults for the weights' SGD
    expected = []
    for w, g in zip(weights, grads):
        step = (torch.zeros_like(w) if g is None else g) + wd * w.detach()
        if with_optimizer:
            step = step + momentum * sgd.state[w]["momentum_buffer"]
        expected.append(w.detach() - lr * step)
    architect = nas.Architect(model, order=2)
    unrolled = architect.unrolled_weights(train, lr, sgd if with_optimizer else None)
    assert all(u.requires_grad and u.is_leaf for u in unrolled)
    for u, e in zip(unrolled, expected):
        torch.testing.assert_close(u, e, rtol=0, atol=1e-15)


def test_hessian_vector_product_is_the_central_difference_and_zero_for_a_zero_vector(seed):
    # Double backward needs the reference mixed op; finite differences need a smooth network.
    smooth_primitives = [p for p in PRIMITIVES if p != "max_pool_3x3"]
    model = _smooth(SearchNetwork(channels=4, num_classes=3, layers=3, in_channels=1, steps=2, multiplier=2,
                                  primitives=smooth_primitives, impl="reference")).double()
    train, _ = _batches()
    architect = nas.Architect(model, order=2, fd_radius=1e-5)
    zero = architect._hessian_vector_product([torch.zeros_like(w) for w in architect.weights], train)
    assert all(torch.equal(z, torch.zeros_like(p)) for z, p in zip(zero, model.arch_parameters()))
    vector = [torch.randn_like(w) for w in architect.weights]
    # The exact product by double backward.
    loss = F.cross_entropy(model(train[0]), train[1])
    directional = sum((g * v).sum() for g, v in zip(
        torch.autograd.grad(loss, architect.weights, create_graph=True, allow_unused=True), vector) if g is not None)
    exact = torch.autograd.grad(directional, model.arch_parameters())
    product = architect._hessian_vector_product(vector, train)
    for p, e in zip(product, exact):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6 * e.abs().max().item())


def test_architect_state_round_trips_and_errors_are_whole(seed):
    model = _tiny_double_model()
    train, val = _batches()
    architect = nas.Architect(model)
    architect.step(train, val)
    state = architect.state_dict()
    copy = nas.Architect(model)
    copy.load_state_dict(state)
    assert copy.state_dict()["state"][0]["step"] == 1
    torch.testing.assert_close(copy.state_dict()["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match=r"^order must be 1 \(first order\) or 2 \(second order\), got 3$"):
        nas.Architect(model, order=3)
    with pytest.raises(ValueError, match="^the second-order step needs lr, the weight optimiser's current "
                                         "learning rate$"):
        nas.Architect(model, order=2).step(train, val)
