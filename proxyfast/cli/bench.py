"""The timing suites of ``proxyfast``:

    proxyfast bench search --setting cifar10|imagenet --algo darts|pcdarts [--order 1|2]
        [--proxy-fraction 0.1] [--steps N] [--warmup W] [--device cpu|cuda]
        [--batch-size B] [--channels C] [--layers L] [--epochs E] [--image-size S]
        [--full-size] [--score-images N] [--impl NAME] [--out DIR]
    proxyfast bench search --validate [--algo ...] [--device ...] [--examples N] [--out DIR]

``bench search`` times the search's warm steps on the device and extrapolates the whole
search for all the data and for the proxy, beside the paper's figures; it writes
``DIR/bench_search.json`` and ``DIR/bench_search.png``. With ``--validate`` it instead
predicts a tiny search's wall time the same way, runs that search, and reports the
prediction's error (``DIR/bench_validate.json``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

import torch

from .._atomic import atomic_write
from .._checks import check_fraction, check_output_dir
from ..bench import (
    SETTINGS,
    bench_search,
    device_defaults,
    format_table,
    format_validation,
    validate_extrapolation,
    write_report,
)
from ..bench.settings import ALGOS
from ..runtime import resolve_device, set_threads

__all__ = ["add_commands"]

VALIDATE_NAME = "bench_validate.json"


def _at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum``, in check_int's wording."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


_positive, _non_negative = _at_least(1), _at_least(0)


def _run_validate(args: argparse.Namespace, device: torch.device) -> None:
    # Options left out keep the validation's own small defaults.
    names = {"examples": "examples", "proxy_fraction": "fraction", "batch_size": "batch_size", "channels": "channels",
             "layers": "layers", "epochs": "epochs", "image_size": "image_size", "steps": "steps", "warmup": "warmup"}
    given = {keyword: getattr(args, option) for option, keyword in names.items() if getattr(args, option) is not None}
    result = validate_extrapolation(args.algo, args.order, device=device, impl=args.impl, seed=args.seed,
                                    progress=not args.quiet, **given)
    print(format_validation(result))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, VALIDATE_NAME)
    with atomic_write(path) as file:
        file.write(json.dumps(result, indent=2, allow_nan=False).encode("utf-8") + b"\n")
    print(f"wrote {path}")


def _run_search(args: argparse.Namespace) -> None:
    if args.proxy_fraction is not None:
        check_fraction("--proxy-fraction", args.proxy_fraction)
    device = resolve_device(args.device, name="--device")
    check_output_dir("--out", args.out, [])
    set_threads(args.threads, "--threads")
    if args.validate:
        _run_validate(args, device)
        return
    report = bench_search(
        args.setting, args.algo, args.order, args.proxy_fraction, device=device, steps=args.steps,
        warmup=args.warmup, batch_size=args.batch_size, channels=args.channels, layers=args.layers,
        epochs=args.epochs, image_size=args.image_size, score_images=args.score_images, full_size=args.full_size,
        impl=args.impl, seed=args.seed, progress=not args.quiet,
    )
    print(format_table(report))
    try:
        files = write_report(report, args.out)
    except ImportError as error:
        files = write_report(report, args.out, plot=False)
        print(f"skipped the chart: {error}")
    for path in files.values():
        print(f"wrote {path}")


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Adds the ``bench`` command and its suites to ``commands``; returns its handler by name."""
    bench = commands.add_parser("bench", help="timing suites: what a search costs here, and what the proxy saves")
    suites = bench.add_subparsers(dest="suite", required=True, metavar="SUITE")
    search = suites.add_parser(
        "search", help="time the search's steps, the scoring and the selection; extrapolate the whole search",
        description="Times warm search steps on random tensors of the setting's shapes on this device and "
        "extrapolates the whole search for all the data and for the proxy, beside the paper's figures.",
    )
    search.add_argument("--setting", choices=sorted(SETTINGS), default="cifar10",
                        help="the paper's setting: dataset size, input shape, batch and epochs (default cifar10)")
    search.add_argument("--algo", choices=ALGOS, default="darts", help="the search algorithm (default darts)")
    search.add_argument("--order", type=int, choices=(1, 2), default=1,
                        help="the architect's order, as in the paper by default (default 1; pcdarts: 1 only)")
    search.add_argument("--proxy-fraction", type=float, default=None,
                        help="the proxy's size as a fraction of the training set (default the paper's, 0.1)")
    search.add_argument("--steps", type=_positive, default=None,
                        help="timed calls of each operation (default 20 on a GPU, 3 on the CPU)")
    search.add_argument("--warmup", type=_non_negative, default=None,
                        help="untimed calls before them (default 5 on a GPU, 1 on the CPU)")
    search.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    search.add_argument("--threads", type=_positive, default=None, help="CPU threads for torch (default: torch's)")
    cpu = {name: device_defaults("cpu", name) for name in SETTINGS}
    for name, what in (("batch_size", "examples per step"), ("channels", "initial channels"),
                       ("layers", "cells of the supernet")):
        search.add_argument(f"--{name.replace('_', '-')}", type=_positive, default=None,
                            help=f"{what} (default: the setting's on a GPU, {cpu['cifar10'][name]} on the CPU)")
    search.add_argument("--epochs", type=_positive, default=None, help="epochs of the search (default: the setting's)")
    search.add_argument("--image-size", type=_positive, default=None,
                        help="input height and width (default: the setting's on a GPU; on the CPU "
                        + ", ".join(f"{cpu[name]['image_size']} for {name}" for name in sorted(cpu)) + ")")
    search.add_argument("--full-size", action="store_true",
                        help="on the CPU too, time the setting's supernet and inputs (slow: minutes and ~10 GB a step)")
    search.add_argument("--score-images", type=_positive, default=None,
                        help="images scored to time the baseline (default: per device and setting)")
    search.add_argument("--impl", default=None, help="the mixed-op implementation (default: the library's)")
    search.add_argument("--seed", type=_non_negative, default=0, help="seeds the inputs and the weights (default 0)")
    search.add_argument("--validate", action="store_true",
                        help="instead: predict a tiny search's wall time, run it, and report the error (its own "
                        "small defaults; --examples, --proxy-fraction and the size options apply)")
    search.add_argument("--examples", type=_positive, default=None,
                        help="--validate only: synthetic images the tiny search's proxy is drawn from (default 1000)")
    search.add_argument("--out", default=os.path.join("out", "bench"), help="output directory (default out/bench)")
    search.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> None:
        {"search": _run_search}[args.suite](args)

    return {"bench": run}
