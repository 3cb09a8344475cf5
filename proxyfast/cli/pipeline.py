"""Commands that start from a dataset: ``proxyfast pretrain``, ``score`` and ``pipeline``.

    proxyfast pretrain --dataset fashion-mnist --out baseline.ckpt [--epochs 10] [--width 16]
    proxyfast score --checkpoint baseline.ckpt --dataset fashion-mnist --out train.pxscores \\
        [--features] [--entropy-list entropies.txt] [--work-dir DIR]
    torchrun --nproc-per-node 8 -m proxyfast score ...     (sharded over the processes)
    proxyfast pipeline --out DIR

:func:`add_commands` registers them on the ``proxyfast`` parser and returns their
handlers by name.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import torch

from .._checks import (
    check_bin_width,
    check_fraction,
    check_input_files,
    check_int,
    check_output_dir,
    check_output_paths,
    check_real,
    check_seed,
    same_file,
)
from ..data import dataset_fingerprint, load_dataset
from ..scoring import write_entropy_list
from ..models import CifarResNet
from ..pipeline import PipelineConfig, run_pipeline
from ..baseline import load_checkpoint, load_model, train
from ..scoring import DatasetMismatchError, score
from .common import add_data_arguments, add_run_arguments, check_data_arguments, setup_run

__all__ = ["add_commands"]

_MODEL_DEPTHS = {"resnet20": 20, "resnet56": 56}


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Adds the ``pretrain``, ``score`` and ``pipeline`` subcommands to ``commands``;
    returns ``{name: handler}``."""
    pretrain = commands.add_parser("pretrain", help="train a baseline model, with atomic checkpoints and resume")
    add_data_arguments(pretrain)
    pretrain.add_argument("--model", default="resnet20", choices=sorted(_MODEL_DEPTHS), help="default resnet20")
    pretrain.add_argument("--width", type=int, default=16, help="channels of the first stage (default 16)")
    pretrain.add_argument("--stem-stride", type=int, default=1, help="stride of the first convolution (default 1)")
    pretrain.add_argument("--epochs", type=int, default=10, help="default 10")
    pretrain.add_argument("--batch-size", type=int, default=256, help="default 256")
    pretrain.add_argument("--lr", type=float, default=0.2, help="peak one-cycle learning rate (default 0.2)")
    pretrain.add_argument("--weight-decay", type=float, default=5e-4, help="default 5e-4")
    pretrain.add_argument("--no-augment", action="store_true", help="no random shifts and flips")
    pretrain.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                          help="bfloat16 autocast (default: where the device runs bfloat16 natively)")
    pretrain.add_argument("--seed", type=int, default=0, help="default 0")
    pretrain.add_argument("--out", required=True, help="the checkpoint file (resumed when it exists)")
    pretrain.add_argument("--no-resume", action="store_true", help="start over even when --out exists")
    add_run_arguments(pretrain)

    score_parser = commands.add_parser("score", help="score a dataset with a trained baseline")
    score_parser.add_argument("--checkpoint", required=True, help="a checkpoint written by 'proxyfast pretrain'")
    add_data_arguments(score_parser)
    score_parser.add_argument("--split", default="train", choices=("train", "test"), help="default train")
    score_parser.add_argument("--batch-size", type=int, default=512, help="default 512")
    score_parser.add_argument("--features", action="store_true", help="keep penultimate features (for kcenter)")
    score_parser.add_argument("--amp", action="store_true", help="autocast the forward pass")
    score_parser.add_argument("--out", required=True, help="where to write the scores")
    score_parser.add_argument("--entropy-list", default=None, help="also write the paper's 'index entropy label' list")
    score_parser.add_argument("--work-dir", default=None,
                              help="score in shards written here, resumable (default under torchrun: OUT.shards)")
    score_parser.add_argument("--shard-size", type=int, default=16384, help="examples per shard (default 16384)")
    score_parser.add_argument("--keep-shards", action="store_true", help="keep the work directory after merging")
    add_run_arguments(score_parser)

    pipeline = commands.add_parser("pipeline", help="the end-to-end job on Fashion-MNIST: baseline, scores, proxies")
    pipeline.add_argument("--out", required=True, help="output directory (an existing run there is resumed)")
    pipeline.add_argument("--data-root", default=None, help="Fashion-MNIST directory (default: the Debian package's)")
    defaults = PipelineConfig(out="")
    pipeline.add_argument("--epochs", type=int, default=defaults.epochs, help=f"default {defaults.epochs}")
    pipeline.add_argument("--width", type=int, default=defaults.width, help=f"default {defaults.width}")
    pipeline.add_argument("--fraction", type=float, default=defaults.fraction, help=f"default {defaults.fraction}")
    pipeline.add_argument("--bin-width", type=float, default=defaults.bin_width, help=f"default {defaults.bin_width}")
    pipeline.add_argument("--seed", type=int, default=defaults.seed, help=f"default {defaults.seed}")
    pipeline.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                          help="train the baseline under bfloat16 autocast (default: where the device runs it natively)")
    add_run_arguments(pipeline)
    return {"pretrain": _run_pretrain, "score": _run_score, "pipeline": _run_pipeline}


def _channels_and_classes(dataset) -> tuple[int, int]:
    first = dataset[0][0]
    return first.shape[0], len(dataset.classes)


def _run_pretrain(args: argparse.Namespace) -> None:
    check_data_arguments(args)
    for name, value, minimum in (("--width", args.width, 1), ("--stem-stride", args.stem_stride, 1),
                                 ("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 2)):
        check_int(name, value, minimum)
    check_real("--lr", args.lr, 0.0, open_low=True)
    check_real("--weight-decay", args.weight_decay, 0.0)
    check_seed("--seed", args.seed)
    check_output_paths({"--out": args.out})  # an existing --out is the checkpoint to resume, as intended
    device = setup_run(args)
    train_set = load_dataset(args.dataset, args.data_root, train=True, image_size=args.image_size)
    test_set = None
    if args.dataset != "imagefolder":
        test_set = load_dataset(args.dataset, args.data_root, train=False)
    channels, classes = _channels_and_classes(train_set)
    torch.manual_seed(args.seed)
    model = CifarResNet(_MODEL_DEPTHS[args.model], classes, channels, args.width, stem_stride=args.stem_stride)
    started = time.perf_counter()
    result = train(
        model, train_set, test_set, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, augment=not args.no_augment, seed=args.seed, device=device, amp=args.amp,
        checkpoint=args.out, resume=not args.no_resume, progress=not args.quiet,
    )
    print(f"trained {args.model} on {len(train_set):,} images in {time.perf_counter() - started:.1f} s; "
          f"checkpoint {args.out}")
    if result.test_accuracy is not None:
        print(f"test accuracy: {100 * result.test_accuracy:.2f}%")


def _check_score_arguments(args: argparse.Namespace) -> torch.device:
    check_data_arguments(args)
    check_int("--batch-size", args.batch_size)
    check_int("--shard-size", args.shard_size)
    check_input_files({"--checkpoint": args.checkpoint})
    check_output_paths({"--out": args.out, "--entropy-list": args.entropy_list}, {"--checkpoint": args.checkpoint})
    if args.work_dir is not None:
        check_output_dir("--work-dir", args.work_dir, [])
        for name, path in (("--out", args.out), ("--entropy-list", args.entropy_list), ("--checkpoint",
                                                                                          args.checkpoint)):
            if path is not None and same_file(args.work_dir, path):
                raise ValueError(f"--work-dir {args.work_dir!r} is also {name}: give the shards their own directory")
    return setup_run(args)


def _load_scoring_inputs(args: argparse.Namespace):
    """The checkpoint's model and the dataset to score, after checking that the model
    was trained on this dataset's training split (same images, sizes and classes)."""
    state = load_checkpoint(args.checkpoint)
    run = state.get("run")
    if not isinstance(run, dict) or not isinstance(run.get("model"), dict):
        raise ValueError(f"--checkpoint {args.checkpoint!r} holds no baseline run: write it with 'proxyfast pretrain'")
    model = load_model(args.checkpoint)
    dataset = load_dataset(args.dataset, args.data_root, train=args.split == "train", image_size=args.image_size)
    trained_on = run.get("dataset")
    if trained_on is not None:
        train_split = dataset if args.split == "train" else load_dataset(
            args.dataset, args.data_root, train=True, image_size=args.image_size)
        if dataset_fingerprint(train_split) != trained_on:
            raise DatasetMismatchError(
                f"--checkpoint {args.checkpoint!r} was trained on other data ({run.get('n', 0):,} examples, "
                f"fingerprint {trained_on}) than the {args.dataset} training set ({len(train_split):,} examples, "
                f"fingerprint {dataset_fingerprint(train_split)}): score with a baseline trained on {args.dataset}"
            )
    return model, dataset


def _run_score(args: argparse.Namespace) -> None:
    device = _check_score_arguments(args)
    if args.work_dir is not None or "WORLD_SIZE" in os.environ:
        _run_score_sharded(args, device)
        return
    model, dataset = _load_scoring_inputs(args)
    started = time.perf_counter()
    scores = score(model, dataset, batch_size=args.batch_size, device=device, features=args.features, amp=args.amp,
                   progress=not args.quiet)
    _write_scores(args, scores, time.perf_counter() - started, "")


def _write_scores(args: argparse.Namespace, scores, seconds: float, where: str) -> None:
    """Saves the scores (and the entropy list when asked) and prints the one summary line."""
    scores.save(args.out)
    accuracy = float((scores.predictions == scores.labels).float().mean())
    print(f"scored {len(scores):,} images{where} in {seconds:.1f} s ({len(scores) / seconds:,.0f} images/s); "
          f"accuracy {100 * accuracy:.2f}%; wrote {args.out}")
    if args.entropy_list:
        write_entropy_list(args.entropy_list, scores)
        print(f"wrote {args.entropy_list}")


def _run_score_sharded(args: argparse.Namespace, device: torch.device) -> None:
    """``score`` in shards over the processes of a ``torchrun`` job (or one process):
    rank 0 merges the shards and writes the outputs."""
    from ..distributed import IncompleteScoresError, init_distributed, remove_shards, score_sharded

    if "WORLD_SIZE" in os.environ and device.type == "cuda":
        device = None  # under torchrun each process takes the GPU of its local rank
    env = init_distributed(device=device)
    try:
        model, dataset = _load_scoring_inputs(args)
        work_dir = args.work_dir if args.work_dir is not None else f"{args.out}.shards"
        started = time.perf_counter()
        try:
            scores = score_sharded(
                model, dataset, work_dir, shard_size=args.shard_size, batch_size=args.batch_size, device=env.device,
                features=args.features, amp=args.amp, progress=not args.quiet, log=print,
            )
        except IncompleteScoresError as error:
            print(f"proxyfast: error on rank {env.rank}: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        seconds = time.perf_counter() - started
        if not env.is_main:
            return
        _write_scores(args, scores, seconds, f" on {env.world_size} process(es)")
        if not args.keep_shards:
            remove_shards(work_dir)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run_pipeline(args: argparse.Namespace) -> None:
    check_int("--epochs", args.epochs)
    check_int("--width", args.width)
    check_fraction("--fraction", args.fraction)
    check_bin_width("--bin-width", args.bin_width)
    check_seed("--seed", args.seed)
    device = setup_run(args)
    config = PipelineConfig(
        out=args.out, data_root=args.data_root, epochs=args.epochs, width=args.width, fraction=args.fraction,
        bin_width=args.bin_width, seed=args.seed, device=str(device), amp=args.amp, progress=not args.quiet,
    )
    run_pipeline(config)
