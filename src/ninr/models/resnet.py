"""ResNet18 for small multi-channel images (calorimeter images, CIFAR-size pictures), without torchvision.

The architecture of He et al. (2016) with two basic blocks in each of four stages, adapted to small
inputs the usual way (as for CIFAR): a 3x3 stride-1 stem and no max-pool, so a 32x32 image reaches the
last stage at 4x4 and a 16x16 one at 2x2. ``width`` is the number of channels of the first stage (64 in
the paper; the stages have width, 2 width, 4 width, 8 width): width 64 has 11.2M parameters, width 8
about 175k, which is what a CPU trains in minutes.

Module names: ``normalize``, ``conv1``, ``bn1``, ``layer1`` .. ``layer4`` (each ``0`` and ``1`` blocks with
``conv1``, ``bn1``, ``relu1``, ``conv2``, ``bn2``, ``relu2`` and, where the shape changes, ``downsample``),
``pool``, ``fc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ninr.errors import check_positive_int, fail
from ninr.models.layers import InputStats, Standardize
from ninr.models.registry import MODELS


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers with an identity (or 1x1 conv) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()  # two modules, not one reused: hooks (dropout, probes) fire once per activation
        self.relu2 = nn.ReLU()
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.downsample(x))


class ResNet(nn.Module):
    """A ResNet of :class:`BasicBlock` stages for small images.

    Shape:
        input (B, C, H, W) -> logits (B, num_classes).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        input_stats: InputStats = ((0.0,), (1.0,)),
    ) -> None:
        super().__init__()
        self.normalize = Standardize(*input_stats)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        channels = width
        for i, n in enumerate(blocks):
            out = width * 2**i
            stage = [BasicBlock(channels, out, stride=1 if i == 0 else 2)]
            stage += [BasicBlock(out, out) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            channels = out
        self.num_stages = len(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(self.normalize(x))))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@MODELS.register("resnet18")
def resnet18(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    width: int = 64,
    input_stats: InputStats = ((0.0,), (1.0,)),
) -> ResNet:
    """ResNet18 (basic blocks 2-2-2-2) for small (C, H, W) images; ``width`` channels in the first stage.

    ``input_stats`` (per-channel mean and std) standardises the input. Images of at least 8x8 keep every
    stage's feature map non-empty (the last stage runs at H/8 x W/8, rounded up).

    Example:
        >>> model = resnet18((2, 16, 16), 2, width=8)
        >>> model(torch.zeros(3, 2, 16, 16)).shape
        torch.Size([3, 2])
    """
    if len(input_shape) != 3 or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise fail("input_shape", "(C, H, W) with positive integers", tuple(input_shape))
    check_positive_int("width", width)
    check_positive_int("num_classes", num_classes)
    return ResNet(input_shape[0], num_classes, width=width, input_stats=input_stats)
