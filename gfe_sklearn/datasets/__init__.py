"""Loaders for the MNIST family of image datasets, as numpy arrays in scikit-learn Bunches."""

from ._base import get_data_home
from ._mnist import load_fashion_mnist, load_mnist, load_segmented_mnist

__all__ = [
    "get_data_home",
    "load_fashion_mnist",
    "load_mnist",
    "load_segmented_mnist",
]
