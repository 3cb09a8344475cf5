"""Datasets: the built-in score lists and image datasets read from local files.

Every reader reads local files only and raises :class:`DatasetNotFoundError` (naming
the missing path and how to get the data) or :class:`CorruptDatasetError`.
"""

from ._files import CorruptDatasetError, DatasetNotFoundError
from .arrays import ImageArrayDataset
from .builtin import BUILTIN_ENTROPY_LIST, IMAGENET_TRAIN_SIZE, builtin_entropy_list, imagenet_scale_scores
from .cifar import cifar10, cifar100
from .digits import digits
from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, fashion_mnist, read_idx
from .fingerprint import dataset_fingerprint
from .image_folder import IMAGE_EXTENSIONS, ImageFolder
from .named import DATASET_NAMES, load_dataset
from .svhn import svhn

__all__ = [
    "BUILTIN_ENTROPY_LIST",
    "DATASET_NAMES",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ROOT",
    "IMAGENET_TRAIN_SIZE",
    "IMAGE_EXTENSIONS",
    "ImageArrayDataset",
    "ImageFolder",
    "builtin_entropy_list",
    "cifar10",
    "cifar100",
    "dataset_fingerprint",
    "digits",
    "fashion_mnist",
    "imagenet_scale_scores",
    "load_dataset",
    "read_idx",
    "svhn",
]
