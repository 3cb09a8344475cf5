"""proxyfast.score: equal to the entropy of the model's logits; features, metadata,
the scores file format and its errors."""

import hashlib
import json
import os
import struct

import numpy as np
import pytest
import torch
from torch import nn

import proxyfast
from proxyfast import ops
from proxyfast.data import ImageArrayDataset
from proxyfast.io import read_entropy_list, write_entropy_list
from proxyfast.models import resnet20
from proxyfast.scoring import MAGIC, DatasetMismatchError, Scores, model_info, score

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_dataset(rng, n=53, channels=1, size=12, name="tiny"):
    images = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
    return ImageArrayDataset(images, rng.integers(0, 5, size=n), name)


def make_model(channels=1, seed=0):
    torch.manual_seed(seed)
    model = resnet20(num_classes=5, in_channels=channels, width=4)
    # Random batch-norm statistics, so that eval mode is not the identity.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def all_logits(model, dataset):
    images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return model(images), model.forward_features(images)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_score_equals_entropy_of_the_model_logits(rng, batch_size):
    dataset, model = make_dataset(rng), make_model()
    logits, features = all_logits(model, dataset)
    scores = score(model, dataset, batch_size=batch_size, features=True)
    entropy, log10_entropy = ops.entropy(logits)
    torch.testing.assert_close(scores.entropy, entropy, rtol=1e-5, atol=0)
    torch.testing.assert_close(scores.log10_entropy, log10_entropy, rtol=1e-5, atol=1e-6)
    assert torch.equal(scores.predictions, logits.argmax(1))
    assert torch.equal(scores.labels, torch.from_numpy(dataset.labels))
    torch.testing.assert_close(scores.features, features, rtol=1e-5, atol=1e-6)


def test_score_keeps_the_model_mode_and_generic_datasets(rng):
    model = make_model().train()
    dataset = make_dataset(rng, n=9)
    # Any map-style dataset of (input, label) pairs, here a transform that yields floats.
    dataset.transform = lambda image: image.float() / 255
    scores = score(model, dataset, batch_size=4)
    assert model.training
    logits, _ = all_logits(model.eval(), dataset)
    torch.testing.assert_close(scores.entropy, ops.entropy(logits)[0], rtol=1e-5, atol=0)


def test_metadata_names_model_and_dataset(rng):
    dataset, model = make_dataset(rng), make_model()
    scores = score(model, dataset)
    meta = scores.meta
    assert meta["model"]["name"] == "CifarResNet" and meta["model"]["parameters"] == sum(
        p.numel() for p in model.parameters())
    assert meta["model"]["sha256"] == model_info(make_model())["sha256"] != model_info(make_model(seed=1))["sha256"]
    assert meta["dataset"] == {"name": "tiny", "n": len(dataset), "fingerprint": dataset.fingerprint()}
    assert scores.dataset_fingerprint == dataset.fingerprint()


def test_feature_layer_of_any_module(rng):
    dataset = make_dataset(rng, n=10, size=6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 3))
    scores = score(model, dataset, features=True)  # default: the input of the last Linear
    x = torch.from_numpy(dataset.images).reshape(10, 36).float() / 255
    with torch.no_grad():
        torch.testing.assert_close(scores.features, model[2](model[1](x)))
        named = score(model, dataset, features=True, feature_layer="1")
    torch.testing.assert_close(named.features, x)
    assert named.meta["scoring"]["feature_layer"] == "1"
    with pytest.raises(ValueError, match="not a submodule"):
        score(model, dataset, features=True, feature_layer="head")
    with pytest.raises(ValueError, match="feature_layer="):
        score(nn.Sequential(nn.Flatten(), nn.Unflatten(1, (36, 1))), dataset, features=True)


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Flatten(0), r"logits \[B, C\]"),  # 1-D output
        (nn.Identity(), r"logits \[B, C\]"),  # 4-D output
        (nn.Sequential(nn.Flatten(), nn.Linear(36, 3), nn.Unflatten(1, (3, 1))), r"got shape \(4, 3, 1\)"),
    ],
)
def test_model_output_must_be_b_by_c(rng, model, match):
    with pytest.raises(ValueError, match=match):
        score(model, make_dataset(rng, n=4, size=6))


def test_model_returning_a_tuple_or_non_finite_logits(rng):
    dataset = make_dataset(rng, n=6, size=6)

    class Pair(nn.Module):
        def forward(self, x):
            return x.flatten(1), x

    with pytest.raises(ValueError, match="got a tuple"):
        score(Pair(), dataset)

    class Broken(nn.Module):
        def forward(self, x):
            out = x.flatten(1)[:, :3].clone()
            out[2, 0] = float("nan")
            return out

    with pytest.raises(ValueError, match=r"examples 0\.\.5: .*non-finite"):
        score(Broken(), dataset, batch_size=6)
    with pytest.raises(ValueError, match="empty"):
        score(nn.Identity(), ImageArrayDataset(np.zeros((0, 2, 2, 1), np.uint8), np.zeros(0), "empty"))


def test_amp_on_cpu_is_close(rng):
    dataset, model = make_dataset(rng), make_model()
    exact = score(model, dataset)
    approx = score(model, dataset, amp=True)
    assert approx.meta["scoring"]["amp"] is True
    # bfloat16 logits carry ~3 significant digits; the entropy follows them closely.
    assert float((approx.entropy - exact.entropy).abs().max()) < 0.05 * float(exact.entropy.max())


@pytest.mark.parametrize("amp, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_amp_runs_the_model_under_autocast(rng, amp, dtype):
    """The logits the model itself produced (seen by a forward hook) are bfloat16 exactly
    when amp is asked for: autocast was on, not merely recorded in the metadata."""
    dataset, model = make_dataset(rng, n=20), make_model()
    produced = []
    handle = model.register_forward_hook(lambda _module, _inputs, output: produced.append(output.dtype))
    try:
        score(model, dataset, batch_size=8, amp=amp)
    finally:
        handle.remove()
    assert produced == [dtype] * 3


def test_save_load_round_trip_with_every_field(rng, tmp_path):
    dataset, model = make_dataset(rng), make_model()
    scores = score(model, dataset, features=True)
    scores = scores.replace(forgetting_counts=torch.tensor([np.inf] + [2.0] * (len(dataset) - 1)))
    path = tmp_path / "s.pxscores"
    scores.save(path)
    loaded = Scores.load(path, dataset=dataset)
    for name in ("entropy", "log10_entropy", "labels", "predictions", "features", "forgetting_counts"):
        assert torch.equal(getattr(loaded, name), getattr(scores, name)), name
    assert loaded.meta == scores.meta and loaded.fingerprint() == scores.fingerprint()
    # Half-precision features and scores without optional fields round-trip too.
    half = Scores.from_entropy([0.5, 0.25, 1.0]).replace(features=torch.randn(3, 2).to(torch.bfloat16))
    half.save(path)
    back = Scores.load(path)
    assert back.features.dtype == torch.bfloat16 and torch.equal(back.features, half.features)
    assert back.labels is None and back.predictions is None


def version1_float32_file(path, entropy, log10_entropy, labels) -> str:
    """A scores file as proxyfast wrote every one before float64 log10 entropies: float32
    entropy and log10 entropy, int64 labels, written here from the format's description."""
    arrays = [("entropy", np.asarray(entropy, "<f4")), ("log10_entropy", np.asarray(log10_entropy, "<f4")),
              ("labels", np.asarray(labels, "<i8"))]
    digest = hashlib.sha256(struct.pack("<Q", len(entropy)) + arrays[1][1].tobytes())
    header = json.dumps({
        "n": len(entropy), "fingerprint": "sha256:" + digest.hexdigest(), "meta": {"model": "old"},
        "arrays": [{"name": name, "dtype": str(a.dtype), "shape": list(a.shape)} for name, a in arrays],
        "proxyfast_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
    }).encode()
    body = MAGIC + struct.pack("<IQ", 1, len(header)) + header + b"".join(a.tobytes() for _, a in arrays)
    path.write_bytes(body + hashlib.sha256(body).digest())
    return "sha256:" + digest.hexdigest()


def test_a_float32_file_of_an_earlier_version_loads_as_float32(rng, tmp_path):
    log10 = rng.uniform(-20, 0.5, size=101)
    entropy, labels = 10.0**log10, rng.integers(0, 7, size=101)
    path = tmp_path / "old.pxscores"
    fingerprint = version1_float32_file(path, entropy, log10, labels)
    old = Scores.load(path)
    assert old.log10_entropy.dtype == old.entropy.dtype == torch.float32
    np.testing.assert_array_equal(old.log10_entropy.numpy(), np.float32(log10))
    assert old.labels.tolist() == labels.tolist() and old.meta == {"model": "old"}
    # The fingerprint is that of the float32 rounding, so the same data in float64 has it too.
    assert old.fingerprint() == fingerprint == Scores.from_log10_entropy(log10).fingerprint()


def test_float64_log10_entropies_are_saved_and_loaded_as_float64(rng, tmp_path):
    log10 = rng.uniform(-20, 0.5, size=64)
    scores = Scores.from_log10_entropy(log10, labels=rng.integers(0, 3, size=64))
    path = tmp_path / "s.pxscores"
    scores.save(path)
    loaded = Scores.load(path)
    assert loaded.log10_entropy.dtype == torch.float64 and loaded.entropy.dtype == torch.float32
    np.testing.assert_array_equal(loaded.log10_entropy.numpy(), log10)
    assert torch.equal(loaded.entropy, scores.entropy) and loaded.fingerprint() == scores.fingerprint()
    # Two files whose float64 log10 entropies differ only by a float32 rounding share the
    # fingerprint, so it is the bytes' checksum that guards the float64 values.
    data = bytearray(path.read_bytes())
    offset = data.index(np.float64(log10[:1]).tobytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        Scores.load(path)


def test_scores_file_from_another_dataset_is_refused(rng, tmp_path):
    dataset, model = make_dataset(rng), make_model()
    path = tmp_path / "s.pxscores"
    score(model, dataset).save(path)
    other = make_dataset(rng)  # same size and name, other pixels
    with pytest.raises(DatasetMismatchError, match=r"another dataset.*fingerprint"):
        Scores.load(path, dataset=other)
    with pytest.raises(DatasetMismatchError, match="53 examples"):
        Scores.load(path).check_dataset(make_dataset(rng, n=20))
    assert issubclass(DatasetMismatchError, ValueError)


def test_corrupt_truncated_and_newer_files(rng, tmp_path):
    path = tmp_path / "s.pxscores"
    score(make_model(), make_dataset(rng)).save(path)
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    bad = tmp_path / "bad"
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    for content, match in [
        (bytes(flipped), "corrupt"),
        (data[:-100], "truncated|corrupt"),
        (data[:5], "truncated"),
        (b"PXYSET\0\0" + data[8:], "not a proxyfast scores file"),
        (data[:8] + (2).to_bytes(4, "little") + data[12:], "newer proxyfast"),
    ]:
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=match):
            Scores.load(bad)


def test_save_is_atomic_and_meta_must_be_json(tmp_path):
    path = tmp_path / "s.pxscores"
    good = Scores.from_entropy([0.5, 0.25])
    good.save(path)
    before = path.read_bytes()
    bad = good.replace(meta={"x": object()})
    with pytest.raises(ValueError, match="JSON"):
        bad.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["s.pxscores"]


def test_scores_field_validation():
    base = Scores.from_entropy([0.5, 0.25, 1.0])
    with pytest.raises(ValueError, match="predictions"):
        base.replace(predictions=torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="features"):
        base.replace(features=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="non-negative"):
        base.replace(forgetting_counts=torch.tensor([1.0, -1.0, 0.0]))
    assert base.replace(features=torch.zeros(3, 2)).fingerprint() == base.fingerprint()


def test_entropy_list_export(rng, tmp_path):
    scores = score(make_model(), make_dataset(rng))
    path = tmp_path / "entropy.txt"
    write_entropy_list(path, scores)
    back = read_entropy_list(path)
    # read back in float64 (a list has no dtype), rounding to the scored fp32 values
    assert torch.equal(back.log10_entropy.float(), scores.log10_entropy) and torch.equal(back.labels, scores.labels)


def test_public_api():
    assert proxyfast.score is score and proxyfast.DatasetMismatchError is DatasetMismatchError


@requires_cuda
def test_score_on_cuda_matches_cpu(rng):
    dataset, model = make_dataset(rng), make_model()
    cpu = score(model, dataset, features=True, device="cpu")
    gpu = score(model, dataset, features=True, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.entropy.cpu(), cpu.entropy, rtol=1e-3, atol=1e-6)
    assert torch.equal(gpu.labels.cpu(), cpu.labels)
