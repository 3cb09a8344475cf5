"""Scores: construction, validation, devices and the fingerprint."""

import hashlib
import struct

import numpy as np
import pytest
import torch

from proxyfast.scoring import Scores, as_scores

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def random_entropies(rng, n):
    return 10.0 ** rng.uniform(-20, 0.5, size=n)


@pytest.mark.parametrize("kind", ["list", "numpy64", "numpy32", "tensor"])
def test_from_entropy_accepts_sequences_arrays_and_tensors(rng, kind):
    values = random_entropies(rng, 257)
    given = {
        "list": values.tolist(),
        "numpy64": values,
        "numpy32": values.astype(np.float32),
        "tensor": torch.from_numpy(values),
    }[kind]
    scores = Scores.from_entropy(given)
    source = np.asarray(given, dtype=np.float64)
    log10_dtype = torch.float32 if kind == "numpy32" else torch.float64
    assert scores.entropy.dtype == torch.float32 and scores.log10_entropy.dtype == log10_dtype
    assert len(scores) == 257 and scores.device == torch.device("cpu") and scores.labels is None
    np.testing.assert_array_equal(scores.entropy.numpy(), source.astype(np.float32))
    # numpy's float64 log10 of the values as given (the paper's), kept in float64 for
    # float64 input, rounded once to fp32 for fp32 input.
    expected = np.log10(source)
    np.testing.assert_array_equal(scores.log10_entropy.numpy(), expected.astype(np.float32) if kind == "numpy32" else expected)


def test_from_entropy_keeps_labels(rng):
    labels = rng.integers(0, 10, size=50)
    scores = Scores.from_entropy(random_entropies(rng, 50), labels=labels)
    assert scores.labels.dtype == torch.int64
    np.testing.assert_array_equal(scores.labels.numpy(), labels)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_from_entropy_rejects_non_positive_or_non_finite_naming_the_index(rng, bad):
    values = random_entropies(rng, 10)
    values[6] = bad
    values[8] = bad
    with pytest.raises(ValueError, match=r"entropy must be finite and positive; entropy\[6\]"):
        Scores.from_entropy(values)


@pytest.mark.parametrize(
    "values, error, match",
    [
        ([], ValueError, "entropy is empty"),
        (np.ones((3, 2)), ValueError, "entropy must be 1-D"),
        (np.array([1 + 1j, 2]), TypeError, "entropy must hold real numbers"),
        (torch.tensor([True, False]), TypeError, "entropy must hold real numbers"),
        (["a", "b"], TypeError, "entropy must hold real numbers"),
        ([[1.0], [1.0, 2.0]], ValueError, "entropy must be a 1-D sequence"),
    ],
)
def test_from_entropy_rejects_wrong_shape_dtype_or_emptiness(values, error, match):
    with pytest.raises(error, match=match):
        Scores.from_entropy(values)


def test_labels_are_checked():
    with pytest.raises(ValueError, match="labels has 2 entries but there are 3 examples"):
        Scores.from_entropy([1.0, 2.0, 3.0], labels=[0, 1])
    with pytest.raises(TypeError, match="labels must hold integers"):
        Scores.from_entropy([1.0, 2.0, 3.0], labels=[0.5, 1.0, 2.0])


def test_from_logits_uses_the_entropy_op(rng):
    logits = torch.from_numpy(rng.normal(0, 5, size=(33, 7)).astype(np.float32))
    logits[3, 2] = 300.0  # an easy example whose entropy underflows fp32
    scores = Scores.from_logits(logits, labels=torch.arange(33))
    z = logits.double()
    p = torch.softmax(z, dim=1)
    textbook = -(p * torch.log_softmax(z, dim=1)).sum(dim=1)
    rows = torch.arange(33) != 3
    torch.testing.assert_close(scores.entropy[rows].double(), textbook[rows], rtol=1e-5, atol=0)
    assert torch.isfinite(scores.log10_entropy).all()
    assert scores.log10_entropy[3] < -100
    assert scores.labels.tolist() == list(range(33))


def test_from_logits_rejects_non_finite_and_wrong_dtype():
    logits = torch.zeros(4, 3)
    logits[2, 1] = float("nan")
    with pytest.raises(ValueError, match="logits has non-finite values"):
        Scores.from_logits(logits)
    with pytest.raises(TypeError, match="logits must be float32, float16 or bfloat16"):
        Scores.from_logits(torch.zeros(4, 3, dtype=torch.float64))


def test_from_log10_entropy(rng):
    log10 = rng.uniform(-30, 1, size=100)
    scores = Scores.from_log10_entropy(log10)
    assert scores.log10_entropy.dtype == torch.float64  # float64 given, float64 kept
    np.testing.assert_array_equal(scores.log10_entropy.numpy(), log10)
    np.testing.assert_array_equal(scores.entropy.numpy(), (10.0**log10).astype(np.float32))
    narrow = Scores.from_log10_entropy(log10.astype(np.float32))
    assert narrow.log10_entropy.dtype == torch.float32
    np.testing.assert_array_equal(narrow.log10_entropy.numpy(), log10.astype(np.float32))
    assert narrow.fingerprint() == scores.fingerprint()
    with pytest.raises(ValueError, match=r"log10_entropy must be finite; log10_entropy\[1\]"):
        Scores.from_log10_entropy([0.0, float("-inf")])


def test_fingerprint_is_that_of_the_float32_log10_entropies_whatever_the_dtype(rng):
    entropy = random_entropies(rng, 300)
    wide = Scores.from_entropy(entropy)
    narrow = Scores(wide.entropy, wide.log10_entropy.to(torch.float32))
    assert wide.log10_entropy.dtype == torch.float64 and narrow.log10_entropy.dtype == torch.float32
    assert wide.fingerprint() == narrow.fingerprint()
    assert Scores.from_entropy(entropy.tolist()).fingerprint() == wide.fingerprint()
    # float32 entropies: their float64 log10, rounded, is the same data in float32.
    exact = entropy.astype(np.float32)
    assert Scores.from_entropy(exact).fingerprint() == Scores.from_entropy(exact.astype(np.float64)).fingerprint()
    assert Scores.from_entropy(entropy * 1.001).fingerprint() != wide.fingerprint()


def test_direct_construction_is_validated():
    with pytest.raises(TypeError, match="log10_entropy must be a 1-D float32 or float64 tensor"):
        Scores(torch.ones(3), torch.ones(3, dtype=torch.float16))
    with pytest.raises(TypeError, match="entropy must be a 1-D float32 tensor"):
        Scores(torch.ones(3, dtype=torch.float64), torch.ones(3))
    with pytest.raises(ValueError, match="same length"):
        Scores(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="scores are empty"):
        Scores(torch.ones(0), torch.ones(0))


def test_fingerprint_hashes_n_and_the_fp32_log10_entropies(rng):
    values = random_entropies(rng, 1000)
    scores = Scores.from_entropy(values)
    expected = hashlib.sha256(struct.pack("<Q", 1000) + scores.log10_entropy.numpy().astype("<f4").tobytes())
    assert scores.fingerprint() == "sha256:" + expected.hexdigest()
    assert scores.fingerprint() == Scores.from_entropy(values.tolist()).fingerprint()


def test_fingerprint_tells_scores_apart(rng):
    values = random_entropies(rng, 100)
    base = Scores.from_entropy(values).fingerprint()
    changed = values.copy()
    changed[50] *= 1.5
    assert Scores.from_entropy(changed).fingerprint() != base
    assert Scores.from_entropy(values[:99]).fingerprint() != base


def test_to_keeps_values_labels_and_fingerprint(rng):
    scores = Scores.from_entropy(random_entropies(rng, 20), labels=np.arange(20))
    fingerprint = scores.fingerprint()
    assert scores.to("cpu") is scores
    assert "n=20" in repr(scores) and "labels=yes" in repr(scores)
    meta = Scores.from_entropy([1.0, 2.0])
    meta.meta["source"] = "x"
    assert meta.to(torch.device("cpu")).meta == {"source": "x"}
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 64


@requires_cuda
def test_fingerprint_is_the_same_on_cuda(rng):
    scores = Scores.from_entropy(random_entropies(rng, 5000), labels=np.arange(5000))
    on_gpu = Scores.from_entropy(torch.from_numpy(scores.entropy.numpy()).cuda(), labels=np.arange(5000))
    moved = scores.to("cuda")
    assert moved.device.type == "cuda" and moved.labels.device.type == "cuda"
    assert moved.fingerprint() == on_gpu.fingerprint() == scores.fingerprint()


def test_as_scores_dispatches_on_rank(rng):
    entropies = random_entropies(rng, 10)
    assert torch.equal(as_scores(entropies).log10_entropy, Scores.from_entropy(entropies).log10_entropy)
    logits = torch.randn(10, 4)
    assert torch.equal(as_scores(logits).log10_entropy, Scores.from_logits(logits).log10_entropy)
    assert torch.equal(as_scores(logits.numpy()).log10_entropy, Scores.from_logits(logits).log10_entropy)
    scores = Scores.from_entropy(entropies)
    assert as_scores(scores) is scores
    for bad in (torch.ones(2, 3, 4), torch.tensor(1.0), np.ones((2, 2, 2))):
        with pytest.raises(ValueError, match="scores must be 1-D entropies or 2-D logits"):
            as_scores(bad)
