"""A small, learnable, deterministic classification task for fast tests and smoke runs.

Each class has a random prototype image in ``[0, 1]``; an example is its class's prototype plus
Gaussian noise, clipped to ``[0, 1]``. Everything is drawn from generators derived from ``seed``
(:func:`ninr.rng.make_generator`), so the same arguments always give the same tensors, and the
prototypes and the test set do not change when only ``n_train`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ninr.data.base import DATASETS, Dataset
from ninr.errors import check_nonneg, check_positive_int, fail
from ninr.rng import make_generator


def _check_shape(input_shape: object) -> tuple[int, int, int]:
    """``input_shape`` as a tuple of three positive ints ``(C, H, W)``."""
    if isinstance(input_shape, Sequence) and not isinstance(input_shape, str) and len(input_shape) == 3:
        dims = [d for d in input_shape if isinstance(d, int) and not isinstance(d, bool) and d >= 1]
        if len(dims) == 3:
            return (dims[0], dims[1], dims[2])
    raise fail("input_shape", "three integers >= 1 (C, H, W)", input_shape)


def _check_int(name: str, value: object) -> int:
    """An integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(name, "an integer", value)
    return value


def _examples(
    prototypes: torch.Tensor, n: int, noise: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples with balanced, shuffled labels: prototype plus clipped Gaussian noise."""
    num_classes = prototypes.shape[0]
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    noise_t = torch.randn((n, *prototypes.shape[1:]), generator=gen)
    images = (prototypes[labels] + noise * noise_t).clamp_(0.0, 1.0)
    return images, labels


@DATASETS.register("synthetic")
def synthetic(
    *,
    n_train: int = 2048,
    n_test: int = 512,
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    seed: int = 0,
    noise: float = 0.5,
) -> Dataset:
    """Synthetic prototypes-plus-noise images: small, learnable and deterministic per seed.

    Args:
        n_train: Number of training examples.
        n_test: Number of test examples.
        input_shape: Image shape ``(C, H, W)``.
        num_classes: Number of classes (at least 2); labels are balanced.
        seed: Seed of every random draw.
        noise: Standard deviation of the Gaussian noise added to the prototypes (before clipping).

    Returns:
        A :class:`Dataset` named ``"synthetic"`` with float32 images in ``[0, 1]`` and int64 labels.

    Raises:
        ConfigError: An argument breaks its rule.
    """
    n_train = check_positive_int("n_train", n_train)
    n_test = check_positive_int("n_test", n_test)
    shape = _check_shape(input_shape)
    if check_positive_int("num_classes", num_classes) < 2:
        raise fail("num_classes", "an integer >= 2", num_classes)
    seed = _check_int("seed", seed)
    sigma = check_nonneg("noise", noise)
    prototypes = torch.rand((num_classes, *shape), generator=make_generator(seed, "synthetic", "prototypes"))
    x_train, y_train = _examples(prototypes, n_train, sigma, make_generator(seed, "synthetic", "train"))
    x_test, y_test = _examples(prototypes, n_test, sigma, make_generator(seed, "synthetic", "test"))
    return Dataset(
        name="synthetic",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=tuple(f"class {i}" for i in range(num_classes)),
    )
