"""Commands on proxy sets: ``proxyfast select``, ``demo``, ``info`` and ``export``.

    proxyfast select --entropy-file F --method p1 --fraction 0.1 --out P [--plot FILE.png]
    proxyfast select --entropy-file builtin:cifar100-resnet56 --fraction 0.1 --out P
    proxyfast demo [--out DIR] [--n 1281167]
    proxyfast info P                 (a .proxyset or a .pxscores file)
    proxyfast export P --out idx.npy [--part train]     (or idx.txt: one index a line)

:func:`add_commands` registers them on the ``proxyfast`` parser and returns their
handlers by name.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np

from .._atomic import atomic_write
from .._checks import (
    check_bin_width,
    check_device,
    check_fraction,
    check_input_files,
    check_int,
    check_output_dir,
    check_output_paths,
    check_real,
    check_seed,
)
from .._fileformat import PREAMBLE
from ..scoring import MAGIC as SCORES_MAGIC
from ..scoring import Scores, imagenet_scale_scores
from ..selection import ProxySet, available_methods, check_method, select
from ..selection.summary import bin_table, plot_histogram
from .common import BUILTIN_PREFIX, BUILTIN_SCORES, is_builtin_scores, read_scores_argument

__all__ = ["add_commands"]

_DEMO_REPEATS = 5
_DEMO_PROXY, _DEMO_PLOT = "proxy_p1.proxyset", "histogram.png"


def _add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling and the order (default 0)")
    parser.add_argument("--device", default=None, help="where to select: cpu or cuda (default cpu)")


_EXPORT_FORMATS = (".npy", ".txt")


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Adds the ``select``, ``demo``, ``info`` and ``export`` subcommands to ``commands``;
    returns ``{name: handler}``."""
    builtin = ", ".join(BUILTIN_PREFIX + name for name in sorted(BUILTIN_SCORES))
    select = commands.add_parser("select", help="select a proxy from an entropy list")
    select.add_argument("--entropy-file", required=True,
                        help=f"entropy list: 'index entropy label' a line (.gz ok), or a built-in list ({builtin})")
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

    info = commands.add_parser("info", help="print the header of a saved proxy set or scores file")
    info.add_argument("path", help="a proxy set (.proxyset) or scores (.pxscores) file")

    export = commands.add_parser("export", help="write a proxy set's indices as .npy or .txt for other trainers")
    export.add_argument("path", help="a proxy set file")
    export.add_argument("--out", required=True, help="an .npy file (int64) or a .txt file (one index a line)")
    export.add_argument("--part", default="all", choices=("all", "train", "val"),
                        help="the whole proxy (default), or the weight ('train') or architecture ('val') part")
    export.add_argument("--train-portion", type=float, default=0.5,
                        help="the share of the proxy in the 'train' part (default 0.5, as ProxySet.split)")
    return {"select": _run_select, "demo": _run_demo, "info": _run_info, "export": _run_export}


def _timed_select(scores: Scores, **kwargs) -> tuple[ProxySet, float]:
    start = time.perf_counter()
    proxy = select(scores, **kwargs)
    return proxy, time.perf_counter() - start


def _summary(proxy: ProxySet, seconds: float) -> str:
    return f"{proxy.method}: selected {proxy.k:,} of {proxy.n:,} examples in {seconds * 1e3:.1f} ms on {proxy.device}"


def _check_selection_arguments(args: argparse.Namespace) -> None:
    if args.fraction is not None:
        check_fraction("--fraction", args.fraction)
    check_seed("--seed", args.seed)
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
    entropy_file = None if is_builtin_scores(args.entropy_file) else args.entropy_file
    check_output_paths({"--out": args.out, "--plot": args.plot}, {"--entropy-file": entropy_file})
    _check_selection_arguments(args)
    if args.k is not None:
        check_int("--k", args.k, 0)
    check_method(args.method)
    check_bin_width("--bin-width", args.bin_width)
    check_real("--beta", args.beta, 0.0, 1.0)
    if args.round_to is not None:
        check_int("--round-to", args.round_to)
    scores = read_scores_argument("--entropy-file", args.entropy_file)
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
    if _starts_with(args.path, SCORES_MAGIC):
        _print_fields(_scores_fields(args.path, Scores.load(args.path)))
        return
    proxy = ProxySet.load(args.path)
    params = " ".join(f"{key}={value}" for key, value in proxy.params.items())
    _print_fields([
        ("file", f"{args.path} ({os.path.getsize(args.path):,} bytes)"),
        ("method", proxy.method),
        ("n", f"{proxy.n:,}"),
        ("k", f"{proxy.k:,}"),
        ("params", params),
        ("fingerprint", proxy.fingerprint),
        ("created", proxy.created),
        ("proxyfast", proxy.proxyfast_version),
    ])
    print(bin_table(proxy))


def _starts_with(path: str, magic: bytes) -> bool:
    with open(path, "rb") as file:
        return file.read(PREAMBLE.size)[:len(magic)] == magic


def _scores_fields(path: str, scores: Scores) -> list[tuple[str, str]]:
    arrays = [name for name in ("entropy", "labels", "predictions", "features", "forgetting_counts")
              if getattr(scores, name) is not None]
    if scores.features is not None:
        arrays[arrays.index("features")] = f"features [{scores.features.shape[1]}]"
    fields = [("file", f"{path} ({os.path.getsize(path):,} bytes)"), ("kind", "scores"), ("n", f"{len(scores):,}"),
              ("arrays", ", ".join(arrays))]
    log10 = scores.log10_entropy
    if len(scores):
        fields.append(("log10 H", f"min {log10.min().item():.3f}, median {log10.median().item():.3f}, "
                                  f"max {log10.max().item():.3f} ({str(log10.dtype).removeprefix('torch.')})"))
    for key, value in scores.meta.items():
        fields.append((key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)))
    return fields


def _print_fields(fields: list[tuple[str, str]]) -> None:
    for name, value in fields:
        print(f"{name:<12} {value}")


def _run_export(args: argparse.Namespace) -> None:
    check_input_files({"path": args.path})
    check_output_paths({"--out": args.out}, {"path": args.path})
    extension = os.path.splitext(args.out)[1].lower()
    if extension not in _EXPORT_FORMATS:
        raise ValueError(f"--out {args.out!r} must end in .npy or .txt")
    check_real("--train-portion", args.train_portion, 0.0, 1.0)
    proxy = ProxySet.load(args.path)
    train, val = proxy.split(args.train_portion)
    indices = {"all": proxy.indices, "train": train, "val": val}[args.part].cpu().numpy().astype(np.int64)
    with atomic_write(args.out) as file:
        if extension == ".npy":
            np.save(file, indices)
        else:
            file.write("".join(f"{index}\n" for index in indices.tolist()).encode("ascii"))
    print(f"wrote {len(indices):,} indices ({args.part} of a proxy of {proxy.k:,} from {proxy.n:,} examples) "
          f"to {args.out}")
