"""Batch iteration over datasets and a small progress bar, shared by scoring and training."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
import tqdm

from ..data import ImageArrayDataset

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
    """Progress of a long loop on stderr, with rate and ETA.

    On a terminal it is a tqdm bar. Elsewhere (a pipe, a log file, a batch job) it
    writes a plain line every ``log_interval`` seconds and one when it closes, so that a
    long epoch is never silent and a log holds no carriage returns. Disabled, it does
    nothing.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool = True, unit: str = "it",
                 interval: float = 0.2, stream=None, log_interval: float = 30.0, clock=time.perf_counter) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.count = 0
        self.clock = clock
        self.start = clock()
        self.log_interval = log_interval
        self._last_line = self.start
        self.postfix = ""
        self._bar = (tqdm.tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, mininterval=interval,
                               dynamic_ncols=True, leave=True)
                     if self.interactive else None)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.count += n
        if postfix is not None:
            self.postfix = postfix
        if self._bar is not None:
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)
        elif self.enabled:
            now = self.clock()
            if now - self._last_line >= self.log_interval:
                self._last_line = now
                self._write_line(now)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled:
            self._write_line(self.clock())
        self.enabled = self.interactive = False

    def _write_line(self, now: float) -> None:
        line = tqdm.tqdm.format_meter(self.count, self.total or None, now - self.start, prefix=self.desc,
                                      unit=self.unit, postfix=self.postfix or None, ncols=0)
        self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
