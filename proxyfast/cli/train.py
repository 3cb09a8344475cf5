"""``proxyfast train``: final training of an architecture, from scratch.

    proxyfast train --arch DARTS_V2 --dataset fashion-mnist --epochs 20 --out DIR \\
        [--recipe cifar|imagenet] [--channels 36 --layers 20 --batch-size 96 --cutout 0 \\
         --drop-path 0.2 --auxiliary-weight 0.4 --stem-stride 1 --seed 0 --device cpu --no-resume]
    torchrun --nproc-per-node 8 -m proxyfast train ...     (DistributedDataParallel)

``--recipe`` presets every setting as the paper's final training does
(``proxyfast.nas.train.RECIPES``: ``cifar`` is its ``train.py``, ``imagenet`` its
``train_imagenet.py``); each flag given replaces the preset's value. Without a recipe
the settings are :func:`proxyfast.nas.train_network`'s defaults, and ``--epochs`` is needed.

``--arch`` is a registered name (``proxyfast.nas.GENOTYPES``, or a name from the DARTS,
PC-DARTS or proxy-data papers' code), a genotype string, or a ``genotype.txt`` written
by ``proxyfast search``. The command writes into DIR:

    checkpoint.ckpt     after every epoch (a second run resumes from it)
    model.pt            the trained network (proxyfast.nas.load_network reads it)
    train_log.json      settings, per-epoch history, test accuracy, wall time, parameters
    cell_normal.png     pictures of the two cells (when matplotlib is installed)
    cell_reduce.png
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import platform
import time
from collections.abc import Callable

import torch

from .._atomic import atomic_write
from .._checks import check_int, check_output_dir, check_real, check_seed
from .._fileformat import read_text
from .._version import __version__
from ..data import load_dataset
from ..distributed import run_job
from ..nas.genotypes import Genotype, get_genotype
from ..nas.plots import CELLS, plot_cell
from ..loaders.ffcv import INSTALL_HINT
from ..nas.train import LOADERS, LR_SCHEDULES, RECIPES, check_lr_schedule, recipe_arguments, save_network, train_network
from ..runtime import resolve_amp
from .common import add_data_arguments, add_run_arguments, check_data_arguments, setup_run

__all__ = ["add_commands", "beton_path", "check_loader_arguments", "resolve_arch", "training_settings"]

BETON_NAME = "train.beton"
CHECKPOINT_NAME = "checkpoint.ckpt"
MODEL_NAME = "model.pt"
LOG_NAME = "train_log.json"
OUTPUT_NAMES = (CHECKPOINT_NAME, MODEL_NAME, LOG_NAME, *(f"cell_{cell}.png" for cell in CELLS))
# train_network's argument set by each flag that a recipe presets.
_SETTINGS = {"epochs": "epochs", "channels": "channels", "layers": "layers", "batch_size": "batch_size",
             "lr": "lr", "weight_decay": "weight_decay", "grad_clip": "grad_clip", "cutout": "cutout",
             "drop_path": "drop_path_prob",
             "auxiliary_weight": "auxiliary_weight", "stem": "stem", "stem_stride": "stem_stride",
             "eval_every": "eval_every", "lr_schedule": "lr_schedule", "warmup_epochs": "warmup_epochs",
             "label_smoothing": "label_smoothing", "mean": "mean", "std": "std"}


def resolve_arch(arch: str) -> Genotype:
    """The genotype an ``--arch`` argument names: a file holding a genotype string (as
    ``proxyfast search`` writes ``genotype.txt``), a registered name, or a genotype string."""
    if os.path.isfile(arch):
        text = read_text(arch).strip()
        try:
            return Genotype.parse(text)
        except ValueError as error:
            raise ValueError(f"--arch file {arch!r} holds no valid genotype: {error}") from None
    try:
        return get_genotype(arch)
    except ValueError as error:
        if not arch.lstrip().startswith("Genotype(") and (os.sep in arch or arch.endswith(".txt")):
            raise ValueError(f"--arch: no such file {arch!r}") from None
        raise ValueError(f"--arch: {error}") from None


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Adds the ``train`` subcommand to ``commands``; returns ``{name: handler}``."""
    train = commands.add_parser("train", help="train the network of a found cell from scratch (final training)")
    train.add_argument("--arch", required=True,
                       help="a registered architecture name (e.g. DARTS_V2), a genotype string, or a genotype.txt")
    add_data_arguments(train)
    train.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                       help="the paper's final training: cifar (train.py) or imagenet (train_imagenet.py); "
                       "flags given replace its values")
    train.add_argument("--epochs", type=int, default=None, help="training epochs (needed without --recipe)")
    train.add_argument("--channels", type=int, default=None, help="channels of the first cells (default 36)")
    train.add_argument("--layers", type=int, default=None, help="cells (default 20)")
    train.add_argument("--batch-size", type=int, default=None, help="default 96")
    train.add_argument("--lr", type=float, default=None, help="initial learning rate (default 0.025)")
    train.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None,
                       help="cosine to 0, stepped per epoch (default), or linear with a slower last 5 epochs")
    train.add_argument("--warmup-epochs", type=int, default=None, help="epochs of linear warm-up (default 0)")
    train.add_argument("--label-smoothing", type=float, default=None, help="default 0")
    train.add_argument("--weight-decay", type=float, default=None, help="default 3e-4")
    train.add_argument("--grad-clip", type=float, default=None,
                       help="largest gradient norm; 0 disables clipping (default 5)")
    train.add_argument("--cutout", type=int, default=None, help="cutout box side in pixels; 0 disables (default 0)")
    train.add_argument("--drop-path", type=float, default=None,
                       help="drop-path rate, raised linearly from 0 over the epochs (default 0.2)")
    train.add_argument("--auxiliary-weight", type=float, default=None,
                       help="weight of the auxiliary head's loss; 0: no auxiliary head (default 0.4)")
    train.add_argument("--mean", type=float, nargs="+", default=None,
                       help="input normalisation, one value or one per channel (default: the training set's own)")
    train.add_argument("--std", type=float, nargs="+", default=None, help="goes with --mean")
    train.add_argument("--stem", default=None, choices=("cifar", "imagenet"), help="default cifar")
    train.add_argument("--stem-stride", type=int, default=None,
                       help="stride of the cifar stem; 2 halves the resolution of every cell (default 1)")
    train.add_argument("--no-augment", action="store_true", help="no random shifts and flips")
    train.add_argument("--eval-every", type=int, default=None,
                       help="also measure the test accuracy every this many epochs; the best is reported too "
                       "(default 0: at the end only)")
    train.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                          help="bfloat16 autocast (default: where the device runs bfloat16 natively)")
    train.add_argument("--seed", type=int, default=0, help="default 0")
    train.add_argument("--loader", choices=LOADERS, default="pytorch",
                       help="pytorch (default) or ffcv: the same batches, read from a .beton by FFCV")
    train.add_argument("--beton", default=None,
                       help="--loader ffcv: the training set's .beton (default: DIR/train.beton, written when absent)")
    train.add_argument("--out", required=True, help="output directory (a run there is resumed)")
    train.add_argument("--no-resume", action="store_true", help="start over even when DIR holds a checkpoint")
    add_run_arguments(train)
    return {"train": _run_train}


def beton_path(args: argparse.Namespace) -> str | None:
    """The .beton that ``--loader ffcv`` reads: ``--beton``, or the one in ``--out``."""
    if args.loader != "ffcv":
        return None
    return args.beton if args.beton is not None else os.path.join(args.out, BETON_NAME)


def check_loader_arguments(args: argparse.Namespace) -> None:
    """``--beton`` goes with ``--loader ffcv``, which needs FFCV installed."""
    if args.beton is not None and args.loader != "ffcv":
        raise ValueError("--beton is read by --loader ffcv only")
    if args.loader == "ffcv" and importlib.util.find_spec("ffcv") is None:
        raise ImportError(f"--loader ffcv: {INSTALL_HINT}")


def training_settings(args: argparse.Namespace) -> dict:
    """train_network's settings for the command line: the recipe's (or train_network's
    defaults without one), each replaced by the flag given."""
    if args.recipe is not None:
        settings = recipe_arguments(args.recipe)
    else:
        if args.epochs is None:
            raise ValueError("--epochs is needed without --recipe")
        defaults = inspect.signature(train_network).parameters
        settings = {name: defaults[name].default for name in _SETTINGS.values() if name != "epochs"}
    settings.update({name: getattr(args, flag) for flag, name in _SETTINGS.items() if getattr(args, flag) is not None})
    if settings["grad_clip"] == 0:
        settings["grad_clip"] = None
    return settings


def _check_train_arguments(args: argparse.Namespace, settings: dict) -> None:
    check_data_arguments(args)
    for name, key, minimum in (("--epochs", "epochs", 1), ("--channels", "channels", 1), ("--layers", "layers", 1),
                               ("--batch-size", "batch_size", 2), ("--cutout", "cutout", 0),
                               ("--stem-stride", "stem_stride", 1), ("--eval-every", "eval_every", 0),
                               ("--warmup-epochs", "warmup_epochs", 0)):
        check_int(name, settings[key], minimum)
    check_seed("--seed", args.seed)
    check_real("--lr", settings["lr"], 0.0, open_low=True)
    check_real("--weight-decay", settings["weight_decay"], 0.0)
    if settings["grad_clip"] is not None:
        check_real("--grad-clip", settings["grad_clip"], 0.0)
    check_real("--drop-path", settings["drop_path_prob"], 0.0, 1.0, open_high=True)
    check_real("--auxiliary-weight", settings["auxiliary_weight"], 0.0)
    check_real("--label-smoothing", settings["label_smoothing"], 0.0, 1.0, open_high=True)
    if (settings["mean"] is None) != (settings["std"] is None):
        raise ValueError("--mean and --std go together: give both, or neither for the training set's own")
    if settings["stem"] != "cifar" and settings["stem_stride"] != 1:
        raise ValueError(f"--stem-stride applies to the cifar stem only; the {settings['stem']} stem takes 1")
    check_lr_schedule(settings["epochs"], settings["lr_schedule"], settings["warmup_epochs"],
                      settings["label_smoothing"])
    check_loader_arguments(args)
    arch_file = args.arch if os.path.isfile(args.arch) else None
    check_output_dir("--out", args.out, OUTPUT_NAMES, {"--arch": arch_file})


def _run_train(args: argparse.Namespace) -> None:
    genotype = resolve_arch(args.arch)
    settings = training_settings(args)
    _check_train_arguments(args, settings)
    device = setup_run(args)
    # Under torchrun every process trains its share of each batch.
    run_job(lambda rank_device, is_main: _train(args, settings, genotype, rank_device, is_main), device)


def _train(args: argparse.Namespace, settings: dict, genotype: Genotype, device: torch.device, is_main: bool) -> None:
    """Trains on every process; the main one alone prints and writes the outputs."""
    train_set = load_dataset(args.dataset, args.data_root, train=True, image_size=args.image_size)
    test_set = None if args.dataset == "imagefolder" else load_dataset(args.dataset, args.data_root, train=False)
    os.makedirs(args.out, exist_ok=True)
    if is_main:
        print(f"training {genotype}")
    started = time.perf_counter()
    result = train_network(
        genotype, train_set, test_set, **settings, augment=not args.no_augment, seed=args.seed, device=device,
        amp=args.amp, checkpoint=os.path.join(args.out, CHECKPOINT_NAME), resume=not args.no_resume,
        progress=not args.quiet, loader=args.loader, beton=beton_path(args),
    )
    wall = time.perf_counter() - started
    if not is_main:
        return
    files = {"checkpoint": os.path.join(args.out, CHECKPOINT_NAME), "model": os.path.join(args.out, MODEL_NAME),
             "log": os.path.join(args.out, LOG_NAME)}
    save_network(files["model"], result.model, test_accuracy=result.test_accuracy)
    log = {
        "arch": args.arch,
        "genotype": str(genotype),
        "dataset": args.dataset,
        "train_examples": len(train_set),
        "test_examples": len(test_set) if test_set is not None else None,
        "network": result.model.config(),
        "recipe": args.recipe,
        "settings": {
            **settings, "augment": not args.no_augment,
            "amp": resolve_amp(args.amp, device),  # the precision the run took, not only what was asked
            "seed": args.seed,
        },
        "parameters": result.parameters,
        "test_accuracy": result.test_accuracy,
        "best_test_accuracy": result.best_test_accuracy,
        "best_epoch": result.best_epoch,
        "train_seconds": sum(epoch["seconds"] for epoch in result.history),
        "seconds_this_run": wall,
        "history": result.history,
        "device": str(device),
        "processes": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "proxyfast": __version__,
    }
    with atomic_write(files["log"]) as file:
        file.write(json.dumps(log, indent=1, allow_nan=False).encode("utf-8") + b"\n")
    pictures = {f"{cell} cell": os.path.join(args.out, f"cell_{cell}.png") for cell in CELLS}
    try:
        for cell in CELLS:
            plot_cell(genotype, pictures[f"{cell} cell"], cell=cell, title=f"{cell} cell")
    except ImportError as error:
        print(f"skipped the cell pictures: {error}")
    else:
        files.update(pictures)
    print(f"{result.parameters / 1e6:.3f}M parameters; trained {len(result.history)} epochs in "
          f"{log['train_seconds']:.1f} s ({wall:.1f} s this run)")
    if result.test_accuracy is not None:
        print(f"test accuracy: {100 * result.test_accuracy:.2f}% after the last epoch, best "
              f"{100 * result.best_test_accuracy:.2f}% at epoch {result.best_epoch}")
    for path in files.values():
        print(f"wrote {path}")
