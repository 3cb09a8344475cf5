"""The evaluation network built from a genotype, its final training, and ``proxyfast train``."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from proxyfast.cli import main
from proxyfast.data import ImageArrayDataset, digits
from proxyfast.nas import (
    DARTS_V1,
    DARTS_V2,
    GENOTYPES,
    PC_DARTS,
    EvalCell,
    EvalNetwork,
    Genotype,
    drop_path,
    get_genotype,
    load_network,
    random_cutout,
    shard_epoch,
    train_network,
)
from proxyfast.nas.genotypes import ALIASES
from proxyfast.pretrain import evaluate, save_checkpoint


def torch_seed(rng) -> int:
    return int(rng.integers(2**31))


def pattern_dataset(rng, n=192, classes=4, size=8, channels=1, name="patterns"):
    """An easy image task: each class a fixed random pattern, each image its class's
    pattern plus noise (uint8, like every proxyfast dataset)."""
    templates = rng.uniform(0, 255, size=(classes, size, size, channels))
    labels = rng.integers(0, classes, size=n)
    images = np.clip(0.6 * templates[labels] + rng.normal(0, 40, size=(n, size, size, channels)), 0, 255)
    return ImageArrayDataset(images.astype(np.uint8), labels, name, [str(c) for c in range(classes)])


def tiny_run(**overrides):
    settings = dict(epochs=3, channels=4, layers=3, batch_size=32, lr=0.05, auxiliary_weight=0.4,
                    drop_path_prob=0.3, cutout=3, progress=False, log=None, device="cpu")
    settings.update(overrides)
    return settings


# ---------------------------------------------------------------------------- network


def cell_sizes(model, x):
    """(channels, height) of the stem output and of every cell's output."""
    sizes = []
    hooks = [cell.register_forward_hook(lambda m, i, out: sizes.append(tuple(out.shape[1:3])))
             for cell in model.cells]
    model(x)
    for hook in hooks:
        hook.remove()
    return sizes


@pytest.mark.parametrize("stem, stem_stride, size, first", [
    ("cifar", 1, 32, 32), ("cifar", 2, 28, 14), ("cifar", 2, 8, 4), ("imagenet", 1, 224, 28),
])
def test_eval_network_shapes_through_normal_and_reduction_cells(rng, stem, stem_stride, size, first):
    torch.manual_seed(torch_seed(rng))
    channels, layers, in_channels = 4, 6, int(rng.integers(1, 4))
    model = EvalNetwork(DARTS_V2, channels, 7, layers, in_channels, auxiliary=True, stem=stem,
                        stem_stride=stem_stride).eval()
    x = torch.rand(2, in_channels, size, size)
    sizes = cell_sizes(model, x)
    expected, c, h = [], channels, first
    for i in range(layers):
        if i in (layers // 3, 2 * layers // 3):  # reduction cells at 1/3 and 2/3 of the depth
            c, h = 2 * c, (h + 1) // 2
        expected.append((4 * c, h))  # the four intermediate nodes concatenated
    assert sizes == expected
    assert [cell.reduction for cell in model.cells] == [i in (2, 4) for i in range(layers)]
    assert model(x).shape == (2, 7)
    model.train()
    logits, aux_logits = model(x)
    assert logits.shape == aux_logits.shape == (2, 7)


def test_auxiliary_head_on_and_off(rng):
    torch.manual_seed(torch_seed(rng))
    x = torch.rand(3, 1, 8, 8)  # the auxiliary head sees 1x1 maps here: any size works
    with_head = EvalNetwork(PC_DARTS, 4, 10, 3, 1, auxiliary=True, stem_stride=2)
    without = EvalNetwork(PC_DARTS, 4, 10, 3, 1, auxiliary=False, stem_stride=2)
    assert isinstance(with_head.train()(x), tuple)
    assert isinstance(without.train()(x), torch.Tensor) and without.auxiliary_head is None
    assert isinstance(with_head.eval()(x), torch.Tensor)
    head = sum(p.numel() for p in with_head.auxiliary_head.parameters())
    assert with_head.num_parameters(auxiliary=True) == with_head.num_parameters() + head
    assert with_head.num_parameters() == without.num_parameters()
    logits, aux_logits = with_head.train()(x)
    (logits.sum() + aux_logits.sum()).backward()
    assert all(p.grad is not None for p in with_head.auxiliary_head.parameters())


@pytest.mark.parametrize("name, stem, millions", [
    ("DARTS_V2", "cifar", 3.3), ("PC_DARTS", "cifar", 3.6), ("DARTS_V2", "imagenet", 4.7),
    ("PC_DARTS_IMAGENET", "imagenet", 5.3),
])
def test_parameter_counts_match_the_published_ones(name, stem, millions):
    # DARTS (Tables 1 and 3) and PC-DARTS (Tables 1 and 3): CIFAR-10 networks of 20 cells and
    # 36 channels, ImageNet networks of 14 cells and 48 channels, auxiliary head excluded.
    channels, layers, classes = (36, 20, 10) if stem == "cifar" else (48, 14, 1000)
    model = EvalNetwork(name, channels, classes, layers, 3, auxiliary=True, stem=stem)
    assert round(model.num_parameters() / 1e6, 1) == millions


def test_config_rebuilds_the_network(rng):
    torch.manual_seed(torch_seed(rng))
    model = EvalNetwork(DARTS_V1, 4, 5, 4, 2, auxiliary=True, stem_stride=2, mean=[0.1, 0.2], std=0.3)
    copy = EvalNetwork(**model.config())
    copy.load_state_dict(model.state_dict())
    x = torch.rand(2, 2, 12, 12)
    assert torch.equal(model.eval()(x), copy.eval()(x))
    assert copy.genotype == DARTS_V1


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=0), "channels"), (dict(layers=2), "layers"), (dict(stem="mobile"), "stem"),
    (dict(stem="imagenet", stem_stride=2), "stem_stride"), (dict(stem_stride=0), "stem_stride"),
    (dict(drop_path_prob=1.0), "drop_path_prob"), (dict(std=0.0), "std"), (dict(mean=[0.1, 0.2]), "mean"),
    (dict(genotype="NOT_A_CELL"), "unknown architecture"),
])
def test_eval_network_rejects_bad_arguments(kwargs, match):
    arguments = dict(genotype=DARTS_V2, channels=4, layers=3, in_channels=1) | kwargs
    with pytest.raises(ValueError, match=match):
        EvalNetwork(**arguments)


def test_eval_network_rejects_images_of_the_wrong_channels():
    with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\]"):
        EvalNetwork(DARTS_V2, 4, layers=3, in_channels=3)(torch.rand(2, 1, 8, 8))


# ---------------------------------------------------------------------------- drop-path


def test_drop_path_zeroes_whole_examples_at_the_rate_and_rescales(rng):
    torch.manual_seed(torch_seed(rng))
    p, n = float(rng.uniform(0.1, 0.7)), 20000
    x = torch.rand(n, 3, 2, 2) + 0.5
    y = drop_path(x, p)
    dropped = (y == 0).flatten(1).all(1)
    kept = ~dropped
    assert torch.equal((y == 0).flatten(1).any(1), dropped)  # all of an example, or none of it
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(dropped.float().mean().item() - p) < 5 * sigma
    assert drop_path(x, 0.0) is x


def test_drop_path_is_identity_in_eval_and_spares_skip_connections(rng):
    torch.manual_seed(torch_seed(rng))
    s0, s1 = torch.randn(16, 6, 8, 8), torch.randn(16, 6, 8, 8)
    cell = EvalCell(DARTS_V2, 6, 6, 3, reduction=False, reduction_prev=False).eval()
    assert torch.equal(cell(s0, s1, 0.7), cell(s0, s1, 0.0))
    # A cell of identities only: nothing to drop, even in training.
    skips = Genotype(normal=[("skip_connect", 0), ("skip_connect", 1)] * 4, normal_concat=[2, 3, 4, 5],
                     reduce=DARTS_V2.reduce, reduce_concat=[2, 3, 4, 5])
    cell = EvalCell(skips, 6, 6, 3, reduction=False, reduction_prev=False).train()
    assert torch.equal(cell(s0, s1, 0.9), cell(s0, s1, 0.0))


def test_drop_path_in_a_cell_drops_each_edge_independently(rng):
    # Every node adds avg_pool(input 0) and max_pool(input 1). In training each of the two
    # terms must be either dropped (0) or kept and scaled by 1/(1-p), example by example,
    # and dropped at the rate p.
    torch.manual_seed(torch_seed(rng))
    p, batch = float(rng.uniform(0.2, 0.6)), 400
    genotype = Genotype(normal=[("avg_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, normal_concat=[2, 3, 4, 5],
                        reduce=DARTS_V2.reduce, reduce_concat=[2, 3, 4, 5])
    cell = EvalCell(genotype, 3, 3, 2, reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(batch, 3, 4, 4), torch.randn(batch, 3, 4, 4)
    with torch.no_grad():
        a = cell.ops[0](cell.preprocess0(s0)).flatten(1).double()
        b = cell.ops[1](cell.preprocess1(s1)).flatten(1).double()
        nodes = cell(s0, s1, p).double().view(batch, 4, -1)
    basis = torch.stack([a, b], dim=2)  # [batch, values, 2]
    coefficients = []
    for node in range(4):
        solution = torch.linalg.lstsq(basis, nodes[:, node, :, None]).solution[..., 0]
        assert torch.allclose(basis @ solution[..., None], nodes[:, node, :, None], atol=1e-4)
        coefficients.append(solution)
    coefficients = torch.cat(coefficients)
    scale = 1 / (1 - p)
    near_zero = coefficients.abs() < 1e-4
    near_scale = (coefficients - scale).abs() < 1e-4
    assert bool((near_zero | near_scale).all())
    trials = coefficients.numel()
    assert abs(near_zero.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / trials)


# ---------------------------------------------------------------------------- cutout and sharding


def test_cutout_masks_a_box_of_the_given_size(rng):
    length, size, batch = int(rng.integers(1, 10)), 20, 300
    images = torch.full((batch, 2, size, size), 255, dtype=torch.uint8)
    seed = torch_seed(rng)
    out = random_cutout(images, length, torch.Generator().manual_seed(seed))
    assert torch.equal(out, random_cutout(images, length, torch.Generator().manual_seed(seed)))
    assert bool((images == 255).all())  # the input is left alone
    assert set(out.unique().tolist()) <= {0, 255}
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1])  # every channel alike
    full = 0
    for mask in zero[:, 0]:
        rows = mask.any(1).nonzero().flatten()
        cols = mask.any(0).nonzero().flatten()
        height, width = len(rows), len(cols)
        assert height >= 1 and width >= 1  # the box's centre is inside the image
        assert int(mask.sum()) == height * width  # a rectangle
        assert rows.max() - rows.min() + 1 == height and cols.max() - cols.min() + 1 == width
        for extent, lines in ((height, rows), (width, cols)):
            touches_border = lines.min() == 0 or lines.max() == size - 1
            assert extent == length or (touches_border and length - length // 2 <= extent < length)
        full += height == width == length
    # A box is clipped only when its centre lies within length/2 of a border.
    inside = max(0, size - length + 1) / size
    assert full / batch > inside**2 - 0.15


def test_shard_epoch_gives_each_rank_a_disjoint_slice_of_every_batch(rng):
    n, world, per_rank = int(rng.integers(50, 200)), int(rng.integers(1, 5)), int(rng.integers(2, 9))
    batch = world * per_rank
    order = torch.from_numpy(rng.permutation(n))
    shards = [shard_epoch(order, batch, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    taken = torch.cat(shards)
    assert len(set(taken.tolist())) == len(taken)  # disjoint
    for start, step in zip(range(0, n, batch), range(0, len(shards[0]), per_rank)):
        # the ranks' step-th batches together are the global batch
        together = torch.cat([s[step:step + per_rank] for s in shards])
        assert set(together.tolist()) <= set(order[start:start + batch].tolist())
    last = n % batch
    left_out = last if 0 < last // world < 2 else last % world
    assert len(taken) == n - left_out
    assert torch.equal(shard_epoch(order, batch, 0, 1)[: len(order) - last], order[: len(order) - last])


# ---------------------------------------------------------------------------- training


def test_train_network_learns(rng):
    data = pattern_dataset(rng)
    # No shifts, flips or cutout: they would change which pattern an image shows.
    settings = tiny_run(seed=int(rng.integers(1000)), epochs=6, augment=False, cutout=0)
    result = train_network(DARTS_V2, data, data, **settings)
    losses = [epoch["loss"] for epoch in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.test_accuracy > 0.6  # 4 classes
    assert [epoch["drop_path_prob"] for epoch in result.history] == pytest.approx([0, 0.05, 0.1, 0.15, 0.2, 0.25])
    # The paper's cosine, stepped at the start of each epoch: epoch e trains at t = e + 1.
    assert [epoch["lr"] for epoch in result.history] == pytest.approx(
        [0.025 * (1 + math.cos(math.pi * (e + 1) / 6)) for e in range(6)], abs=1e-15)
    assert result.parameters == result.model.num_parameters() > 0
    assert not result.model.training


class Stop(Exception):
    pass


def test_resume_after_a_stopped_run_ends_exactly_as_an_uninterrupted_one(rng, tmp_path):
    data = pattern_dataset(rng, n=100)
    settings = tiny_run(seed=int(rng.integers(1000)))
    whole = train_network(PC_DARTS, data, **settings, checkpoint=tmp_path / "whole.ckpt")

    def stop_after_epoch_2(line):
        if line.startswith("epoch 2/"):
            raise Stop  # what a kill during epoch 3 leaves: the checkpoint of epoch 2

    with pytest.raises(Stop):
        train_network(PC_DARTS, data, **(settings | {"log": stop_after_epoch_2}), checkpoint=tmp_path / "cut.ckpt")
    lines = []
    resumed = train_network(PC_DARTS, data, **(settings | {"log": lines.append}), checkpoint=tmp_path / "cut.ckpt")
    assert lines[0].startswith("resumed from") and "after epoch 2/3" in lines[0]
    assert len(resumed.history) == 3
    for a, b in zip(whole.history, resumed.history):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    state, other = whole.model.state_dict(), resumed.model.state_dict()
    assert state.keys() == other.keys()
    assert all(torch.equal(state[key], other[key]) for key in state)
    reloaded = load_network(tmp_path / "whole.ckpt").state_dict()
    assert reloaded.keys() == state.keys() and all(torch.equal(state[key], reloaded[key]) for key in state)


def test_checkpoint_of_another_configuration_is_refused(rng, tmp_path):
    data = pattern_dataset(rng, n=64)
    path = tmp_path / "run.ckpt"
    train_network(DARTS_V2, data, **tiny_run(epochs=1), checkpoint=path)
    with pytest.raises(ValueError, match=r"differs in genotype, lr, network\.channels\)"):
        train_network(DARTS_V1, data, **tiny_run(epochs=1, lr=0.1, channels=6), checkpoint=path)
    with pytest.raises(ValueError, match=r"differs in dataset"):
        train_network(DARTS_V2, pattern_dataset(rng, n=64, name="other"), **tiny_run(epochs=1), checkpoint=path)
    retrained = train_network(DARTS_V2, data, **tiny_run(epochs=1, lr=0.1), checkpoint=path, resume=False)
    assert len(retrained.history) == 1
    foreign = tmp_path / "baseline.ckpt"
    save_checkpoint(foreign, {"run": {"model": "resnet20"}, "epoch": 1})
    with pytest.raises(ValueError, match="not written by train_network"):
        train_network(DARTS_V2, data, **tiny_run(epochs=1), checkpoint=foreign)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, "epochs"), (dict(batch_size=1), ValueError, "batch_size"),
    (dict(drop_path_prob=1.0), ValueError, "drop_path_prob"), (dict(cutout=-1), ValueError, "cutout"),
    (dict(lr=0.0), ValueError, "lr"), (dict(auxiliary_weight=-0.1), ValueError, "auxiliary_weight"),
    (dict(grad_clip=0), ValueError, "grad_clip"), (dict(epochs=2.5), TypeError, "epochs"),
    (dict(seed=-1), ValueError, "seed"), (dict(eval_every=-1), ValueError, "eval_every"),
])
def test_train_network_rejects_bad_arguments(rng, kwargs, error, match):
    with pytest.raises(error, match=match):
        train_network(DARTS_V2, pattern_dataset(rng, n=16), **tiny_run(**kwargs))


def test_bad_genotype_strings_are_clear_errors():
    text = str(DARTS_V2)
    for bad, match in [
        (text[:-1], "not a genotype string"),
        (text.replace("sep_conv_3x3", "conv_7x7", 1), "unknown operation 'conv_7x7'"),
        (text.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), r"input node must be an integer in \[0, 5\)"),
        (text.replace("normal_concat", "concat"), "names exactly the keywords"),
        ("Genotype(normal=__import__('os'), normal_concat=[2], reduce=[], reduce_concat=[2])", "not a literal"),
        ("DARTS_V9", "unknown architecture 'DARTS_V9'"),
    ]:
        with pytest.raises(ValueError, match=match):
            get_genotype(bad)
        with pytest.raises(ValueError, match=match):
            train_network(bad, pattern_dataset(np.random.default_rng(0), n=16), **tiny_run())


# ---------------------------------------------------------------------------- named architectures


def test_named_genotypes_parse_and_build(rng):
    torch.manual_seed(torch_seed(rng))
    x = torch.rand(2, 1, 8, 8)
    for name, genotype in GENOTYPES.items():
        assert Genotype.parse(str(genotype)) == genotype
        assert get_genotype(name.lower()) is genotype
        model = EvalNetwork(name, 4, 10, 3, 1, auxiliary=True).train()
        logits, aux_logits = model(x)
        assert logits.shape == aux_logits.shape == (2, 10) and torch.isfinite(logits).all()
    for alias, name in ALIASES.items():
        assert get_genotype(alias.lower()) is GENOTYPES[name]
    assert get_genotype("DARTS") is DARTS_V2
    assert get_genotype("imagenet_DARTS_proxy_histo1_10p") is GENOTYPES["PROXY_DARTS_IMAGENET"]


# ---------------------------------------------------------------------------- command line


def test_train_command_end_to_end_on_digits(capsys, tmp_path):
    out = tmp_path / "run"
    arch_file = tmp_path / "genotype.txt"
    arch_file.write_text(f"{PC_DARTS}\n")
    argv = ["train", "--arch", str(arch_file), "--dataset", "digits", "--epochs", "2", "--channels", "4",
            "--layers", "3", "--batch-size", "128", "--cutout", "2", "--stem-stride", "2", "--seed", "3",
            "--device", "cpu", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/2: loss " in printed and "epoch 2/2: loss " in printed
    log = json.loads((out / "train_log.json").read_text())
    assert log["genotype"] == str(PC_DARTS) and log["dataset"] == "digits"
    assert [epoch["epoch"] for epoch in log["history"]] == [1, 2]
    assert log["settings"]["cutout"] == 2 and log["network"]["stem_stride"] == 2
    assert f"test accuracy: {100 * log['test_accuracy']:.2f}%" in printed
    for name in ("checkpoint.ckpt", "model.pt", "cell_normal.png", "cell_reduce.png"):
        assert f"wrote {out / name}" in printed
    assert (out / "cell_normal.png").read_bytes()[:4] == b"\x89PNG"
    model = load_network(out / "model.pt")
    assert model.genotype == PC_DARTS
    test_set = digits(train=False)
    # Rebuilt in the default memory order, the network may round differently: one example at most.
    assert abs(evaluate(model, test_set) - log["test_accuracy"]) <= 1 / len(test_set)

    # A second run finds the finished checkpoint and only evaluates.
    assert main(argv) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((out / "train_log.json").read_text())["history"] == log["history"]


@pytest.mark.parametrize("arch, match", [
    ("Genotype(normal=[('sep_conv_3x3', 0)", "--arch: not a genotype string"),
    ("NOT_A_CELL", "--arch: unknown architecture 'NOT_A_CELL'"),
    ("missing/genotype.txt", "--arch: no such file 'missing/genotype.txt'"),
])
def test_train_command_bad_arch_is_a_one_line_error(capsys, tmp_path, arch, match):
    argv = ["train", "--arch", arch, "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("proxyfast train: error: ") and match in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_train_command_refuses_a_checkpoint_of_another_run(capsys, tmp_path):
    argv = ["train", "--arch", "DARTS_V1", "--dataset", "digits", "--epochs", "1", "--channels", "4",
            "--layers", "3", "--batch-size", "256", "--stem-stride", "2", "--quiet", "--out", str(tmp_path)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv[:-3] + ["--drop-path", "0.1", "--quiet", "--out", str(tmp_path)]) == 2
    assert "differs in drop_path_prob" in capsys.readouterr().err


def test_train_command_under_torchrun_counts_every_rank_in_the_test_accuracy(tmp_path):
    # Each rank scores half of the test set; the accuracy printed must be that of the
    # whole set, which one process measures again from the saved network.
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "proxyfast", "train", "--arch", "DARTS_V1", "--dataset", "digits", "--epochs", "1", "--channels", "4",
        "--layers", "3", "--batch-size", "64", "--device", "cpu", "--threads", "1", "--quiet", "--out", str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("epoch 1/1: loss ") == 1  # rank 0 alone prints
    log = json.loads((out / "train_log.json").read_text())
    assert log["processes"] == 2
    test_set = digits(train=False)
    # In the precision the run took (bfloat16 where this CPU runs it natively).
    accuracy = evaluate(load_network(out / "model.pt"), test_set, amp=log["settings"]["amp"])
    assert abs(accuracy - log["test_accuracy"]) <= 1 / len(test_set)
    assert f"test accuracy: {100 * log['test_accuracy']:.2f}%" in finished.stdout
