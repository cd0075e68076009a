"""Domain shift: evaluate on other labelled data with the same input shape.

Until real second data sets are in the library, :data:`SHIFTS` holds fixed, label-preserving
transformations of a data set's test split (for Fashion-MNIST: translated, inverted, low-contrast and
flipped test sets). Each is applied once, deterministically from ``seed``. Any other data set with the
same input shape, a :class:`ninr.data.Dataset` or an ``(x, y)`` pair, can be used through
:func:`shift_split`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ninr.data.base import Dataset
from ninr.errors import ConfigError, fail
from ninr.registry import Registry
from ninr.rng import make_generator
from ninr.robustness.corruptions.base import check_images, check_labels, get_corruption

Split = tuple[torch.Tensor, torch.Tensor]
ShiftFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

SHIFTS: Registry[ShiftFn] = Registry("shift")

TRANSLATE_SEVERITY = 4  # MNIST-C translate at severity 4: 4 pixels per axis, random signs
LOW_CONTRAST = 0.3  # ImageNet-C / MNIST-C contrast severity 2


@SHIFTS.register("translated")
def translated(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every image shifted by 4 pixels along each axis, random signs (MNIST-C translate, severity 4)."""
    return get_corruption("translate")(x, TRANSLATE_SEVERITY, generator=generator)


@SHIFTS.register("inverted")
def inverted(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The negative images, 1 - x."""
    return 1.0 - x


@SHIFTS.register("low-contrast")
def low_contrast(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Contrast around each image's mean reduced to 0.3."""
    return get_corruption("contrast")(x, 2, generator=generator)


@SHIFTS.register("flipped-lr")
def flipped_lr(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirrored left to right (labels kept: a mirrored garment is the same garment, as in FMNIST-C)."""
    return x.flip(-1)


@SHIFTS.register("flipped-ud")
def flipped_ud(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Turned upside down (FMNIST-C's vertical flip)."""
    return x.flip(-2)


def labelled_split(data: Any, name: str = "data") -> Split:
    """The labelled test split of a :class:`Dataset`, or an ``(x, y)`` pair, checked."""
    if isinstance(data, Dataset):
        x, y = data.x_test, data.y_test
    elif isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
    else:
        raise fail(name, "a ninr.data.Dataset or an (x, y) pair", type(data).__name__)
    check_images(x, f"{name} images")
    check_labels(y, len(x), f"{name} labels")
    return x, y


def shift_split(shift: str | Any, reference: Split, *, seed: int = 0) -> Split:
    """The shifted test set: a registered shift of ``reference``, or another data set of the same shape."""
    x, y = reference
    if isinstance(shift, str):
        fn = SHIFTS.get(shift)
        with torch.no_grad():
            return fn(x, make_generator(seed, "shift", shift)), y
    xs, ys = labelled_split(shift, "shift data")
    if xs.shape[1:] != x.shape[1:]:
        raise ConfigError(f"shift data must have input shape {tuple(x.shape[1:])}, got {tuple(xs.shape[1:])}")
    return xs, ys
