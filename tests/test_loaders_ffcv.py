"""The FFCV proxy loader and .beton writer: the PyTorch loader's epochs through FFCV.

FFCV compiles each loader's pipeline with numba on its first epoch (seconds), so these
tests share a few loaders and compare them with the PyTorch loader, whose epochs
test_loaders_torch.py checks in detail.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast.cli import main
from proxyfast.data import ImageArrayDataset
from proxyfast.loaders import cycle_loader, ffcv_loader, torch_loader, write_beton

from _loader_data import index_dataset, index_proxy

requires_ffcv = pytest.mark.skipif(
    importlib.util.find_spec("ffcv") is None,
    reason="FFCV is not installed (apt-get install build-essential pkg-config libturbojpeg0-dev libopencv-dev; "
    "pip install 'proxyfast[ffcv]')",
)

N = 300
K = 50
WORKERS = 2


def batches(loader):
    """One pass: (images, labels) per batch, copied out of FFCV's reused buffers."""
    return [(images.clone(), labels.clone()) for images, labels in loader]


def indices_of(epoch):
    return [i for images, _ in epoch for i in (images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist()]


def assert_same_epoch(ffcv_epoch, torch_epoch):
    assert [len(labels) for _, labels in ffcv_epoch] == [len(labels) for _, labels in torch_epoch]
    for (images, labels), (torch_images, torch_labels) in zip(ffcv_epoch, torch_epoch):
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert torch.equal(images, torch_images) and torch.equal(labels, torch_labels)


@pytest.fixture(scope="module")
def dataset():
    return index_dataset(N)


@pytest.fixture(scope="module")
def proxy():
    return index_proxy(N, K)


@pytest.fixture(scope="module")
def beton(tmp_path_factory, dataset):
    if importlib.util.find_spec("ffcv") is None:
        pytest.skip("FFCV is not installed")
    return write_beton(dataset, tmp_path_factory.mktemp("beton") / "index.beton", num_workers=WORKERS)


@requires_ffcv
def test_epochs_are_the_torch_loaders_epochs(dataset, proxy, beton):
    loader = ffcv_loader(beton, proxy, batch_size=8, seed=5, num_workers=WORKERS)
    reference = torch_loader(dataset, proxy, batch_size=8, seed=5)
    epochs = []
    for _ in range(3):
        epoch = batches(loader)
        assert_same_epoch(epoch, batches(reference))  # pixels and labels of the source, same order
        assert sorted(indices_of(epoch)) == sorted(proxy.indices.tolist())
        epochs.append(indices_of(epoch))
    assert len({tuple(e) for e in epochs}) == 3
    assert len(loader) == 7
    loader.set_epoch(1)
    assert indices_of(batches(loader)) == epochs[1]
    cycle = cycle_loader(loader)  # continues at epoch 2
    assert indices_of([[t.clone() for t in next(cycle)] for _ in range(len(loader))]) == epochs[2]


@requires_ffcv
def test_halves_are_disjoint_and_cover_the_proxy_and_drop_last_drops_the_tail(dataset, proxy, beton):
    train = ffcv_loader(beton, proxy, part="train", batch_size=8, seed=1, num_workers=WORKERS, drop_last=True)
    val = ffcv_loader(beton, proxy, part="val", batch_size=8, seed=1, num_workers=WORKERS)
    train_epoch, val_epoch = batches(train), batches(val)
    assert [len(labels) for _, labels in train_epoch] == [8, 8, 8]  # 25 examples, the last 1 dropped
    assert [len(labels) for _, labels in val_epoch] == [8, 8, 8, 1]
    assert_same_epoch(train_epoch, batches(torch_loader(dataset, proxy, "train", 8, seed=1, drop_last=True)))
    assert_same_epoch(val_epoch, batches(torch_loader(dataset, proxy, "val", 8, seed=1)))
    train_all, val_all = proxy.split(0.5)
    assert sorted(indices_of(val_epoch)) == sorted(val_all.tolist())
    assert set(indices_of(train_epoch)) < set(train_all.tolist())
    assert not set(train_all.tolist()) & set(val_all.tolist())


@requires_ffcv
def test_ranks_get_the_torch_loaders_shards(dataset, proxy, beton):
    for rank in range(2):
        shard = ffcv_loader(beton, proxy, batch_size=8, seed=4, num_workers=WORKERS, rank=rank, world_size=3)
        reference = torch_loader(dataset, proxy, batch_size=8, seed=4, rank=rank, world_size=3)
        for _ in range(2):
            assert_same_epoch(batches(shard), batches(reference))


@requires_ffcv
def test_jpeg_betons_of_rgb_images_round_trip_approximately(tmp_path):
    rng = np.random.default_rng(0)
    # Smooth images (JPEG's good case); the label is the index.
    gradient = np.linspace(0, 200, 32, dtype=np.float64)
    images = np.stack([np.broadcast_to((gradient[:, None, None] + rng.integers(0, 50, size=3)), (32, 32, 3))
                       for _ in range(40)]).astype(np.uint8)
    dataset = ImageArrayDataset(images, np.arange(40), name="rgb")
    path = write_beton(dataset, tmp_path / "rgb.beton", image_format="jpeg", jpeg_quality=95, num_workers=WORKERS)
    loader = ffcv_loader(path, list(range(0, 40, 3)), batch_size=5, num_workers=WORKERS, shuffle=False)
    for images_out, labels in batches(loader):
        source = torch.from_numpy(images[labels.numpy()]).permute(0, 3, 1, 2)
        assert images_out.shape == source.shape
        assert (images_out.float() - source.float()).abs().mean() < 3
    with pytest.raises(ValueError, match=r"JPEG storage needs RGB images \[H, W, 3\]"):
        write_beton(index_dataset(5), tmp_path / "gray.beton", image_format="jpeg")


@requires_ffcv
def test_any_dataset_of_tensor_or_array_images_can_be_written(tmp_path, dataset):
    class TensorItems(torch.utils.data.Dataset):
        def __len__(self):
            return len(dataset)

        def __getitem__(self, i):
            image, label = dataset[i]  # uint8 [C, H, W], int
            return (image, torch.tensor(label)) if i % 2 else (image.permute(1, 2, 0).numpy(), np.int64(label))

    path = write_beton(TensorItems(), tmp_path / "items.beton", num_workers=WORKERS)
    loader = ffcv_loader(path, np.arange(N), batch_size=64, shuffle=False, num_workers=WORKERS)
    assert_same_epoch(batches(loader), batches(torch_loader(dataset, np.arange(N), batch_size=64, shuffle=False)))


@requires_ffcv
def test_a_bad_example_is_named_and_the_old_file_is_kept(tmp_path, dataset):
    class OneBad(torch.utils.data.Dataset):
        def __len__(self):
            return 30

        def __getitem__(self, i):
            image, label = dataset[i]
            return (image[:, :3] if i == 17 else image), label

    path = tmp_path / "out.beton"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"example 17: .*image shape \(3, 5, 1\) differs from the first image's"):
        write_beton(OneBad(), path, num_workers=WORKERS)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.beton"]  # no temporary file left behind
    with pytest.raises(ValueError, match="empty dataset"):
        write_beton(index_dataset(0), path)


@requires_ffcv
def test_bad_betons_and_indices_raise_clear_errors(tmp_path, proxy, beton):
    from ffcv.fields import IntField
    from ffcv.writer import DatasetWriter

    with pytest.raises(FileNotFoundError, match="no such .beton file"):
        ffcv_loader(tmp_path / "missing.beton", proxy)
    garbage = tmp_path / "garbage.beton"
    garbage.write_bytes(b"not a beton" * 10)
    with pytest.raises(ValueError, match="not a readable FFCV .beton file"):
        ffcv_loader(garbage, proxy)
    other_fields = tmp_path / "other.beton"
    DatasetWriter(str(other_fields), {"x": IntField()}, num_workers=1).from_indexed_dataset([(i,) for i in range(N)])
    with pytest.raises(ValueError, match=r"fields \{'x': 'IntField'\} do not match: expected 'image'"):
        ffcv_loader(other_fields, proxy)
    short = write_beton(index_dataset(N - 10), tmp_path / "short.beton", num_workers=WORKERS)
    with pytest.raises(ValueError, match=f"selected from {N:,} examples but the .beton .* holds {N - 10:,}"):
        ffcv_loader(short, proxy)
    with pytest.raises(ValueError, match=f"index {N} is out of range for the .beton .* of {N:,} examples"):
        ffcv_loader(beton, [1, N])
    # The device is checked before the file is read, in the wording of every device argument.
    with pytest.raises(ValueError, match="^device 'tpu' is not a valid device: use cpu, cuda or cuda:N$"):
        ffcv_loader(tmp_path / "missing.beton", proxy, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device 'cuda:0' is not available \(no CUDA device"):
            ffcv_loader(tmp_path / "missing.beton", proxy, device="cuda:0")


def test_without_ffcv_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ffcv", None)  # makes `import ffcv` raise ImportError
    for call in (lambda: ffcv_loader(tmp_path / "x.beton", [0]), lambda: write_beton(index_dataset(3), tmp_path / "x")):
        with pytest.raises(ImportError, match=r"pip install 'proxyfast\[ffcv\]'.*") as error:
            call()
        assert "libturbojpeg0-dev libopencv-dev" in str(error.value)


@requires_ffcv
@pytest.mark.skipif(not os.path.isdir(proxyfast.data.FASHION_MNIST_ROOT), reason="needs the installed Fashion-MNIST")
def test_cli_writes_a_beton_of_the_installed_fashion_mnist(tmp_path, capsys):
    out = tmp_path / "fm.beton"
    argv = ["beton", "--dataset", "fashion-mnist", "--split", "test", "--out", str(out), "--num-workers", "1"]
    assert main(argv) == 0
    assert f"wrote {out}: fashion-mnist test, 10,000 images (the first 28x28x1) stored raw" in capsys.readouterr().out
    # Every 37th image, read back through FFCV, against the dataset read directly.
    fashion = proxyfast.data.fashion_mnist(train=False)
    some = np.arange(0, len(fashion), 37)
    loader = ffcv_loader(out, some, batch_size=64, shuffle=False, num_workers=WORKERS)
    assert_same_epoch(batches(loader), batches(torch_loader(fashion, some, batch_size=64, shuffle=False)))
    assert main(["beton", "--dataset", "cifar-11", "--out", str(out)]) == 2
    assert "invalid choice: 'cifar-11'" in capsys.readouterr().err
    assert main(["beton", "--dataset", "fashion-mnist", "--out", str(out), "--image-format", "jpeg"]) == 2
    assert "JPEG storage needs RGB images" in capsys.readouterr().err


@requires_ffcv
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_go_to_the_device(dataset, proxy, beton):
    loader = ffcv_loader(beton, proxy, batch_size=8, seed=5, num_workers=WORKERS, device="cuda")
    epoch = [(images.cpu(), labels.cpu()) for images, labels in loader]
    assert_same_epoch(epoch, batches(torch_loader(dataset, proxy, batch_size=8, seed=5)))


def test_loading_and_using_ffcv_leave_torch_threads_alone(proxy, beton):
    # FFCV sets torch's thread count when it is imported and when a loader is built; a
    # different count changes the order of floating-point sums in the caller's training.
    torch.set_num_threads(3)  # restored by the conftest fixture
    loader = ffcv_loader(beton, proxy, batch_size=8, seed=2, num_workers=1)
    assert torch.get_num_threads() == 3
    assert sum(len(labels) for _, labels in loader) == len(proxy)
    assert torch.get_num_threads() == 3
    code = ("import torch; torch.set_num_threads(3); from proxyfast.loaders.ffcv import _require_ffcv; "
            "_require_ffcv(); print(torch.get_num_threads())")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["3"]
