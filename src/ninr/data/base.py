"""The :class:`Dataset` container, the dataset registry and :func:`load_dataset`.

A dataset is a few in-memory tensors: images as float32 ``(N, C, H, W)`` in ``[0, 1]`` and labels as
int64 ``(N,)``, for a training, a test and an optional validation split.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
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

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor on ``device`` (the same object's tensors where already there).

        Args:
            device: The target device, e.g. ``"cuda"``.

        Returns:
            A new :class:`Dataset`; this one is unchanged.
        """

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            x_val=move(self.x_val),
            y_val=move(self.y_val),
        )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={x.shape[0]}" for split, x, _ in self._splits())
        return (
            f"Dataset(name={self.name!r}, {sizes}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, device={self.x_train.device})"
        )


DATASETS = Registry[Callable[..., Dataset]]("dataset", group="ninr.datasets")


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
    return loader(**kwargs)


def _check_options(name: str, loader: Callable[..., Dataset], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in kwargs:
        if key not in params:
            raise ConfigError(
                f"dataset {name!r} has no option `{key}`{did_you_mean(key, params)} (options: {', '.join(params)})"
            )
