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

from .data import DATASET_NAMES, load_dataset
from .io import write_entropy_list
from .models import CifarResNet
from .pipeline import PipelineConfig, run_pipeline
from .pretrain import load_model, train
from .scoring import score

__all__ = ["add_commands"]

_MODEL_DEPTHS = {"resnet20": 20, "resnet56": 56}


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASET_NAMES,
                        help="dataset name (default fashion-mnist)")
    parser.add_argument("--data-root", default=None,
                        help="the dataset's directory (default for fashion-mnist: /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--image-size", type=int, default=None, help="imagefolder only: resize and centre-crop to this")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Adds the ``pretrain``, ``score`` and ``pipeline`` subcommands to ``commands``;
    returns ``{name: handler}``."""
    pretrain = commands.add_parser("pretrain", help="train a baseline model, with atomic checkpoints and resume")
    _add_data_arguments(pretrain)
    pretrain.add_argument("--model", default="resnet20", choices=sorted(_MODEL_DEPTHS), help="default resnet20")
    pretrain.add_argument("--width", type=int, default=16, help="channels of the first stage (default 16)")
    pretrain.add_argument("--stem-stride", type=int, default=1, help="stride of the first convolution (default 1)")
    pretrain.add_argument("--epochs", type=int, default=10, help="default 10")
    pretrain.add_argument("--batch-size", type=int, default=256, help="default 256")
    pretrain.add_argument("--lr", type=float, default=0.2, help="peak one-cycle learning rate (default 0.2)")
    pretrain.add_argument("--weight-decay", type=float, default=5e-4, help="default 5e-4")
    pretrain.add_argument("--no-augment", action="store_true", help="no random shifts and flips")
    pretrain.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    pretrain.add_argument("--seed", type=int, default=0, help="default 0")
    pretrain.add_argument("--out", required=True, help="the checkpoint file (resumed when it exists)")
    pretrain.add_argument("--no-resume", action="store_true", help="start over even when --out exists")
    _add_run_arguments(pretrain)

    score_parser = commands.add_parser("score", help="score a dataset with a trained baseline")
    score_parser.add_argument("--checkpoint", required=True, help="a checkpoint written by 'proxyfast pretrain'")
    _add_data_arguments(score_parser)
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
    _add_run_arguments(score_parser)

    pipeline = commands.add_parser("pipeline", help="the end-to-end job on Fashion-MNIST: baseline, scores, proxies")
    pipeline.add_argument("--out", required=True, help="output directory (an existing run there is resumed)")
    pipeline.add_argument("--data-root", default=None, help="Fashion-MNIST directory (default: the Debian package's)")
    defaults = PipelineConfig(out="")
    pipeline.add_argument("--epochs", type=int, default=defaults.epochs, help=f"default {defaults.epochs}")
    pipeline.add_argument("--width", type=int, default=defaults.width, help=f"default {defaults.width}")
    pipeline.add_argument("--fraction", type=float, default=defaults.fraction, help=f"default {defaults.fraction}")
    pipeline.add_argument("--bin-width", type=float, default=defaults.bin_width, help=f"default {defaults.bin_width}")
    pipeline.add_argument("--seed", type=int, default=defaults.seed, help=f"default {defaults.seed}")
    _add_run_arguments(pipeline)
    return {"pretrain": _run_pretrain, "score": _run_score, "pipeline": _run_pipeline}


def _setup(args: argparse.Namespace) -> torch.device:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.device is not None:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {args.device!r} is not available: this torch has no usable CUDA device")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _channels_and_classes(dataset) -> tuple[int, int]:
    first = dataset[0][0]
    return first.shape[0], len(dataset.classes)


def _run_pretrain(args: argparse.Namespace) -> None:
    device = _setup(args)
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


def _run_score(args: argparse.Namespace) -> None:
    if args.work_dir is not None or "WORLD_SIZE" in os.environ:
        _run_score_sharded(args)
        return
    device = _setup(args)
    model = load_model(args.checkpoint)
    dataset = load_dataset(args.dataset, args.data_root, train=args.split == "train", image_size=args.image_size)
    started = time.perf_counter()
    scores = score(model, dataset, batch_size=args.batch_size, device=device, features=args.features, amp=args.amp,
                   progress=not args.quiet)
    seconds = time.perf_counter() - started
    scores.save(args.out)
    accuracy = float((scores.predictions == scores.labels).float().mean())
    print(f"scored {len(scores):,} images in {seconds:.1f} s ({len(scores) / seconds:,.0f} images/s); "
          f"accuracy {100 * accuracy:.2f}%; wrote {args.out}")
    if args.entropy_list:
        write_entropy_list(args.entropy_list, scores)
        print(f"wrote {args.entropy_list}")


def _run_score_sharded(args: argparse.Namespace) -> None:
    """``score`` in shards over the processes of a ``torchrun`` job (or one process):
    rank 0 merges the shards and writes the outputs."""
    from .distributed import IncompleteScoresError, init_distributed, remove_shards, score_sharded

    device = _setup(args)
    if "WORLD_SIZE" in os.environ and device.type == "cuda":
        device = None  # under torchrun each process takes the GPU of its local rank
    env = init_distributed(device=device)
    try:
        model = load_model(args.checkpoint)
        dataset = load_dataset(args.dataset, args.data_root, train=args.split == "train", image_size=args.image_size)
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
        scores.save(args.out)
        accuracy = float((scores.predictions == scores.labels).float().mean())
        print(f"scored {len(scores):,} images on {env.world_size} process(es) in {seconds:.1f} s "
              f"({len(scores) / seconds:,.0f} images/s); accuracy {100 * accuracy:.2f}%; wrote {args.out}")
        if args.entropy_list:
            write_entropy_list(args.entropy_list, scores)
            print(f"wrote {args.entropy_list}")
        if not args.keep_shards:
            remove_shards(work_dir)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run_pipeline(args: argparse.Namespace) -> None:
    device = _setup(args)
    config = PipelineConfig(
        out=args.out, data_root=args.data_root, epochs=args.epochs, width=args.width, fraction=args.fraction,
        bin_width=args.bin_width, seed=args.seed, device=str(device), progress=not args.quiet,
    )
    run_pipeline(config)
