"""Digital corruptions: brightness, contrast, inverse and stripe (deterministic)."""

from __future__ import annotations

import torch

from ninr.robustness.corruptions.base import State, register


@register("brightness", "digital")
def brightness(x: torch.Tensor, amount: float, state: State) -> torch.Tensor:
    """Raise the HSV value by ``amount`` (clipped at 1), keeping hue and saturation.

    For grayscale this is ``clip(x + amount)``, MNIST-C's gray -> HSV -> gray round trip; for RGB the
    value channel is the per-pixel max, and scaling the pixel by V'/V keeps hue and saturation.
    """
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + amount).clamp(max=1.0)
    scaled = x * (new_value / value.clamp(min=torch.finfo(x.dtype).tiny))
    return torch.where(value > 0, scaled, new_value.expand_as(x))


@register("contrast", "digital")
def contrast(x: torch.Tensor, factor: float, state: State) -> torch.Tensor:
    """Scale every pixel's distance from the image's mean (per channel) by ``factor``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


@register("inverse", "digital")
def inverse(x: torch.Tensor, weight: float, state: State) -> torch.Tensor:
    """Blend towards the negative image: ``x + weight (1 - 2x)`` (weight 1 is ``1 - x``)."""
    return x + weight * (1.0 - 2.0 * x)


@register("stripe", "digital")
def stripe(x: torch.Tensor, fraction: float, state: State) -> torch.Tensor:
    """Invert a band of ``round(fraction W)`` columns at the left and at the right edge."""
    w = x.shape[-1]
    band = round(fraction * w)
    cols = torch.arange(w, device=x.device)
    flip = (cols < band) | (cols >= w - band)
    return torch.where(flip, 1.0 - x, x)
