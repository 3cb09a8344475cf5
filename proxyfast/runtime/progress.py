"""Progress of a long loop: a tqdm bar on a terminal, plain lines in a log."""

from __future__ import annotations

import sys
import time

import tqdm

__all__ = ["Progress"]


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
