"""The loader commands of ``proxyfast``:

    proxyfast beton --dataset NAME [--split train|test] [--data-root DIR] [--image-size S]
                    --out F.beton [--image-format raw|jpeg] [--jpeg-quality 90] [--num-workers N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from .. import data
from .._checks import check_int, check_output_paths
from ..loaders import write_beton
from ..loaders.ffcv import IMAGE_FORMATS
from .common import check_data_arguments

__all__ = ["add_commands"]


def _run_beton(args: argparse.Namespace) -> None:
    check_data_arguments(args)
    check_int("--jpeg-quality", args.jpeg_quality, 1, 100)
    if args.num_workers is not None:
        check_int("--num-workers", args.num_workers)
    check_output_paths({"--out": args.out})
    dataset = data.load_dataset(args.dataset, root=args.data_root, train=args.split == "train",
                                image_size=args.image_size)
    start = time.perf_counter()
    write_beton(dataset, args.out, image_format=args.image_format, jpeg_quality=args.jpeg_quality,
                num_workers=args.num_workers)
    seconds = time.perf_counter() - start
    channels, height, width = dataset[0][0].shape
    print(f"wrote {args.out}: {args.dataset} {args.split}, {len(dataset):,} images (the first {height}x{width}x"
          f"{channels}) stored {args.image_format}, {os.path.getsize(args.out):,} bytes, in {seconds:.1f} s")


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Adds the loader commands to ``commands``; returns their handlers by name."""
    beton = commands.add_parser("beton", help="write a built-in dataset to an FFCV .beton file")
    beton.add_argument("--dataset", required=True, choices=data.DATASET_NAMES, help="the dataset to write")
    beton.add_argument("--split", choices=("train", "test"), default="train", help="which split (default train)")
    beton.add_argument("--data-root", default=None,
                       help="the dataset's directory (default: Fashion-MNIST's Debian package; needed for "
                       "cifar10, cifar100, svhn and imagefolder)")
    beton.add_argument("--image-size", type=int, default=None, help="imagefolder only: resize and centre-crop to this")
    beton.add_argument("--out", required=True, help="the .beton file to write")
    beton.add_argument("--image-format", choices=IMAGE_FORMATS, default="raw",
                       help="raw: exact pixels, one shape (small images); jpeg: compressed RGB of any size "
                       "(large images) (default raw)")
    beton.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality, 1 to 100 (default 90)")
    beton.add_argument("--num-workers", type=int, default=None, help="writer processes (default: one per core)")
    return {"beton": _run_beton}
