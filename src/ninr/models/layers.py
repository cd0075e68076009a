"""Small building blocks shared by the registered models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel, with fixed statistics stored as buffers.

    Data stay in pixel space ([0, 1]) where corruptions and attacks are defined; the model
    standardises its own input. The statistics are part of the ``state_dict``.

    Shape:
        (B, C, ...) -> same shape; ``mean`` and ``std`` have C entries (or 1, broadcast).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.shape != std_t.shape or not bool(torch.all(std_t > 0)):
            raise ValueError(f"`std` must be > 0 with one entry per mean, got mean={list(mean)} std={list(std)}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return (x - self.mean) / self.std
        return (x - self.mean.flatten()[0]) / self.std.flatten()[0]

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


InputStats = tuple[tuple[float, ...], tuple[float, ...]]


def channel_stats(x: torch.Tensor) -> InputStats:
    """Per-channel mean and standard deviation of images ``x`` (N, C, H, W), computed in float64."""
    xd = x.double()
    dims = [0, 2, 3]
    return tuple(xd.mean(dim=dims).tolist()), tuple(xd.std(dim=dims).tolist())
