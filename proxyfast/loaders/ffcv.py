"""Proxy loaders for FFCV: write a data set to a .beton once, then stream only the proxy.

    >>> write_beton(proxyfast.data.fashion_mnist(), "fashion_mnist.beton")
    >>> loader = ffcv_loader("fashion_mnist.beton", proxy, part="train", batch_size=64, seed=0)
    >>> for images, labels in loader:  # uint8 [B, 1, 28, 28], int64 [B]
    ...     ...

A .beton written by :func:`write_beton` has two fields, ``image`` and ``label`` (FFCV's
``IntField``). Images are stored either

- ``"raw"`` (the default, for small images such as 28x28 or 32x32): an ``NDArrayField``
  of uint8 ``[H, W, C]``, the pixels exactly as given, any number of channels. A
  1-channel image such as Fashion-MNIST's stays 1-channel: FFCV's ``RGBImageField`` wants
  3 channels, and replicating them would triple the file and change what the loader
  returns; or
- ``"jpeg"`` (for large RGB images): FFCV's ``RGBImageField`` in JPEG mode, lossy,
  3 channels only, sizes may differ between images.

FFCV is an optional dependency; see :data:`INSTALL_HINT`.
"""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import numbers
import os
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data.arrays import ImageArrayDataset
from ..selection import ProxySet
from ._subset import subset_indices
from .._checks import check_device, check_int
from .pytorch import ProxySampler

__all__ = ["FFCVProxyLoader", "IMAGE_FIELD", "INSTALL_HINT", "LABEL_FIELD", "ffcv_loader", "write_beton"]

IMAGE_FIELD = "image"
LABEL_FIELD = "label"
IMAGE_FORMATS = ("raw", "jpeg")
INSTALL_HINT = (
    "FFCV is an optional dependency of proxyfast. Install its system libraries, then the extra: "
    "`apt-get install -y --no-install-recommends build-essential pkg-config libturbojpeg0-dev libopencv-dev` "
    "and `pip install 'proxyfast[ffcv]'`"
)
_ERROR_BYTES = 1024


def _require_ffcv() -> None:
    """Imports FFCV, or raises ImportError saying how to install it. FFCV sets torch's
    thread count as it loads (to 1) and as it builds a loader (to its workers); the
    caller's setting is put back, so that importing or using a loader changes neither
    the speed nor the floating-point sums of the rest of the program."""
    threads = torch.get_num_threads()
    try:
        import ffcv  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} (importing ffcv failed: {error})") from error
    finally:
        torch.set_num_threads(threads)


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --------------------------------------------------------------------------- writing


def _as_hwc(image: Any) -> np.ndarray:
    """A sample's image as a uint8 array [H, W, C]: from a tensor [C, H, W] (what
    torchvision-style datasets return), a PIL image, or an array [H, W, C] or [H, W]."""
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected a uint8 image tensor [C, H, W], got {image.dtype} {list(image.shape)}")
        image = image[None] if image.ndim == 2 else image
        return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image, without importing PIL
        image = np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an image tensor, array or PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 image array [H, W, C], got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image[..., None] if image.ndim == 2 else image)


def _as_label(label: Any) -> int:
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        label = label.item()
    elif isinstance(label, np.ndarray) and label.size == 1:
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise TypeError(f"expected an integer label, got {type(label).__name__}")
    return int(label)


class _BetonSource:
    """``dataset`` as FFCV's writer reads it: ``source[i] = (uint8 [H, W, C], int label)``.

    FFCV's writer processes wait forever for a sample that raised, so a bad sample is
    written as a placeholder instead and its error is kept in shared memory, for
    :func:`write_beton` to raise once the writer is done.
    """

    def __init__(self, dataset, image_format: str) -> None:
        self.dataset = dataset
        self.image_format = image_format
        # Example 0, read here, fixes the raw field's shape and fails, if it does, with a
        # plain traceback rather than in a writer process.
        self.shape = self._fetch(0)[0].shape
        self.read(0)
        self.error = multiprocessing.Array(ctypes.c_char, _ERROR_BYTES)
        self._placeholder = (np.zeros(self.shape, dtype=np.uint8), 0)

    def __len__(self) -> int:
        return len(self.dataset)

    def _fetch(self, index: int) -> tuple[np.ndarray, int]:
        if isinstance(self.dataset, ImageArrayDataset):
            # The stored pixels, not transform(pixels): transforms belong to the loading side.
            return self.dataset.images[index], int(self.dataset.labels[index])
        image, label = self.dataset[index]
        return _as_hwc(image), _as_label(label)

    def read(self, index: int) -> tuple[np.ndarray, int]:
        """Example ``index``, checked here: FFCV's own checks would fail in a writer process."""
        image, label = self._fetch(index)
        if self.image_format == "raw" and image.shape != self.shape:
            raise ValueError(f"image shape {image.shape} differs from the first image's {self.shape} "
                             "(raw storage needs one shape; use image_format='jpeg' for varying sizes)")
        if self.image_format == "jpeg" and image.shape[2] != 3:
            raise ValueError(f"JPEG storage needs RGB images [H, W, 3], got {image.shape}")
        return image, label

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        try:
            return self.read(index)
        except Exception as error:  # noqa: BLE001 (reported by write_beton, see the class docstring)
            with self.error.get_lock():
                if not self.error.value:
                    message = f"example {index}: {type(error).__name__}: {error}"
                    self.error.value = message.encode("utf-8", "replace")[: _ERROR_BYTES - 1]
            return self._placeholder


def write_beton(
    dataset,
    path: str | os.PathLike,
    *,
    image_format: str = "raw",
    jpeg_quality: int = 90,
    max_resolution: int | None = None,
    num_workers: int | None = None,
) -> str:
    """Writes every example of ``dataset`` to the FFCV file ``path``, atomically.

    Args:
        dataset: a map-style dataset whose ``dataset[i]`` is ``(image, label)``, the
            image a uint8 tensor [C, H, W] (as :class:`~proxyfast.data.ImageArrayDataset`
            returns), a uint8 array [H, W, C] or a PIL image, the label an integer. For an
            ``ImageArrayDataset`` the stored pixels are written, before any transform.
        path: the .beton to write; a reader sees the old file or the complete new one.
        image_format: ``"raw"``, exact pixels of one shape (any number of channels), or
            ``"jpeg"``, JPEG-compressed RGB images of any size (see the module docstring).
        jpeg_quality: JPEG quality, 1 to 100 (``"jpeg"`` only).
        max_resolution: with ``"jpeg"``, images whose longer side exceeds this are
            downscaled to it; default none.
        num_workers: writer processes; default one per available core.

    Returns:
        ``path``, as a string.

    Raises:
        ImportError: FFCV is not installed (the message says how to install it).
        ValueError: an empty dataset, an unknown image format, or an example that cannot
            be stored (the message names it); ``path`` is then left as it was.
    """
    _require_ffcv()
    from ffcv.fields import IntField, NDArrayField, RGBImageField
    from ffcv.writer import MIN_PAGE_SIZE, DatasetWriter

    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(map(repr, IMAGE_FORMATS))}, got {image_format!r}")
    jpeg_quality = check_int("jpeg_quality", jpeg_quality, 1)
    if jpeg_quality > 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    num_workers = check_int("num_workers", _default_workers() if num_workers is None else num_workers, 1)
    if len(dataset) == 0:
        raise ValueError("cannot write an empty dataset to a .beton")

    source = _BetonSource(dataset, image_format)
    writer_options = {}
    if image_format == "raw":
        image_field = NDArrayField(np.dtype("uint8"), source.shape)
        # FFCV's default 8 MiB pages would make a small data set's file mostly padding
        # (each writer process fills its own pages); a page must still hold one image.
        writer_options["page_size"] = max(MIN_PAGE_SIZE, 1 << (int(np.prod(source.shape)) - 1).bit_length())
    else:
        image_field = RGBImageField(write_mode="jpg", jpeg_quality=jpeg_quality, max_resolution=max_resolution)
    fields = {IMAGE_FIELD: image_field, LABEL_FIELD: IntField()}

    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    tmp_path = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        writer = DatasetWriter(tmp_path, fields, num_workers=min(num_workers, len(dataset)), **writer_options)
        writer.from_indexed_dataset(source)
        if source.error.value:
            raise ValueError(f"cannot write {type(dataset).__name__} to {path}: "
                             f"{source.error.value.decode('utf-8', 'replace')}")
        with open(tmp_path, "rb") as file:  # on disk before it takes the final name
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    return path


# --------------------------------------------------------------------------- reading


def _read_beton(path: str):
    """FFCV's Reader of ``path``, after checking that it exists and holds write_beton's fields."""
    from ffcv.fields import IntField, NDArrayField, RGBImageField
    from ffcv.reader import Reader

    if not os.path.isfile(path):
        raise FileNotFoundError(
            errno.ENOENT, f"no such .beton file: {path!r} (write one with proxyfast.loaders.write_beton "
            "or `proxyfast beton`)", path,
        )
    try:
        reader = Reader(path)
    except Exception as error:  # FFCV raises assertion, numpy and index errors on a bad file
        raise ValueError(f"{path}: not a readable FFCV .beton file ({type(error).__name__}: {error})") from None
    fields = {name: type(field).__name__ for name, field in reader.handlers.items()}
    image, label = reader.handlers.get(IMAGE_FIELD), reader.handlers.get(LABEL_FIELD)
    image_ok = isinstance(image, RGBImageField) or (
        isinstance(image, NDArrayField) and image.dtype == np.uint8 and len(image.shape) == 3
    )
    names = list(reader.handlers)
    if not image_ok or not isinstance(label, IntField) or names.index(IMAGE_FIELD) > names.index(LABEL_FIELD):
        raise ValueError(
            f"{path}: fields {fields} do not match: expected {IMAGE_FIELD!r} (a uint8 NDArrayField [H, W, C] "
            f"or an RGBImageField) followed by {LABEL_FIELD!r} (an IntField), as write_beton writes them"
        )
    return reader


class FFCVProxyLoader:
    """An FFCV ``Loader`` over a proxy subset, with :func:`torch_loader`'s epoch rules.

    Iterating yields ``(images, labels)``: uint8 [B, C, H, W] and int64 [B] with the
    default pipelines, on ``device`` when one was given. FFCV reuses its output buffers:
    a batch stays valid only until a few more have been drawn, so ``.clone()`` what you
    keep.

    Attributes:
        loader: the underlying ``ffcv.loader.Loader``.
        sampler: the :class:`ProxySampler` that decides each epoch's order.
    """

    def __init__(self, loader, sampler: ProxySampler, order) -> None:
        self.loader = loader
        self.sampler = sampler
        self._order = order

    @property
    def batch_size(self) -> int:
        return self.loader.batch_size

    @property
    def drop_last(self) -> bool:
        return self.loader.drop_last

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass use epoch ``epoch``'s order (see :class:`ProxySampler`)."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self._order.epoch = self.sampler.advance()
        threads = torch.get_num_threads()
        try:
            for batch in self.loader:
                # FFCV's epoch thread sets torch's thread count as it starts (see _require_ffcv).
                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
                yield batch
        finally:
            torch.set_num_threads(threads)

    def __repr__(self) -> str:
        return f"FFCVProxyLoader({self.loader.fname!r}, batch_size={self.batch_size}, sampler={self.sampler})"


def ffcv_loader(
    path: str | os.PathLike,
    proxyset: ProxySet | Sequence[int] | np.ndarray | torch.Tensor,
    part: str = "all",
    batch_size: int = 64,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int | None = None,
    drop_last: bool = False,
    train_portion: float = 0.5,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str | None = None,
    image_pipeline: list | None = None,
    label_pipeline: list | None = None,
    os_cache: bool = True,
    batches_ahead: int = 3,
) -> FFCVProxyLoader:
    """An FFCV loader streaming only the proxy's examples of the .beton at ``path``.

    The same epochs as :func:`torch_loader` with the same arguments: every example of
    ``part`` once per epoch, in the very order the PyTorch loader uses for that seed and
    epoch, ``drop_last`` dropping the incomplete last batch (FFCV's own default drops it;
    here, as in PyTorch, it is kept unless asked), the same sharding over ranks.

    Args:
        path: a .beton written by :func:`write_beton` (or any with its two fields).
        proxyset, part, batch_size, shuffle, seed, drop_last, train_portion, rank,
            world_size: as for :func:`torch_loader`.
        num_workers: FFCV's decoding threads; default one per available core.
        device: where batches go (``ToDevice``); default: they stay on the CPU.
        image_pipeline, label_pipeline: FFCV operations replacing the default ones
            (decode, ``ToTensor``, ``ToDevice`` when a device is given, then
            ``ToTorchImage`` for images, ``Squeeze`` for labels); for example a
            ``RandomResizedCropRGBImageDecoder`` for JPEG images of varying size.
        os_cache, batches_ahead: passed to FFCV's ``Loader``.

    Raises:
        ImportError: FFCV is not installed (the message says how to install it).
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a .beton, its fields are not ``image`` and
            ``label``, or its length or the indices do not match the proxy.
    """
    _require_ffcv()
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.decoders import NDArrayDecoder, SimpleRGBImageDecoder
    from ffcv.fields.ndarray import NDArrayField
    from ffcv.loader import Loader
    from ffcv.transforms import Squeeze, ToDevice, ToTensor, ToTorchImage

    from ._ffcv_order import ProxyTraversalOrder

    path = os.fspath(path)
    batch_size = check_int("batch_size", batch_size, 1)
    num_workers = check_int("num_workers", _default_workers() if num_workers is None else num_workers, 1)
    to_device = [] if device is None else [ToDevice(check_device("device", device), non_blocking=True)]
    reader = _read_beton(path)
    indices = subset_indices(proxyset, part, train_portion, int(reader.num_samples), f"the .beton {path!r}")
    sampler = ProxySampler(indices, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)

    if image_pipeline is None:
        raw = isinstance(reader.handlers[IMAGE_FIELD], NDArrayField)
        decoder = NDArrayDecoder() if raw else SimpleRGBImageDecoder()
        image_pipeline = [decoder, ToTensor(), *to_device, ToTorchImage(channels_last=False)]
    if label_pipeline is None:
        label_pipeline = [IntDecoder(), ToTensor(), Squeeze(1), *to_device]
    pipelines = {name: None for name in reader.handlers}  # other fields are not decoded
    pipelines.update({IMAGE_FIELD: image_pipeline, LABEL_FIELD: label_pipeline})

    order = ProxyTraversalOrder(sampler)
    threads = torch.get_num_threads()
    loader = Loader(
        path, batch_size=batch_size, num_workers=num_workers, os_cache=os_cache, order=order,
        indices=indices, pipelines=pipelines, drop_last=drop_last, batches_ahead=batches_ahead,
        # The order shards over ranks itself; FFCV's distributed mode would shard again.
        distributed=False, seed=sampler.seed,
    )
    torch.set_num_threads(threads)  # see _require_ffcv
    return FFCVProxyLoader(loader, sampler, order)
