"""The model registry: ``MODELS.get(name)(input_shape, num_classes, **kwargs) -> nn.Module``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ninr.errors import ConfigError
from ninr.registry import Registry

ModelBuilder = Callable[..., nn.Module]
"""``builder(input_shape, num_classes, **kwargs) -> nn.Module`` for inputs of shape (C, H, W).

Every builder accepts ``input_stats=(mean, std)`` (per channel) and standardises its input with it.
"""


MODELS: Registry[ModelBuilder] = Registry("model", group="ninr.models")


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; unknown keyword arguments are an error naming the model."""
    builder = MODELS.get(name)
    try:
        return builder(tuple(input_shape), num_classes, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise ConfigError(f"model {name!r}: {exc}") from None
        raise
