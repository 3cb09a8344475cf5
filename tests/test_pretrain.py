"""Training baselines: checkpoints, resume, errors, the augmentation and the CLI."""

import numpy as np
import pytest
import torch

from proxyfast.cli import main
from proxyfast.data import ImageArrayDataset
from proxyfast.models import resnet20
from proxyfast.pretrain import evaluate, load_checkpoint, load_model, random_crop_flip, train


def tiny_dataset(rng, n=48, name="tiny"):
    # Two classes that a small model separates quickly: dark and bright images.
    labels = rng.integers(0, 2, size=n)
    images = (rng.integers(0, 100, size=(n, 8, 8, 1)) + 150 * labels[:, None, None, None]).astype(np.uint8)
    return ImageArrayDataset(images, labels, name)


def fresh_model(seed=0):
    torch.manual_seed(seed)
    return resnet20(2, 1, width=4)


OPTIONS = dict(batch_size=16, lr=0.1, progress=False, log=None, channels_last=False)


def test_train_learns_and_reports_test_accuracy(rng):
    data = tiny_dataset(rng, n=96)
    result = train(fresh_model(), data, data, epochs=4, **OPTIONS)
    assert result.test_accuracy is not None and result.test_accuracy >= 0.9
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.forgetting is None
    assert evaluate(result.model, data) == result.test_accuracy


def test_resume_after_an_interruption_gives_the_same_model(rng, tmp_path):
    data = tiny_dataset(rng)
    full = train(fresh_model(), data, epochs=3, track_forgetting=True, **OPTIONS)

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(line):
        if line.startswith("epoch 1/3"):
            raise Interrupt

    checkpoint = tmp_path / "run.ckpt"
    options = {**OPTIONS, "log": stop_after_first_epoch}
    with pytest.raises(Interrupt):
        train(fresh_model(), data, epochs=3, checkpoint=checkpoint, track_forgetting=True, **options)
    assert load_checkpoint(checkpoint)["epoch"] == 1
    lines = []
    resumed = train(fresh_model(seed=1), data, epochs=3, checkpoint=checkpoint, track_forgetting=True,
                    **{**OPTIONS, "log": lines.append})
    assert lines[0].startswith("resumed from") and "after epoch 1/3" in lines[0]
    assert len(resumed.history) == 3
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, msg=name)
    assert torch.equal(resumed.forgetting.events, full.forgetting.events)
    assert torch.equal(resumed.forgetting.presentations, full.forgetting.presentations)


def test_checkpoint_of_another_run_is_refused(rng, tmp_path):
    data = tiny_dataset(rng)
    checkpoint = tmp_path / "run.ckpt"
    train(fresh_model(), data, epochs=1, checkpoint=checkpoint, **OPTIONS)
    with pytest.raises(ValueError, match="different run.*lr"):
        train(fresh_model(), data, epochs=1, checkpoint=checkpoint, **{**OPTIONS, "lr": 0.2})
    with pytest.raises(ValueError, match="different run.*dataset"):
        train(fresh_model(), tiny_dataset(rng), epochs=1, checkpoint=checkpoint, **OPTIONS)
    train(fresh_model(), data, epochs=1, checkpoint=checkpoint, resume=False, **{**OPTIONS, "lr": 0.2})


def test_load_model_and_bad_checkpoints(rng, tmp_path):
    data = tiny_dataset(rng)
    checkpoint = tmp_path / "run.ckpt"
    result = train(fresh_model(), data, epochs=1, checkpoint=checkpoint, **OPTIONS)
    model = load_model(checkpoint)
    assert not model.training
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(model(x), result.model.eval()(x))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable proxyfast checkpoint"):
        load_model(bad)
    torch.save({"weights": 1}, bad)
    with pytest.raises(ValueError, match="not a proxyfast checkpoint"):
        load_checkpoint(bad)


def test_bad_arguments(rng):
    data = tiny_dataset(rng)
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        train(fresh_model(), data, epochs=0, **OPTIONS)
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        train(fresh_model(), data, epochs=1, **{**OPTIONS, "batch_size": 1})
    with pytest.raises(ValueError, match="at least 2 examples"):
        train(fresh_model(), tiny_dataset(rng, n=1), epochs=1, **OPTIONS)


def test_random_crop_flip_shifts_and_flips():
    images = torch.arange(2 * 1 * 5 * 5, dtype=torch.uint8).reshape(2, 1, 5, 5)
    generator = torch.Generator().manual_seed(0)
    out = random_crop_flip(images, 0, generator)
    for b in range(2):  # no padding: each image is itself or its mirror
        assert torch.equal(out[b], images[b]) or torch.equal(out[b], images[b].flip(-1))
    shifted = random_crop_flip(images, 2, generator)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8


def test_pretrain_and_score_commands(rng, tmp_path, capsys):
    from test_data import write_fashion_mnist

    write_fashion_mnist(tmp_path, rng, n_train=40, n_test=10)
    checkpoint = tmp_path / "b.ckpt"
    args = ["pretrain", "--data-root", str(tmp_path), "--width", "2", "--epochs", "1", "--batch-size", "20",
            "--out", str(checkpoint), "--quiet"]
    assert main(args) == 0
    assert "test accuracy" in capsys.readouterr().out
    scores_path, entropy_path = tmp_path / "s.pxscores", tmp_path / "e.txt"
    assert main(["score", "--checkpoint", str(checkpoint), "--data-root", str(tmp_path), "--features",
                 "--out", str(scores_path), "--entropy-list", str(entropy_path), "--quiet"]) == 0
    assert "scored 40 images" in capsys.readouterr().out
    assert len(entropy_path.read_text().splitlines()) == 40
    assert main(["score", "--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(scores_path)]) == 2
    assert "missing.ckpt" in capsys.readouterr().err
    assert main(["pretrain", "--data-root", str(tmp_path / "nothing"), "--out", str(checkpoint)]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
