"""The ``proxyfast`` command: a thin shell over the Python API.

    proxyfast select --entropy-file F --method p1 --fraction 0.1 --out P [--plot FILE.png]
    proxyfast demo [--out DIR] [--n 1281167]
    proxyfast info P

Errors reach the user as one line on stderr, ``proxyfast COMMAND: error: ...``, and exit
status 2; every command checks its arguments and paths before it starts any long work.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from . import bench as cli_bench, loaders as cli_loaders
from .._checks import (
    check_bin_width,
    check_device,
    check_fraction,
    check_int,
    check_method,
    check_output_dir,
    check_output_paths,
    check_real,
)
from .._version import __version__
from .pipeline import add_commands as add_pipeline_commands
from .search import add_commands as add_search_commands
from .train import add_commands as add_train_commands
from ..scoring import imagenet_scale_scores
from ..scoring import read_entropy_list
from ..selection import ProxySet
from ..selection.summary import bin_table, plot_histogram
from ..scoring import Scores
from ..selection import available_methods, select

__all__ = ["main"]

_DEMO_REPEATS = 5
_DEMO_PROXY, _DEMO_PLOT = "proxy_p1.proxyset", "histogram.png"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; main() reports one line instead.
    def error(self, message: str):
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def _add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling and the order (default 0)")
    parser.add_argument("--device", default=None, help="where to select: cpu or cuda (default cpu)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="proxyfast", description="Proxy data selection for neural architecture search.")
    parser.add_argument("--version", action="version", version=f"proxyfast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    select = commands.add_parser("select", help="select a proxy from an entropy list")
    select.add_argument("--entropy-file", required=True, help="entropy list: 'index entropy label' a line (.gz ok)")
    select.add_argument("--method", default="p1", help=f"one of {', '.join(available_methods())} (default p1)")
    size = select.add_mutually_exclusive_group(required=True)
    size.add_argument("--fraction", type=float, help="proxy size as a fraction of the data, in (0, 1]")
    size.add_argument("--k", type=int, help="proxy size as a number of examples")
    select.add_argument("--bin-width", type=float, default=0.5, help="log10-entropy bin width (default 0.5)")
    select.add_argument("--beta", type=float, default=0.9, help="low-entropy share of 'deterministic' (default 0.9)")
    select.add_argument("--round-to", type=int, default=None, help="round k down to a multiple of this")
    _add_selection_arguments(select)
    select.add_argument("--out", required=True, help="where to write the proxy set")
    select.add_argument("--plot", default=None, help="also draw the histogram of all data against the proxy")

    demo = commands.add_parser("demo", help="select a P1 proxy from built-in scores at ImageNet scale and time it")
    demo.add_argument("--out", default=os.path.join("out", "demo"), help="output directory (default out/demo)")
    demo.add_argument("--n", type=int, default=1_281_167, help="number of examples (default 1281167, ImageNet)")
    demo.add_argument("--fraction", type=float, default=0.1, help="proxy size as a fraction (default 0.1)")
    _add_selection_arguments(demo)

    info = commands.add_parser("info", help="print the header of a saved proxy set")
    info.add_argument("path", help="a proxy set file")
    _COMMANDS.update(cli_loaders.add_commands(commands))
    _COMMANDS.update(add_pipeline_commands(commands))
    _COMMANDS.update(cli_bench.add_commands(commands))
    _COMMANDS.update(add_search_commands(commands))
    _COMMANDS.update(add_train_commands(commands))
    return parser


def _timed_select(scores: Scores, **kwargs) -> tuple[ProxySet, float]:
    start = time.perf_counter()
    proxy = select(scores, **kwargs)
    return proxy, time.perf_counter() - start


def _summary(proxy: ProxySet, seconds: float) -> str:
    return f"{proxy.method}: selected {proxy.k:,} of {proxy.n:,} examples in {seconds * 1e3:.1f} ms on {proxy.device}"


def _check_selection_arguments(args: argparse.Namespace) -> None:
    if args.fraction is not None:
        check_fraction("--fraction", args.fraction)
    check_int("--seed", args.seed, 0, 2**63 - 1)
    if args.device is not None:
        check_device("--device", args.device)


def _refuse_empty(proxy: ProxySet, args: argparse.Namespace) -> None:
    if proxy.k == 0:
        k = getattr(args, "k", None)
        size = f"--k {k}" if k is not None else f"--fraction {args.fraction:g}"
        rounding = f" rounded down to a multiple of {args.round_to}" if getattr(args, "round_to", None) else ""
        raise ValueError(f"the proxy would be empty: {size}{rounding} of {proxy.n:,} examples selects none; "
                         "nothing was written")


def _run_select(args: argparse.Namespace) -> None:
    check_output_paths({"--out": args.out, "--plot": args.plot}, {"--entropy-file": args.entropy_file})
    _check_selection_arguments(args)
    if args.k is not None:
        check_int("--k", args.k, 0)
    check_method(args.method)
    check_bin_width("--bin-width", args.bin_width)
    check_real("--beta", args.beta, 0.0, 1.0)
    if args.round_to is not None:
        check_int("--round-to", args.round_to)
    scores = read_entropy_list(args.entropy_file)
    proxy, seconds = _timed_select(
        scores, k=args.k, fraction=args.fraction, method=args.method, seed=args.seed,
        bin_width=args.bin_width, beta=args.beta, device=args.device, round_to=args.round_to,
    )
    _refuse_empty(proxy, args)
    print(bin_table(proxy))
    print(_summary(proxy, seconds))
    proxy.save(args.out)
    print(f"wrote {args.out}")
    if args.plot:
        plot_histogram(proxy, scores, args.plot)
        print(f"wrote {args.plot}")


def _run_demo(args: argparse.Namespace) -> None:
    check_int("--n", args.n)
    _check_selection_arguments(args)
    check_output_dir("--out", args.out, [_DEMO_PROXY, _DEMO_PLOT])
    scores = imagenet_scale_scores(args.n, seed=args.seed)
    print(f"scores: {args.n:,} examples resampled from the built-in CIFAR-100 / ResNet-56 entropies "
          "(the shape of a real distribution; not ImageNet scores)")
    options = dict(fraction=args.fraction, method="p1", seed=args.seed, bin_width=0.25, device=args.device)
    proxy, first = _timed_select(scores, **options)
    _refuse_empty(proxy, args)
    # The first call also pays one-time costs (thread pool start, first memory touches).
    best = min(_timed_select(scores, **options)[1] for _ in range(_DEMO_REPEATS))
    print(bin_table(proxy))
    print(f"{_summary(proxy, best)} (P1, bin width 0.25; best of {_DEMO_REPEATS} repeats, "
          f"first call {first * 1e3:.1f} ms)")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, _DEMO_PROXY)
    proxy.save(path)
    print(f"wrote {path}")
    plot_path = os.path.join(args.out, _DEMO_PLOT)
    try:
        plot_histogram(proxy, scores, plot_path)
    except ImportError as error:
        print(f"skipped the plot: {error}")
    else:
        print(f"wrote {plot_path}")


def _run_info(args: argparse.Namespace) -> None:
    proxy = ProxySet.load(args.path)
    params = " ".join(f"{key}={value}" for key, value in proxy.params.items())
    fields = [
        ("file", f"{args.path} ({os.path.getsize(args.path):,} bytes)"),
        ("method", proxy.method),
        ("n", f"{proxy.n:,}"),
        ("k", f"{proxy.k:,}"),
        ("params", params),
        ("fingerprint", proxy.fingerprint),
        ("created", proxy.created),
        ("proxyfast", proxy.proxyfast_version),
    ]
    for name, value in fields:
        print(f"{name:<12} {value}")
    print(bin_table(proxy))


_COMMANDS = {"select": _run_select, "demo": _run_demo, "info": _run_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    _line_buffered_output()
    prog = "proxyfast"
    try:
        args = _build_parser().parse_args(argv)
        prog = " ".join(["proxyfast", args.command] + ([args.suite] if getattr(args, "suite", None) else []))
        _COMMANDS[args.command](args)
    except _UsageError as error:
        print(f"{error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ImportError) as error:
        message = " ".join(str(error).split())  # one line, whatever the exception held
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0


def _line_buffered_output() -> None:
    # Piped (| tee, a batch job's log), Python buffers stdout in blocks: the per-epoch
    # lines would appear minutes late, after the progress lines on stderr.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
