"""Per-example scores of a baseline model: the input of every selection method.

A :class:`Scores` holds the data entropy of each example in nats (docs/design.md, "Data
entropy") and its log10, the quantity the selection histogram is built on. The log10 entropy is
the authoritative value: an entropy can underflow fp32 where its log10 is still exact,
so the methods and the fingerprint use ``log10_entropy``. It is float64 when the scores
come from float64 entropies (an array, a list, an entropy list file), so selection bins
them as the paper's code does, and float32 when they come from logits. It may also hold the model's
predictions, its penultimate features (for ``kcenter``) and forgetting counts (for
``forgetting``). :func:`score` computes one from a model and a dataset.

Scores file format, version 1 (all integers little-endian)::

    offset          size          field
    0               8             magic b"PXYSCORE"
    8               4             uint32 format version (1)
    12              8             uint64 L, the length of the header in bytes
    20              L             header: a UTF-8 JSON object (below)
    20 + L          ...           the arrays listed in the header, in that order, each
                                  C-contiguous and little-endian
    end - 32        32            SHA-256 of every byte before it

Header keys: ``n``, ``arrays`` (a list of ``{"name", "dtype", "shape"}``, dtypes named
as in torch: ``float32``, ``float64``, ``int64``, ``float16``, ``bfloat16``; ``log10_entropy``
is ``float32`` or ``float64``, read back in the dtype written), ``fingerprint``
(:meth:`Scores.fingerprint`), ``meta`` (provenance: ``model``, ``dataset`` with its
``fingerprint``, ``scoring``), ``proxyfast_version`` and ``created``. Readers ignore
keys they do not know. Files are written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import ops
from .._atomic import atomic_write
from .._fileformat import DIGEST_SIZE as _DIGEST_SIZE
from .._fileformat import PREAMBLE as _PREAMBLE
from .._fileformat import read_preamble
from .._version import __version__
from ..data import dataset_fingerprint
from ..runtime import Progress, iterate_batches, resolve_device, to_float_images

__all__ = ["DatasetMismatchError", "Scores", "as_scores", "model_info", "score"]

MAGIC = b"PXYSCORE"
FORMAT_VERSION = 1
_FILE_DTYPES = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64,
}  # fmt: skip
_FEATURE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_NARROW_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_LOG10_DTYPES = (torch.float32, torch.float64)
_ARRAY_NAMES = ("entropy", "log10_entropy", "labels", "predictions", "features", "forgetting_counts")


class DatasetMismatchError(ValueError):
    """Scores were computed on a different dataset than the one they are used with."""


def _as_real_tensor(name: str, values: Any) -> torch.Tensor:
    """``values`` (tensor, ndarray or sequence) as a 1-D tensor of real numbers, device kept."""
    if not isinstance(values, torch.Tensor):
        try:
            array = np.asarray(values)
        except ValueError as error:  # ragged nested sequences
            raise ValueError(f"{name} must be a 1-D sequence of numbers: {error}") from None
        if array.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
        values = torch.from_numpy(np.ascontiguousarray(array))
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if values.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(values.shape)}")
    if values.numel() == 0:
        raise ValueError(f"{name} is empty")
    return values


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _log10_dtype(given: torch.Tensor) -> torch.dtype:
    """float32 for entropies given in a narrower float than float64, else float64 (float64
    values, integers and Python lists, which numpy reads as float64)."""
    return torch.float32 if given.dtype in _NARROW_FLOATS else torch.float64


def paper_log10(values: torch.Tensor) -> torch.Tensor:
    """The log10 of float64 ``values`` as the paper's code takes it: numpy's on the CPU
    (torch's may differ in the last bit), torch's on other devices."""
    if values.device.type != "cpu":
        return torch.log10(values)
    with np.errstate(divide="ignore", invalid="ignore"):  # -inf for 0, NaN for negatives, as torch, no warning
        return torch.from_numpy(np.log10(values.detach().numpy()))


def _first_bad_index(bad: torch.Tensor) -> int | None:
    # One scalar crosses to the host, never the N-sized mask.
    if not bool(bad.any()):
        return None
    return int(torch.argmax(bad.to(torch.uint8)))


def _first_non_finite(values: torch.Tensor) -> int | None:
    if values.device.type != "cpu":
        return _first_bad_index(~torch.isfinite(values))
    # numpy's single-threaded passes: no thread-pool start-up for one cheap pass.
    finite = np.isfinite(values.detach().numpy())
    return None if finite.all() else int(np.argmin(finite))


def _to_float32(values: torch.Tensor) -> torch.Tensor:
    if values.device.type != "cpu":
        return values.to(torch.float32)
    with np.errstate(over="ignore"):  # beyond float32's range: inf, as torch's, without a warning
        return torch.from_numpy(values.detach().numpy().astype(np.float32))


def _as_labels(labels: Any, n: int, device: torch.device) -> torch.Tensor | None:
    if labels is None:
        return None
    labels = _as_real_tensor("labels", labels)
    if labels.is_floating_point():
        raise TypeError(f"labels must hold integers, got dtype {labels.dtype}")
    if labels.numel() != n:
        raise ValueError(f"labels has {labels.numel()} entries but there are {n} examples")
    return labels.to(device=device, dtype=torch.int64)


@dataclass(frozen=True, eq=False, repr=False)
class Scores:
    """Per-example scores of N examples, all tensors on one device.

    Attributes:
        entropy: float32 [N], softmax entropy in nats (0 where it underflows fp32).
        log10_entropy: float32 or float64 [N], finite; what the selection methods bin and
            rank, in its own dtype: float64 when made from float64 entropies, float32 when
            scored from logits.
        labels: int64 [N] class labels, or None.
        meta: free-form provenance (the model, the dataset and its fingerprint, or the
            file the scores came from); not fingerprinted.
        predictions: int64 [N], the model's predicted class, or None.
        features: [N, D] float32/float16/bfloat16 penultimate-layer features, or None.
        forgetting_counts: float32 [N], forgetting events per example, ``inf`` for
            examples never learned (:mod:`proxyfast.forgetting`), or None.

    Build one with :func:`score`, :meth:`from_logits`, :meth:`from_entropy` or
    :meth:`from_log10_entropy`; add fields with :meth:`replace`. Treat the tensors as
    read-only: the fingerprint is computed once and cached.
    """

    entropy: torch.Tensor
    log10_entropy: torch.Tensor
    labels: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    predictions: torch.Tensor | None = field(default=None, kw_only=True)
    features: torch.Tensor | None = field(default=None, kw_only=True)
    forgetting_counts: torch.Tensor | None = field(default=None, kw_only=True)
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name, dtypes in (("entropy", (torch.float32,)), ("log10_entropy", _LOG10_DTYPES)):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.dtype not in dtypes:
                raise TypeError(f"{name} must be a 1-D {' or '.join(map(_dtype_name, dtypes))} tensor")
        n = self.entropy.numel()
        if n == 0:
            raise ValueError("scores are empty: there are no examples")
        if self.log10_entropy.numel() != n or self.log10_entropy.device != self.entropy.device:
            raise ValueError("entropy and log10_entropy must have the same length and device")
        if self.labels is not None and (
            self.labels.dtype != torch.int64 or self.labels.shape != (n,) or self.labels.device != self.entropy.device
        ):
            raise ValueError(f"labels must be an int64 tensor of shape ({n},) on {self.entropy.device}")
        if self.predictions is not None and (
            self.predictions.dtype != torch.int64 or self.predictions.shape != (n,)
            or self.predictions.device != self.entropy.device
        ):
            raise ValueError(f"predictions must be an int64 tensor of shape ({n},) on {self.entropy.device}")
        if self.features is not None and (
            not isinstance(self.features, torch.Tensor) or self.features.dtype not in _FEATURE_DTYPES
            or self.features.dim() != 2 or self.features.shape[0] != n or self.features.device != self.entropy.device
        ):
            raise ValueError(f"features must be a float32/float16/bfloat16 tensor [{n}, D] on {self.entropy.device}")
        if self.forgetting_counts is not None:
            counts = self.forgetting_counts
            if counts.dtype != torch.float32 or counts.shape != (n,) or counts.device != self.entropy.device:
                raise ValueError(f"forgetting_counts must be a float32 tensor of shape ({n},) on {self.entropy.device}")
            if bool((torch.isnan(counts) | (counts < 0)).any()):
                raise ValueError("forgetting_counts must be non-negative (inf for never-learned examples)")

    @classmethod
    def from_logits(cls, logits: torch.Tensor, labels: Any = None) -> "Scores":
        """Scores of [N, C] fp32/fp16/bf16 logits, computed on their device by ``ops.entropy``."""
        entropy, log10_entropy = ops.entropy(logits)
        return cls(entropy, log10_entropy, _as_labels(labels, len(entropy), entropy.device))

    @classmethod
    def from_entropy(cls, entropy: Any, labels: Any = None) -> "Scores":
        """Scores of entropies in nats (tensor, ndarray or list; finite and positive).

        The log10 is taken in float64 from the values as given (:func:`paper_log10`) and
        kept in float64 for float64 entropies, integers and lists, rounded to float32 for
        float32, float16 and bfloat16 entropies. The entropy is stored as float32.
        """
        given = _as_real_tensor("entropy", entropy)
        values = given.to(torch.float64)
        log10 = paper_log10(values)
        # The log10 is finite exactly where the entropy is finite and positive: one check.
        bad = _first_non_finite(log10)
        if bad is not None:
            raise ValueError(f"entropy must be finite and positive; entropy[{bad}] = {float(values[bad])!r}")
        labels = _as_labels(labels, len(values), values.device)
        return cls(_to_float32(values), log10.to(_log10_dtype(given)), labels)

    @classmethod
    def from_log10_entropy(cls, log10_entropy: Any, labels: Any = None) -> "Scores":
        """Scores of log10 entropies (finite); the entropy is ``10 ** log10_entropy``. The log10
        entropies are kept in float64 when given in float64, as integers or as a list,
        else rounded to float32."""
        given = _as_real_tensor("log10_entropy", log10_entropy)
        values = given.to(torch.float64)
        bad = _first_bad_index(~torch.isfinite(values))
        if bad is not None:
            raise ValueError(f"log10_entropy must be finite; log10_entropy[{bad}] = {float(values[bad])!r}")
        labels = _as_labels(labels, len(values), values.device)
        return cls(torch.pow(10.0, values).to(torch.float32), values.to(_log10_dtype(given)), labels)

    def __len__(self) -> int:
        return self.entropy.numel()

    def __repr__(self) -> str:
        labels = "yes" if self.labels is not None else "no"
        extras = "".join(
            f", {name}=yes" for name in ("predictions", "features", "forgetting_counts")
            if getattr(self, name) is not None
        )
        return f"Scores(n={len(self)}, device={self.device}, labels={labels}{extras})"

    def replace(self, **changes: Any) -> "Scores":
        """A copy with some fields replaced, e.g. ``scores.replace(forgetting_counts=counts)``;
        tensors given are moved to this device, and the fingerprint is kept unless the
        entropies change."""
        changes = {
            name: value.to(self.device) if isinstance(value, torch.Tensor) else value
            for name, value in changes.items()
        }
        changes.setdefault("meta", dict(self.meta))
        scores = dataclasses.replace(self, **changes)
        if "entropy" not in changes and "log10_entropy" not in changes:
            object.__setattr__(scores, "_fingerprint", self._fingerprint)
        return scores

    @property
    def device(self) -> torch.device:
        return self.entropy.device

    def to(self, device: torch.device | str) -> "Scores":
        """A copy with every tensor field on ``device`` (self when already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        moved = {
            f.name: value.to(device)
            for f in dataclasses.fields(self)
            if f.init and isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        scores = dataclasses.replace(self, **moved, meta=dict(self.meta))
        object.__setattr__(scores, "_fingerprint", self._fingerprint)  # same values, same fingerprint
        return scores

    def fingerprint(self) -> str:
        """``"sha256:<hex>"`` over N (uint64, little-endian) then the N log10 entropies
        rounded to float32 (little-endian). Identical on every device and for float32 and
        float64 log10 entropies of the same data; float64 values that differ by less than
        a float32 rounding share it. Computed once."""
        if self._fingerprint is None:
            values = self.log10_entropy.detach().to("cpu").contiguous().numpy().astype("<f4", copy=False)
            digest = hashlib.sha256(struct.pack("<Q", len(values)))
            digest.update(values.tobytes())
            object.__setattr__(self, "_fingerprint", "sha256:" + digest.hexdigest())
        return self._fingerprint

    @property
    def dataset_fingerprint(self) -> str | None:
        """The fingerprint of the dataset these scores were computed on, when known."""
        return (self.meta.get("dataset") or {}).get("fingerprint")

    def check_dataset(self, dataset, source: str = "the scores") -> None:
        """Raises :class:`DatasetMismatchError` unless these scores belong to ``dataset``
        (same size and, where both are known, the same dataset fingerprint)."""
        expected = self.dataset_fingerprint
        actual = dataset_fingerprint(dataset)
        if len(dataset) != len(self) or (expected is not None and actual is not None and expected != actual):
            name = getattr(dataset, "name", type(dataset).__name__)
            raise DatasetMismatchError(
                f"{source} were computed on another dataset: {len(self)} examples, dataset fingerprint {expected}; "
                f"the dataset given ({name}) has {len(dataset)} examples, fingerprint {actual}"
            )

    def save(self, path: str | os.PathLike) -> None:
        """Writes the scores to ``path`` atomically (format in the module docstring)."""
        arrays = [(name, value) for name in _ARRAY_NAMES if (value := getattr(self, name)) is not None]
        header = {
            "n": len(self),
            "arrays": [
                {"name": name, "dtype": _dtype_name(value.dtype), "shape": list(value.shape)}
                for name, value in arrays
            ],
            "fingerprint": self.fingerprint(),
            "meta": self.meta,
            "proxyfast_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            header_bytes = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as error:
            raise ValueError(f"scores meta must be JSON-serialisable: {error}") from None
        digest = hashlib.sha256()
        with atomic_write(path) as file:

            def write(data: bytes | memoryview) -> None:
                digest.update(data)
                file.write(data)

            write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes)
            for _, value in arrays:
                write(_tensor_bytes(value))
            file.write(digest.digest())

    @classmethod
    def load(cls, path: str | os.PathLike, dataset=None, device: torch.device | str = "cpu") -> "Scores":
        """Reads scores written by :meth:`save`.

        With ``dataset``, also checks that the scores were computed on it and raises
        :class:`DatasetMismatchError` when not. Raises ValueError naming the file when it
        is not a scores file, is truncated or corrupt, or was written by a newer proxyfast.
        """
        where = os.fspath(path)
        with open(path, "rb") as file:
            data = bytearray(file.read())  # writable, so the tensors made from it are too
        header, tensors = _parse_scores_file(where, data)
        meta = header.get("meta") or {}
        try:
            scores = cls(
                tensors.pop("entropy"), tensors.pop("log10_entropy"), tensors.pop("labels", None), meta=meta, **tensors
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: malformed scores file ({error})") from None
        if scores.fingerprint() != header["fingerprint"]:
            raise ValueError(f"{where}: corrupt scores file (the entropies do not match the stored fingerprint)")
        # The checksum proves the bytes are as written, not that their writer was proxyfast.
        problem = _values_problem(scores)
        if problem:
            raise ValueError(f"{where}: malformed scores file ({problem})")
        if dataset is not None:
            scores.check_dataset(dataset, source=where)
        return scores.to(device)


def _tensor_bytes(value: torch.Tensor) -> memoryview:
    flat = value.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _values_problem(scores: Scores) -> str | None:
    """What makes loaded scores unusable, or None."""
    if not bool(torch.isfinite(scores.log10_entropy).all()):
        return "a log10 entropy is not finite"
    if not bool(((scores.entropy >= 0) & torch.isfinite(scores.entropy)).all()):
        return "an entropy is negative or not finite"
    for name in ("labels", "predictions"):
        values = getattr(scores, name)
        if values is not None and bool((values < 0).any()):
            return f"a negative value in {name}"
    return None


def _parse_scores_file(path: str, data: bytearray) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Checks a scores file's bytes and returns its header and tensors (sharing ``data``)."""
    _, header_size = read_preamble(path, data, MAGIC, "scores", FORMAT_VERSION)
    if len(data) < _PREAMBLE.size + _DIGEST_SIZE:
        raise ValueError(f"{path}: truncated scores file ({len(data)} bytes)")
    body = memoryview(data)[:-_DIGEST_SIZE]
    if hashlib.sha256(body).digest() != bytes(data[-_DIGEST_SIZE:]):
        header_end = _PREAMBLE.size + header_size
        if len(data) < header_end + _DIGEST_SIZE:
            raise ValueError(f"{path}: truncated scores file ({len(data)} bytes)")
        raise ValueError(f"{path}: corrupt or truncated scores file (checksum mismatch)")
    header_end = _PREAMBLE.size + header_size
    try:
        header = json.loads(bytes(data[_PREAMBLE.size:header_end]).decode("utf-8"))
        n = int(header["n"])
        specs = [(a["name"], _FILE_DTYPES[a["dtype"]], tuple(int(d) for d in a["shape"])) for a in header["arrays"]]
        names = [name for name, _, _ in specs]
        if (not isinstance(header["fingerprint"], str) or not isinstance(header.get("meta") or {}, dict)
                or len(set(names)) != len(names) or not set(names) <= set(_ARRAY_NAMES)
                or any(not shape or min(shape) < 0 for _, _, shape in specs)):
            raise ValueError
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: malformed scores file header") from None
    if sys.byteorder != "little":  # the arrays are stored little-endian
        raise ValueError(f"{path}: reading scores files needs a little-endian machine")
    tensors, offset = {}, header_end
    for name, dtype, shape in specs:
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if offset + size > len(body):
            raise ValueError(f"{path}: malformed scores file (array {name} runs past the end)")
        if size:
            raw = torch.frombuffer(data, dtype=torch.uint8, count=size, offset=offset)
        else:
            raw = torch.empty(0, dtype=torch.uint8)
        tensors[name] = raw.view(dtype).reshape(shape)
        offset += size
    if offset != len(body) or "entropy" not in tensors or "log10_entropy" not in tensors:
        raise ValueError(f"{path}: malformed scores file (the arrays do not fill the file)")
    if any(len(t) != n for t in tensors.values()):
        raise ValueError(f"{path}: malformed scores file (an array does not have n = {n} rows)")
    return header, tensors


def model_info(model: nn.Module) -> dict[str, Any]:
    """What identifies a model: its class, parameter count, constructor config (where it
    has a ``config()`` method) and a SHA-256 of its state dict (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        value = value.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(_tensor_bytes(value))
    info = {
        "name": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "sha256": digest.hexdigest(),
    }
    config = getattr(model, "config", None)
    if callable(config):
        info["config"] = config()
    return info


def _feature_module(model: nn.Module, feature_layer: str | None) -> tuple[str, nn.Module]:
    if feature_layer is not None:
        try:
            return feature_layer, model.get_submodule(feature_layer)
        except AttributeError:
            raise ValueError(f"feature_layer {feature_layer!r} is not a submodule of {type(model).__name__}") from None
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear classifier: name the layer whose input is the "
            "penultimate feature vector with feature_layer="
        )
    return linears[-1]


def _check_output(output: Any, batch: int) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"the model must return a logits tensor [B, C], got a {type(output).__name__}")
    if output.dim() != 2 or output.shape[0] != batch:
        raise ValueError(
            f"the model must return logits [B, C] = [{batch}, C] for a batch of {batch}, "
            f"got shape {tuple(output.shape)}"
        )
    if not output.is_floating_point():
        raise ValueError(f"the model must return floating-point logits, got {output.dtype}")
    if output.dtype not in ops.LOGIT_DTYPES:
        output = output.to(torch.float32)
    return output


def score(
    model: nn.Module,
    dataset,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    features: bool = False,
    feature_layer: str | None = None,
    amp: bool = False,
    progress: bool = False,
    num_workers: int = 0,
    start: int = 0,
    stop: int | None = None,
) -> Scores:
    """Scores every example of ``dataset`` with a trained ``model`` (docs/design.md, "Data entropy").

    The model runs in eval mode under ``torch.inference_mode``; each batch's logits go
    straight to the fused entropy op, so no N x C array is ever kept. uint8 images are fed
    as float32 in [0, 1]; other inputs as the dataset yields them.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits [B, C] (it is moved to
            ``device``; its train/eval mode is restored afterwards).
        dataset: a map-style dataset of ``(input, label)`` pairs, e.g. from
            :mod:`proxyfast.data`.
        batch_size: examples per forward pass.
        device: where to run; default the device of the model's parameters.
        features: also keep the penultimate features [N, D] (for ``kcenter``).
        feature_layer: the name of the submodule whose *input* is the feature vector
            (default: the model's last ``nn.Linear``, its classifier).
        amp: run under autocast (float16 on CUDA, bfloat16 on CPU); entropies are still
            accumulated in fp32 or better.
        progress: draw a progress bar on stderr.
        num_workers: ``DataLoader`` workers for datasets that are not in memory.
        start, stop: score only the examples ``start .. stop - 1`` (default: all), e.g. one
            shard of a job split over processes (:mod:`proxyfast.distributed`); the
            result then holds ``stop - start`` examples and ``meta`` records the range.

    Returns:
        :class:`Scores` with entropy, log10 entropy, labels, predictions and (on request)
        features, and ``meta`` naming the model and the dataset's fingerprint.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = resolve_device(device, model)
    n_dataset = len(dataset)
    if n_dataset == 0:
        raise ValueError("the dataset is empty")
    start, stop = _check_range(start, stop, n_dataset)
    whole = start == 0 and stop == n_dataset
    _check_model_fits(model, dataset)
    model.to(device)
    memory_format = input_memory_format(model)
    result = _ScoreBuffers(stop - start, device)
    capture = _FeatureCapture(model, feature_layer) if features else None

    was_training = model.training
    model.eval()
    autocast = (
        torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
        if amp else contextlib.nullcontext()
    )
    bar = Progress(stop - start, "score", enabled=progress, unit="img")
    try:
        with torch.inference_mode(), autocast:
            order = None if whole else torch.arange(start, stop)
            for index, inputs, labels in iterate_batches(dataset, batch_size, order, num_workers=num_workers):
                x = to_float_images(inputs, device, memory_format)
                if capture is not None:
                    capture.clear()
                logits = _check_output(model(x), len(index))
                result.store(index - start, logits, labels, capture.take() if capture is not None else None)
                bar.update(len(index))
        ops.raise_on_non_finite(result.log10_entropy, batch_size, first=start)
    finally:
        bar.close()
        if capture is not None:
            capture.remove()
        model.train(was_training)

    meta = {
        "model": model_info(model),
        "dataset": {
            "name": getattr(dataset, "name", type(dataset).__name__),
            "n": n_dataset,
            "fingerprint": dataset_fingerprint(dataset),
        },
        "scoring": {"device": str(device), "amp": bool(amp), "batch_size": batch_size,
                    "feature_layer": capture.name if capture is not None else None},
    }
    if not whole:
        meta["dataset"]["range"] = [start, stop]
    return Scores(result.entropy, result.log10_entropy, result.labels.to(device), meta=meta,
                  predictions=result.predictions, features=result.features)


def _check_range(start: Any, stop: Any, n_dataset: int) -> tuple[int, int]:
    """The examples ``start .. stop - 1`` to score; ``stop`` None means the end."""
    stop = n_dataset if stop is None else stop
    for name, value in (("start", start), ("stop", stop)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= start < stop <= n_dataset:
        raise ValueError(f"start and stop must satisfy 0 <= start < stop <= {n_dataset}, got {start} and {stop}")
    return start, stop


class _ScoreBuffers:
    """The result of a scoring pass, filled batch by batch at the batches' positions (on
    ``device``, except the labels, which the dataset yields on the CPU)."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.device = device
        self.entropy = torch.empty(n, dtype=torch.float32, device=device)
        self.log10_entropy = torch.empty_like(self.entropy)
        self.predictions = torch.empty(n, dtype=torch.int64, device=device)
        self.labels = torch.empty(n, dtype=torch.int64)
        self.features: torch.Tensor | None = None

    def store(self, position: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
              features: torch.Tensor | None) -> None:
        ent, log10_ent = ops.entropy(logits, check_finite=False)  # checked once, after the pass
        on_device = position.to(self.device, non_blocking=True)
        self.entropy[on_device] = ent
        self.log10_entropy[on_device] = log10_ent
        self.predictions[on_device] = logits.argmax(dim=1)
        self.labels[position] = labels
        if features is not None:
            if self.features is None:
                self.features = torch.empty(len(self.entropy), features.shape[1], dtype=torch.float32,
                                            device=self.device)
            self.features[on_device] = features


class _FeatureCapture:
    """The penultimate features of each forward pass: the input of the feature layer,
    caught by a forward pre-hook (removed by :meth:`remove`)."""

    def __init__(self, model: nn.Module, feature_layer: str | None) -> None:
        self.name, module = _feature_module(model, feature_layer)
        self.captured: list[torch.Tensor] = []
        self.hook = module.register_forward_pre_hook(lambda _, inputs: self.captured.append(inputs[0]))

    def clear(self) -> None:
        self.captured.clear()

    def take(self) -> torch.Tensor:
        """The features of the forward pass just run, [B, D] in float32."""
        if len(self.captured) != 1:
            raise ValueError(f"feature layer {self.name!r} ran {len(self.captured)} times in one forward pass")
        return self.captured[0].flatten(1).float()

    def remove(self) -> None:
        self.hook.remove()


def _check_model_fits(model: nn.Module, dataset) -> None:
    """Refuses, before any batch runs, a model whose first convolution takes another
    number of channels than the dataset's images have, or that classifies fewer classes
    (where it says, as proxyfast's models do) than the dataset has."""
    name = getattr(dataset, "name", type(dataset).__name__)
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    first = dataset[0][0]
    if conv is not None and isinstance(first, torch.Tensor) and first.dim() == 3 and first.shape[0] != conv.in_channels:
        raise DatasetMismatchError(f"the model takes {conv.in_channels}-channel images, but the dataset ({name}) "
                                   f"holds {first.shape[0]}-channel images")
    classes = getattr(dataset, "classes", None)
    num_classes = getattr(model, "num_classes", None)  # proxyfast's models say what they classify
    if isinstance(num_classes, int) and classes is not None and num_classes < len(classes):
        raise DatasetMismatchError(f"the model classifies {num_classes} classes, but the dataset ({name}) "
                                   f"has {len(classes)}")


def input_memory_format(model: nn.Module) -> torch.memory_format:
    """``torch.channels_last`` when the model's first convolution is stored channels-last
    (so its inputs should be too), else ``torch.preserve_format``."""
    weight = next((m.weight for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if weight is not None and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.preserve_format


def as_scores(values: Any) -> Scores:
    """A :class:`Scores` from a Scores, a 2-D tensor/ndarray of logits, or a 1-D
    tensor/ndarray/list of entropies in nats."""
    if isinstance(values, Scores):
        return values
    if isinstance(values, np.ndarray) and values.ndim == 2:
        values = torch.from_numpy(values)
    if isinstance(values, torch.Tensor) and values.dim() == 2:
        return Scores.from_logits(values)
    if isinstance(values, (torch.Tensor, np.ndarray)) and values.ndim != 1:
        raise ValueError(f"scores must be 1-D entropies or 2-D logits, got shape {tuple(values.shape)}")
    return Scores.from_entropy(values)
