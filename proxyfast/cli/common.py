"""What every command shares: the parser that reports one line, the data and run
arguments, the device and thread setup, and the error handling of :func:`run_command`.

Every error reaches the user as one line on stderr, ``proxyfast COMMAND: error: ...``,
with exit status 2; Ctrl-C ends a command with one line and status 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from .._checks import check_int
from ..data import DATASET_NAMES
from ..runtime import resolve_device, set_threads
from ..scoring import Scores, builtin_entropy_list, read_entropy_list

__all__ = [
    "BUILTIN_SCORES",
    "INTERRUPTED",
    "Parser",
    "UsageError",
    "add_data_arguments",
    "add_run_arguments",
    "check_data_arguments",
    "is_builtin_scores",
    "line_buffered_output",
    "read_scores_argument",
    "run_command",
    "setup_run",
]

# Exit status of a command ended by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130
BUILTIN_PREFIX = "builtin:"
# The score lists that ship with proxyfast, by the name the command line gives them.
BUILTIN_SCORES: dict[str, Callable[[], Scores]] = {"cifar100-resnet56": builtin_entropy_list}


class UsageError(Exception):
    """A command line argparse refused; its message is the line to print."""


class Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; run_command() reports one line instead.
    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASET_NAMES,
                        help="dataset name (default fashion-mnist)")
    parser.add_argument("--data-root", default=None,
                        help="the dataset's directory (default for fashion-mnist: /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--image-size", type=int, default=None, help="imagefolder only: resize and centre-crop to this")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_data_arguments(args: argparse.Namespace) -> None:
    if args.image_size is not None:
        if args.dataset != "imagefolder":
            raise ValueError(f"--image-size applies to --dataset imagefolder only, not {args.dataset}")
        check_int("--image-size", args.image_size)


def setup_run(args: argparse.Namespace) -> torch.device:
    """Checks --threads and --device, then applies --threads; returns the device."""
    if args.threads is not None:
        check_int("--threads", args.threads)
    device = resolve_device(args.device, name="--device")
    set_threads(args.threads, "--threads")
    return device


def is_builtin_scores(value: str | None) -> bool:
    return isinstance(value, str) and value.startswith(BUILTIN_PREFIX)


def read_scores_argument(name: str, value: str) -> Scores:
    """The scores an argument names: ``builtin:NAME`` for a list that ships with
    proxyfast, else the path of an entropy list."""
    if is_builtin_scores(value):
        key = value[len(BUILTIN_PREFIX):]
        if key not in BUILTIN_SCORES:
            choices = ", ".join(BUILTIN_PREFIX + known for known in sorted(BUILTIN_SCORES))
            raise ValueError(f"{name} {value!r} is not a built-in list; the built-in lists: {choices}")
        return BUILTIN_SCORES[key]()
    return read_entropy_list(value)


def run_command(parse: Callable[[], argparse.Namespace], handlers: dict[str, Callable[[argparse.Namespace], None]],
                ) -> int:
    """Parses the command line and runs its handler; returns the exit status."""
    prog = "proxyfast"
    try:
        args = parse()
        prog = " ".join(["proxyfast", args.command] + ([args.suite] if getattr(args, "suite", None) else []))
        handlers[args.command](args)
    except UsageError as error:
        print(f"{error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ImportError) as error:
        message = " ".join(str(error).split())  # one line, whatever the exception held
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    return 0


def line_buffered_output() -> None:
    """Line-buffers stdout and stderr. Piped (| tee, a batch job's log), Python buffers
    stdout in blocks: the per-epoch lines would appear minutes late, after the progress
    lines on stderr."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)

