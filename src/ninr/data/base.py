"""The :class:`Dataset` container, the dataset registry, :func:`load_dataset` and :func:`register_dataset`.

A dataset is a few in-memory tensors: images as float32 ``(N, C, H, W)`` in ``[0, 1]`` and labels as
int64 ``(N,)``, for a training, a test and an optional validation split.

Two facts tie a run to its data. :attr:`Dataset.fingerprint` is a sha256 of the tensors' content, dtypes
and shapes and of the class names (computed once per object). :attr:`Dataset.registration` says which
registered loader and arguments built it: :func:`load_dataset` sets it, and every other way of making a
data set (the constructor, ``dataclasses.replace``, slicing the tensors into a new one) leaves it ``None``,
so a data set is "the registered one" only when it came out of the registry unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ninr.errors import ConfigError, DataError, did_you_mean
from ninr.registry import Registry


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image classification data set held in memory.

    Attributes:
        name: The registered name, e.g. ``"fashion-mnist"``.
        x_train: Training images, float32 ``(N, C, H, W)`` in ``[0, 1]``.
        y_train: Training labels, int64 ``(N,)`` in ``[0, num_classes)``.
        x_test: Test images, same layout as ``x_train``.
        y_test: Test labels.
        classes: One human-readable name per class; its length is the number of classes.
        x_val: Optional validation images carved out of the training set.
        y_val: Optional validation labels; present exactly when ``x_val`` is.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    registration: str | None = field(default=None, init=False, compare=False, repr=False)
    """The registered loader and arguments that built this object (:func:`registration_key`), set by
    :func:`load_dataset` only; ``None`` for a data set made any other way."""

    def __post_init__(self) -> None:
        if not self.classes:
            raise DataError(f"dataset {self.name!r}: `classes` must be non-empty, got {self.classes!r}")
        if (self.x_val is None) != (self.y_val is None):
            raise DataError(f"dataset {self.name!r}: `x_val` and `y_val` must both be given or both be None")
        for split, x, y in self._splits():
            self._check_split(split, x, y)

    def _splits(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        splits = [("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)]
        if self.x_val is not None and self.y_val is not None:
            splits.append(("val", self.x_val, self.y_val))
        return splits

    def _check_split(self, split: str, x: torch.Tensor, y: torch.Tensor) -> None:
        where = f"dataset {self.name!r}, split {split!r}"
        if x.dtype != torch.float32 or x.ndim != 4:
            raise DataError(f"{where}: images must be float32 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        if y.dtype != torch.int64 or y.ndim != 1:
            raise DataError(f"{where}: labels must be int64 (N,), got {y.dtype} {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{where}: {x.shape[0]} images but {y.shape[0]} labels")
        if x.shape[1:] != self.x_train.shape[1:]:
            raise DataError(f"{where}: image shape {tuple(x.shape[1:])} differs from train {self.input_shape}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise DataError(
                f"{where}: labels must be in [0, {self.num_classes}), got range [{int(y.min())}, {int(y.max())}]"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one image, ``(C, H, W)``."""
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)

    @property
    def fingerprint(self) -> str:
        """The sha256 (hex) of the data: class names, then each split's name, dtypes, shapes and tensor bytes.

        Computed on first use (0.4 s for Fashion-MNIST's 220 MB of float32 images on a 2-core AMD EPYC) and kept
        on the object; the tensors are treated as read-only from then on (changing one in place would not update it).
        """
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            cached = _fingerprint(self)
            object.__setattr__(self, "_fingerprint", cached)
        return str(cached)

    def identity(self) -> dict[str, Any]:
        """What identifies the data: its name, :attr:`fingerprint`, class count and each split's shape."""
        return {
            "name": self.name,
            "sha256": self.fingerprint,
            "num_classes": self.num_classes,
            "shapes": {split: list(x.shape) for split, x, _ in self._splits()},
        }

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor on ``device`` (the same object's tensors where already there).

        Args:
            device: The target device, e.g. ``"cuda"``.

        Returns:
            A new :class:`Dataset`; this one is unchanged.
        """

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        moved = dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            x_val=move(self.x_val),
            y_val=move(self.y_val),
        )
        # the same content: it stays the registered data set it was, with the same fingerprint
        object.__setattr__(moved, "registration", self.registration)
        if "_fingerprint" in self.__dict__:
            object.__setattr__(moved, "_fingerprint", self.__dict__["_fingerprint"])
        return moved

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={x.shape[0]}" for split, x, _ in self._splits())
        return (
            f"Dataset(name={self.name!r}, {sizes}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, device={self.x_train.device})"
        )


def _fingerprint(data: Dataset) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(list(data.classes)).encode())
    for split, x, y in data._splits():
        for part, t in (("x", x), ("y", y)):
            t = t.detach().to("cpu").contiguous()
            digest.update(f"|{split}.{part}:{t.dtype}:{list(t.shape)}|".encode())
            digest.update(t.numpy().data)  # the array's raw bytes, not copied
    return digest.hexdigest()


DATASETS = Registry[Callable[..., Dataset]]("dataset", group="ninr.datasets")
"""Data set loaders by name (plugins: the ``ninr.datasets`` entry-point group)."""


def registration_key(name: str, kwargs: Mapping[str, Any]) -> str:
    """The :attr:`Dataset.registration` of ``load_dataset(name, **kwargs)``: the name and arguments as JSON."""
    return json.dumps({"dataset": name, "dataset_kwargs": dict(kwargs)}, sort_keys=True, default=str)


def is_registered(data: Dataset, name: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether ``data`` is exactly what ``load_dataset(name, **kwargs)`` returned (not a copy or a change of it)."""
    return data.registration == registration_key(name, kwargs)


def register_dataset(name: str, loader: Callable[..., Dataset], *, doc: str | None = None) -> None:
    """Register ``loader`` (keyword arguments in, a :class:`Dataset` out) as the data set ``name``.

    Runs then name it (``TrainConfig(dataset=name)``) and :func:`load_dataset` rebuilds it, which is what
    ``ninr eval`` does to evaluate a trained run. For the command line, where no Python code of yours runs
    first, expose the loader as an entry point of the group ``ninr.datasets`` instead (``docs/extending.md``).

    Raises:
        DuplicateNameError: ``name`` is registered already.
    """
    DATASETS.add(name, loader, doc=doc)


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Build the dataset registered as ``name``.

    Args:
        name: A name in :data:`DATASETS`, e.g. ``"fashion-mnist"`` or ``"synthetic"``.
        **kwargs: Keyword options of that dataset's loader.

    Returns:
        The loaded :class:`Dataset`.

    Raises:
        UnknownNameError: ``name`` is not registered (the message suggests close matches).
        ConfigError: An option is not one the loader takes.
    """
    loader = DATASETS.get(name)
    _check_options(name, loader, kwargs)
    data = loader(**kwargs)
    if not isinstance(data, Dataset):
        raise DataError(f"dataset {name!r}: its loader must return a ninr.data.Dataset, got {type(data).__name__}")
    object.__setattr__(data, "registration", registration_key(name, kwargs))
    return data


def _check_options(name: str, loader: Callable[..., Dataset], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in kwargs:
        if key not in params:
            raise ConfigError(
                f"dataset {name!r} has no option `{key}`{did_you_mean(key, params)} (options: {', '.join(params)})"
            )
