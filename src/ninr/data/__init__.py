"""Data sets as in-memory tensors: Fashion-MNIST (found, fetched and verified) and a synthetic task.

Importing this package reads no data; loaders read on call. Look a data set up by name with
:func:`load_dataset`, add your own with :func:`register_dataset`, or use a loader directly (a run then
records the data's fingerprint: only what :func:`load_dataset` returns counts as the registered data set).

Note:
    The names ``fashion_mnist`` and ``synthetic`` here are the loader functions, which shadow the
    submodules of the same name as attributes; use ``importlib.import_module("ninr.data.fashion_mnist")``
    to reach the module itself.
"""

from ninr.data.base import DATASETS, Dataset, is_registered, load_dataset, register_dataset
from ninr.data.fashion_mnist import fashion_mnist, load_fashion_mnist_raw, locate_fashion_mnist
from ninr.data.idx import read_idx, write_idx
from ninr.data.synthetic import synthetic

__all__ = [
    "DATASETS",
    "Dataset",
    "fashion_mnist",
    "is_registered",
    "load_dataset",
    "load_fashion_mnist_raw",
    "locate_fashion_mnist",
    "read_idx",
    "register_dataset",
    "synthetic",
    "write_idx",
]
