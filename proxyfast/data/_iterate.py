"""Batch iteration over datasets and a small progress bar, shared by scoring and training."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import numpy as np
import torch

from .arrays import ImageArrayDataset

__all__ = ["Progress", "iterate_batches", "to_float_images"]


def iterate_batches(
    dataset,
    batch_size: int,
    indices: torch.Tensor | np.ndarray | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yields ``(indices, inputs, labels)`` batches of ``dataset`` in the order of ``indices``
    (default: 0..N-1). ``indices`` and ``labels`` are int64 CPU tensors.

    An :class:`ImageArrayDataset` without a transform is sliced directly (uint8 images
    [B, C, H, W] in channels-last memory order, no per-example Python); any other dataset
    goes through a ``DataLoader`` whose examples are ``(input, label)`` pairs.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    order = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
    if isinstance(dataset, ImageArrayDataset) and dataset.transform is None:
        labels = torch.from_numpy(dataset.labels)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            images = torch.from_numpy(dataset.images[batch.numpy()]).permute(0, 3, 1, 2)
            yield batch, images, labels[batch]
        return
    sampler = torch.utils.data.BatchSampler(order.tolist(), batch_size, drop_last=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)
    for batch, (inputs, labels) in zip(sampler, loader):
        yield torch.as_tensor(batch, dtype=torch.int64), inputs, torch.as_tensor(labels, dtype=torch.int64)


def to_float_images(inputs: torch.Tensor, device: torch.device, memory_format=torch.preserve_format) -> torch.Tensor:
    """``inputs`` on ``device``; uint8 images become float32 in [0, 1] (other dtypes pass as they are)."""
    inputs = inputs.to(device, non_blocking=True)
    if inputs.dtype == torch.uint8:
        inputs = inputs.to(torch.float32).div_(255.0)
    if inputs.dim() == 4 and memory_format is not torch.preserve_format:
        inputs = inputs.contiguous(memory_format=memory_format)
    return inputs


class Progress:
    """A one-line progress bar on stderr: ``desc  [#####.....] 300/600  1.2s  250/s``.

    Redrawn at most every ``interval`` seconds on a terminal; elsewhere (a log file)
    only the final line is written. Disabled, it does nothing.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool = True, unit: str = "it",
                 interval: float = 0.2, stream=None) -> None:
        self.total, self.desc, self.unit, self.interval = int(total), desc, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.count = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self.postfix = ""

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.count += n
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.interactive and now - self._last_draw >= self.interval:
            self._last_draw = now
            self.stream.write("\r" + self._line(now))
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write(("\r" if self.interactive else "") + self._line(time.perf_counter()) + "\n")
            self.stream.flush()
            self.enabled = self.interactive = False

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        filled = int(20 * self.count / self.total) if self.total else 20
        rate = self.count / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "." * (20 - filled)
        postfix = f"  {self.postfix}" if self.postfix else ""
        return f"{self.desc}  [{bar}] {self.count}/{self.total}  {elapsed:.1f}s  {rate:.0f} {self.unit}/s{postfix}"

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
