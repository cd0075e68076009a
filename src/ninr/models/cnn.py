"""A small convolutional classifier for 28x28 (or 32x32) images."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ninr.errors import check_positive_int, fail
from ninr.models.layers import InputStats, Standardize
from ninr.models.registry import MODELS


@MODELS.register("cnn")
def cnn(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    channels: tuple[int, int] = (32, 64),
    hidden: int = 128,
    input_stats: InputStats = ((0.0,), (1.0,)),
) -> nn.Sequential:
    """Two 3x3 conv + ReLU + 2x2 max-pool blocks, then a hidden dense layer and the output layer.

    For 1x28x28 inputs with the defaults: conv1 1->32 (28x28) -> pool (14x14) -> conv2 32->64 (14x14)
    -> pool (7x7) -> flatten 3136 -> fc1 128 -> out 10. About 422k parameters. ``input_stats``
    (per-channel mean and std) standardises the input.

    Shape:
        input (B, C, H, W) with H, W divisible by 4 -> logits (B, num_classes).
    """
    if len(input_shape) != 3 or input_shape[1] % 4 or input_shape[2] % 4:
        raise fail("input_shape", "(C, H, W) with H and W divisible by 4", tuple(input_shape))
    c, h, w = input_shape
    c1, c2 = (check_positive_int("channels", ch) for ch in channels)
    check_positive_int("hidden", hidden)
    return nn.Sequential(
        OrderedDict(
            normalize=Standardize(*input_stats),
            conv1=nn.Conv2d(c, c1, 3, padding=1),
            act1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(c1, c2, 3, padding=1),
            act2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(c2 * (h // 4) * (w // 4), hidden),
            act3=nn.ReLU(),
            out=nn.Linear(hidden, num_classes),
        )
    )
