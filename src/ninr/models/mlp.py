"""Fully connected classifiers: ``mlp`` (the paper's 3-hidden-layer ReLU network) and ``linear``."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ninr.errors import check_positive_int
from ninr.models.layers import InputStats, Standardize
from ninr.models.registry import MODELS


@MODELS.register("mlp")
def mlp(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    width: int = 256,
    depth: int = 3,
    input_stats: InputStats = ((0.0,), (1.0,)),
) -> nn.Sequential:
    """ReLU MLP with ``depth`` hidden layers of ``width`` units (default 784-256-256-256-10).

    Layers are named ``normalize``, ``flatten``, ``fc1 .. fc{depth}`` and ``out`` so NIWs and probes
    read naturally. ``input_stats`` (per-channel mean and std) standardises the input.

    Shape:
        input (B, *input_shape) -> logits (B, num_classes).
    """
    check_positive_int("width", width)
    check_positive_int("depth", depth)
    layers: OrderedDict[str, nn.Module] = OrderedDict(normalize=Standardize(*input_stats), flatten=nn.Flatten())
    fan_in = math.prod(input_shape)
    for i in range(1, depth + 1):
        layers[f"fc{i}"] = nn.Linear(fan_in, width)
        layers[f"act{i}"] = nn.ReLU()
        fan_in = width
    layers["out"] = nn.Linear(fan_in, num_classes)
    return nn.Sequential(layers)


@MODELS.register("linear")
def linear(
    input_shape: Sequence[int], num_classes: int, *, input_stats: InputStats = ((0.0,), (1.0,))
) -> nn.Sequential:
    """A single affine layer (multinomial logistic regression) on the standardised input."""
    return nn.Sequential(
        OrderedDict(
            normalize=Standardize(*input_stats),
            flatten=nn.Flatten(),
            out=nn.Linear(math.prod(input_shape), num_classes),
        )
    )
