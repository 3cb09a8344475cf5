"""Datasets: image datasets read from local files (uint8 images [C, H, W] and int labels).

Every reader reads local files only and raises :class:`DatasetNotFoundError` (naming
the missing path and how to get the data) or :class:`CorruptDatasetError`.
"""

from ._files import CorruptDatasetError, DatasetNotFoundError
from .arrays import ImageArrayDataset
from .cifar import cifar10, cifar100
from .digits import digits
from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, fashion_mnist, read_idx
from .fingerprint import dataset_fingerprint
from .image_folder import IMAGE_EXTENSIONS, ImageFolder
from .named import DATASET_NAMES, load_dataset
from .svhn import svhn

__all__ = [
    "DATASET_NAMES",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ROOT",
    "IMAGE_EXTENSIONS",
    "ImageArrayDataset",
    "ImageFolder",
    "cifar10",
    "cifar100",
    "dataset_fingerprint",
    "digits",
    "fashion_mnist",
    "load_dataset",
    "read_idx",
    "svhn",
]

# The built-in score lists moved to proxyfast.scoring (they are scores, not images);
# these names stay importable from here.
_MOVED_TO_SCORING = {"BUILTIN_ENTROPY_LIST", "IMAGENET_TRAIN_SIZE", "builtin_entropy_list",
                     "imagenet_scale_scores", "builtin"}


def __getattr__(name: str):
    if name in _MOVED_TO_SCORING:
        from .. import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
