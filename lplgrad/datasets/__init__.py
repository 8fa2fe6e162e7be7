"""Datasets: each a class chosen in the config with ``class_path``."""

from lplgrad.datasets.base import ImageDataset, Images, Placeholders, Transformed, check_labels
from lplgrad.errors import DatasetNotFoundError
from lplgrad.datasets.digits import Digits
from lplgrad.datasets.fashion_mnist import FashionMNIST
from lplgrad.datasets.folder import ImageFolder
from lplgrad.datasets.torchvision_sets import CIFAR10, CIFAR100, SVHN, Caltech101

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "SVHN",
    "Caltech101",
    "DatasetNotFoundError",
    "Digits",
    "FashionMNIST",
    "ImageDataset",
    "ImageFolder",
    "Images",
    "Placeholders",
    "Transformed",
    "check_labels",
]
