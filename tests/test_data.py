"""Dataset readers on small files written here in the real formats, and their errors."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from proxyfast.data import (
    CorruptDatasetError,
    FASHION_MNIST_ROOT,
    DatasetNotFoundError,
    ImageFolder,
    cifar10,
    cifar100,
    dataset_fingerprint,
    digits,
    fashion_mnist,
    load_dataset,
    read_idx,
    svhn,
)


def write_idx(path, array, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    with (gzip.open if compress else open)(path, "wb") as file:
        file.write(data)


def write_fashion_mnist(root, rng, n_train=20, n_test=7, compress=True):
    suffix = ".gz" if compress else ""
    splits = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        splits[prefix] = (images, labels)
    return splits


# -- Fashion-MNIST / IDX ---------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, rng, compress):
    written = write_fashion_mnist(tmp_path, rng, compress=compress)
    for train, prefix in ((True, "train"), (False, "t10k")):
        dataset = fashion_mnist(tmp_path, train=train)
        images, labels = written[prefix]
        assert dataset.images.shape == (len(images), 28, 28, 1) and dataset.images.dtype == np.uint8
        np.testing.assert_array_equal(dataset.images[..., 0], images)
        np.testing.assert_array_equal(dataset.labels, labels.astype(np.int64))
        image, label = dataset[3]
        assert image.shape == (1, 28, 28) and image.dtype == torch.uint8 and label == labels[3]
        assert dataset.classes[0] == "T-shirt/top" and len(dataset.classes) == 10


def test_fashion_mnist_transform_is_applied(tmp_path, rng):
    write_fashion_mnist(tmp_path, rng)
    dataset = fashion_mnist(tmp_path, transform=lambda image: image.float() / 255)
    assert dataset[0][0].dtype == torch.float32


def test_fashion_mnist_missing_directory_names_path_and_package(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match=r"nowhere.*apt-get install dataset-fashion-mnist"):
        fashion_mnist(missing)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_fashion_mnist_missing_file_names_it(tmp_path, rng):
    write_fashion_mnist(tmp_path, rng)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz"):
        fashion_mnist(tmp_path, train=False)


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda data: data[: len(data) // 2], "cannot read|truncated"),  # a cut gzip stream
        (lambda data: b"not gzip at all", "cannot read"),
    ],
)
def test_fashion_mnist_corrupt_gzip(tmp_path, rng, corrupt, match):
    write_fashion_mnist(tmp_path, rng)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(CorruptDatasetError, match=match):
        fashion_mnist(tmp_path)


def test_read_idx_rejects_bad_magic_type_and_size(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(CorruptDatasetError, match="bad magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(CorruptDatasetError, match="not unsigned byte"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc")
    with pytest.raises(CorruptDatasetError, match=r"promises shape \(5,\)"):
        read_idx(path)


def test_fashion_mnist_rejects_mismatched_counts(tmp_path, rng):
    write_fashion_mnist(tmp_path, rng)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(CorruptDatasetError, match="do not match"):
        fashion_mnist(tmp_path)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_ROOT), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_real_files():
    test = fashion_mnist(train=False)
    assert len(test) == 10_000 and test.images.shape == (10_000, 28, 28, 1)
    assert np.bincount(test.labels, minlength=10).tolist() == [1000] * 10


# -- CIFAR -------------------------------------------------------------------------------

def write_cifar_batch(path, images, labels, label_key):
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R, G, B planes a row
    with open(path, "wb") as file:
        pickle.dump({b"data": rows, label_key.encode(): list(map(int, labels)), b"batch_label": b"x"}, file, protocol=2)


def test_cifar10_reads_pickle_batches(tmp_path, rng):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    parts = []
    for i in range(1, 6):
        images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=4)
        write_cifar_batch(directory / f"data_batch_{i}", images, labels, "labels")
        parts.append((images, labels))
    test_images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(directory / "test_batch", test_images, [1, 2, 3], "labels")
    with open(directory / "batches.meta", "wb") as file:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, file)

    for root in (tmp_path, directory):  # the unpacked directory or its parent
        train = cifar10(root)
        np.testing.assert_array_equal(train.images, np.concatenate([p[0] for p in parts]))
        np.testing.assert_array_equal(train.labels, np.concatenate([p[1] for p in parts]))
        assert train.classes[3] == "c3"
    test = cifar10(directory, train=False)
    np.testing.assert_array_equal(test.images, test_images)
    image, label = test[1]
    assert image.shape == (3, 32, 32) and label == 2
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), test_images[1])


def test_cifar100_fine_and_coarse(tmp_path, rng):
    images = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    rows = images.transpose(0, 3, 1, 2).reshape(5, -1)
    with open(tmp_path / "train", "wb") as file:
        pickle.dump({b"data": rows, b"fine_labels": [0, 99, 5, 7, 8], b"coarse_labels": [0, 19, 1, 2, 3]}, file)
    fine = cifar100(tmp_path)
    coarse = cifar100(tmp_path, coarse=True)
    assert fine.labels.tolist() == [0, 99, 5, 7, 8] and coarse.labels.tolist() == [0, 19, 1, 2, 3]
    np.testing.assert_array_equal(fine.images, images)
    assert fine.fingerprint() != coarse.fingerprint()


def test_cifar_errors(tmp_path, rng):
    with pytest.raises(DatasetNotFoundError, match="data_batch_1"):
        cifar10(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="missing-dir"):
        cifar10(tmp_path / "missing-dir")
    (tmp_path / "test_batch").write_bytes(b"garbage, not a pickle")
    with pytest.raises(CorruptDatasetError, match="test_batch"):
        cifar10(tmp_path, train=False)
    with open(tmp_path / "test_batch", "wb") as file:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, file)
    with pytest.raises(CorruptDatasetError, match=r"uint8 \[N, 3072\]"):
        cifar10(tmp_path, train=False)


def test_cifar_unpickler_refuses_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    with open(tmp_path / "test_batch", "wb") as file:
        pickle.dump({b"data": Exploit(), b"labels": []}, file)
    with pytest.raises(CorruptDatasetError, match="refusing to load"):
        cifar10(tmp_path, train=False)


# -- SVHN --------------------------------------------------------------------------------

def test_svhn_reads_mat(tmp_path, rng):
    scipy_io = pytest.importorskip("scipy.io")
    x = rng.integers(0, 256, size=(32, 32, 3, 6), dtype=np.uint8)
    y = np.array([[10], [1], [2], [9], [10], [5]], dtype=np.uint8)
    scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    for root in (tmp_path, tmp_path / "test_32x32.mat"):
        dataset = svhn(root, split="test")
        assert dataset.images.shape == (6, 32, 32, 3)
        assert dataset.labels.tolist() == [0, 1, 2, 9, 0, 5]
        np.testing.assert_array_equal(dataset.images[2], x[..., 2])


def test_svhn_errors(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    with pytest.raises(DatasetNotFoundError, match="train_32x32.mat"):
        svhn(tmp_path)
    with pytest.raises(ValueError, match="split"):
        svhn(tmp_path, split="validation")
    (tmp_path / "train_32x32.mat").write_bytes(b"\x00" * 300)
    with pytest.raises(CorruptDatasetError, match="train_32x32.mat"):
        svhn(tmp_path)
    scipy_io.savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))})
    with pytest.raises(CorruptDatasetError, match="one label per image"):
        svhn(tmp_path)


# -- ImageFolder -------------------------------------------------------------------------

def write_tree(root, rng):
    Image = pytest.importorskip("PIL.Image")
    written = {}
    for label, name in enumerate(["n02", "n01"[::-1], "a00"]):
        (root / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, size=(10 + i, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{i}.png")
            written[f"{name}/img{i}.png"] = pixels
    (root / "a00" / "notes.txt").write_text("not an image")
    return written


def test_image_folder_reads_tree(tmp_path, rng):
    written = write_tree(tmp_path, rng)
    dataset = ImageFolder(tmp_path)
    assert dataset.classes == ["10n", "a00", "n02"] and len(dataset) == 6
    assert dataset.labels.tolist() == [0, 0, 1, 1, 2, 2]
    image, label = dataset[3]
    assert label == 1 and image.dtype == torch.uint8
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), written["a00/img1.png"])
    resized = ImageFolder(tmp_path, size=8)
    assert resized[0][0].shape == (3, 8, 8)
    assert resized.fingerprint() != dataset.fingerprint() == ImageFolder(tmp_path).fingerprint()


def test_image_folder_errors(tmp_path, rng):
    with pytest.raises(DatasetNotFoundError, match="missing"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(CorruptDatasetError, match="no class subdirectories"):
        ImageFolder(tmp_path)
    (tmp_path / "cat").mkdir()
    with pytest.raises(CorruptDatasetError, match="no image files"):
        ImageFolder(tmp_path)
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    pytest.importorskip("PIL")
    with pytest.raises(CorruptDatasetError, match="broken.png"):
        ImageFolder(tmp_path)[0]


# -- digits, fingerprints, names ----------------------------------------------------------

def test_digits():
    pytest.importorskip("sklearn")
    everything, train, test = digits(), digits(train=True), digits(train=False)
    assert everything.images.shape == (1797, 8, 8, 1) and everything.images.max() == 255
    assert len(train) + len(test) == 1797 and len(test) == 359
    np.testing.assert_array_equal(test.labels, everything.labels[4::5])


def test_fingerprint_is_stable_and_content_sensitive(tmp_path, rng):
    write_fashion_mnist(tmp_path, rng)
    a, b = fashion_mnist(tmp_path), fashion_mnist(tmp_path)
    assert a.fingerprint() == b.fingerprint() == dataset_fingerprint(a)
    assert a.fingerprint().startswith("sha256:") and len(a.fingerprint()) == 71
    assert a.fingerprint() != fashion_mnist(tmp_path, train=False).fingerprint()
    images = a.images.copy()
    images[0, 0, 0, 0] ^= 1
    from proxyfast.data import ImageArrayDataset

    changed = ImageArrayDataset(images, a.labels, a.name)
    assert changed.fingerprint() != a.fingerprint()
    subset = torch.utils.data.Subset(a, [0, 2, 4])
    assert dataset_fingerprint(subset) != dataset_fingerprint(torch.utils.data.Subset(a, [0, 2, 5]))
    assert dataset_fingerprint([1, 2, 3]) is None


def test_load_dataset_by_name(tmp_path, rng):
    write_fashion_mnist(tmp_path, rng)
    assert len(load_dataset("fashion-mnist", tmp_path, train=False)) == 7
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="needs a root"):
        load_dataset("cifar10")
