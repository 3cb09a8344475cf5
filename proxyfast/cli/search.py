"""The search command of ``proxyfast``:

    proxyfast search --dataset fashion-mnist [--data-root D] [--proxy P [--scores S]] --algo darts|pcdarts
                     [--order 1|2] [--epochs E] [--batch-size B] [--channels C] [--layers L]
                     [--stem-stride 1|2] [--seed S] [--device cpu|cuda] [--checkpoint-every N]
                     [--no-resume] [--no-plots] [--loader pytorch|ffcv [--beton F]] --out DIR

It prints a line per epoch and the genotype found, and writes into DIR the genotype
(``genotype.txt``), the JSON log, the checkpoint and the plots (see
:func:`proxyfast.nas.search`). Run again with the same arguments, it resumes.
``--loader ffcv`` streams the proxy through FFCV from ``--beton`` (default: DIR/train.beton,
written from the training set when absent), with the same batches as the PyTorch loader.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from .._checks import check_input_files, check_int, check_output_dir
from ..data import DATASET_NAMES, load_dataset
from ..distributed import run_job
from ..nas.search import ALGORITHMS, OUTPUT_NAMES, SearchConfig, search
from ..nas.supernet import STEMS
from ..nas.train import LOADERS
from .common import check_data_arguments, setup_run
from .train import beton_path, check_loader_arguments

__all__ = ["add_commands"]


def _run_search(args: argparse.Namespace) -> None:
    check_data_arguments(args)
    inputs = {"--proxy": args.proxy, "--scores": args.scores}
    check_input_files(inputs)
    if args.scores is not None and args.proxy is None:
        raise ValueError("--scores checks the proxy selected from them: give --proxy too")
    check_output_dir("--out", args.out, OUTPUT_NAMES, inputs)
    if args.checkpoint_every is not None:
        check_int("--checkpoint-every", args.checkpoint_every)
    check_loader_arguments(args)
    device = setup_run(args)
    overrides = {
        name: getattr(args, name)
        for name in ("order", "epochs", "batch_size", "channels", "layers", "stem", "stem_stride", "lr",
                     "arch_lr", "warmup_epochs", "train_portion", "seed", "impl")
        if getattr(args, name) is not None
    }
    if args.no_augment:
        overrides["augment"] = False
    config = SearchConfig.for_algo(args.algo, **overrides)
    # Under torchrun every process joins one search.
    run_job(lambda rank_device, is_main: _search(args, config, rank_device, is_main), device)


def _search(args: argparse.Namespace, config: SearchConfig, device: torch.device, is_main: bool) -> None:
    """Searches on every process; the main one alone prints (and, in search, writes)."""
    dataset = load_dataset(args.dataset, args.data_root, train=True, image_size=args.image_size)
    proxy = args.proxy if args.proxy is not None else "the whole training set"
    if is_main:
        print(f"{config.algo} search (order {config.order}) on {args.dataset} ({len(dataset):,} training "
              f"examples), proxy: {proxy}; {config.epochs} epochs, batch {config.batch_size}, "
              f"{config.channels} channels, {config.layers} cells, on {device}")
    started = time.perf_counter()
    result = search(
        dataset, args.proxy, config, args.out, device=device, resume=not args.no_resume, progress=not args.quiet,
        checkpoint_every=args.checkpoint_every, scores=args.scores, plots=not args.no_plots, loader=args.loader,
        beton=beton_path(args),
    )
    if is_main:
        print(f"wrote {', '.join(sorted(result.files.values()))} in {time.perf_counter() - started:.1f} s")


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Adds the ``search`` subcommand to ``commands``; returns ``{name: handler}``."""
    darts = SearchConfig()
    parser = commands.add_parser("search", help="DARTS or PC-DARTS search on a proxy, with checkpoints and resume")
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASET_NAMES,
                        help="the training set the proxy was selected from (default fashion-mnist)")
    parser.add_argument("--data-root", default=None,
                        help="the dataset's directory (default for fashion-mnist: /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--image-size", type=int, default=None, help="imagefolder only: resize and centre-crop to this")
    parser.add_argument("--proxy", default=None,
                        help="a proxy set file of the dataset (default: the whole training set)")
    parser.add_argument("--scores", default=None,
                        help="the scores file the proxy was selected from: also checks the proxy and the dataset "
                        "by fingerprint")
    parser.add_argument("--algo", required=True, choices=ALGORITHMS, help="darts or pcdarts (its published settings)")
    parser.add_argument("--order", type=int, choices=(1, 2), default=None, help="architect order (default 1)")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {darts.epochs}")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"per step, in each half (default: darts {darts.batch_size}, pcdarts 256)")
    parser.add_argument("--channels", type=int, default=None, help=f"initial channels (default {darts.channels})")
    parser.add_argument("--layers", type=int, default=None, help=f"cells (default {darts.layers})")
    parser.add_argument("--stem", choices=STEMS, default=None, help="cifar (default) or imagenet (224 -> 28)")
    parser.add_argument("--stem-stride", type=int, default=None,
                        help="cifar stem: 2 halves the resolution of every cell (default 1)")
    parser.add_argument("--lr", type=float, default=None,
                        help="initial learning rate (default: darts 0.025, pcdarts 0.1)")
    parser.add_argument("--arch-lr", type=float, default=None,
                        help="Adam learning rate of the architecture (default: darts 3e-4, pcdarts 6e-4)")
    parser.add_argument("--warmup-epochs", type=int, default=None,
                        help="epochs of weight steps only (default: darts 0, pcdarts 15)")
    parser.add_argument("--train-portion", type=float, default=None,
                        help=f"share of the proxy that trains the weights (default {darts.train_portion})")
    parser.add_argument("--no-augment", action="store_true", help="no random shifts and flips")
    parser.add_argument("--impl", default=None, help="mixed-op implementation (default: the library's)")
    parser.add_argument("--seed", type=int, default=None, help="default 0")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="also checkpoint every N steps (default: at epoch ends only)")
    parser.add_argument("--no-resume", action="store_true", help="start over even when --out holds a checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots of the alphas and the cells")
    parser.add_argument("--loader", choices=LOADERS, default="pytorch",
                        help="pytorch (default) or ffcv: the same batches, read from a .beton by FFCV")
    parser.add_argument("--beton", default=None,
                        help="--loader ffcv: the training set's .beton (default: DIR/train.beton, written when absent)")
    parser.add_argument("--out", required=True, help="output directory (a search there is resumed)")
    return {"search": _run_search}
