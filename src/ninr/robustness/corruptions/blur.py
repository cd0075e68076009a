"""Blurs: Gaussian blur, glass blur, motion blur and pixelate, as convolutions and gathers."""

from __future__ import annotations

import functools
import math

import torch

from ninr.robustness._random import bits, uniform
from ninr.robustness.corruptions._ops import box_resize_matrix, gaussian_blur, nearest_resize_matrix
from ninr.robustness.corruptions.base import State, register

GLASS_MAX_ITERATIONS = 3  # the most iterations in the glass-blur table
MOTION_MAX_ANGLE_DEG = 45.0  # MNIST-C draws the motion direction from U(-45, 45) degrees


@register("gaussian-blur", "blur")
def gaussian_blur_corruption(x: torch.Tensor, sigma: float, state: State) -> torch.Tensor:
    """Gaussian blur of the given sigma in pixels (skimage.filters.gaussian, nearest edges)."""
    return gaussian_blur(x, sigma)


def _glass_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    return {"bits": bits(keys, (GLASS_MAX_ITERATIONS, *x.shape[-2:]), 0)}


@register("glass-blur", "blur", prepare=_glass_state, random=True)
def glass_blur(x: torch.Tensor, level: tuple[float, int, int], state: State) -> torch.Tensor:
    """Blur, locally scramble pixels, blur again (ImageNet-C / MNIST-C glass blur).

    The reference swaps pixel pairs one after another in a Python loop; here every interior pixel
    reads, with probability 1/2, from a random offset in [-delta, delta) per axis (one gather per
    iteration), the vectorised analogue with the same reach and rate.
    """
    sigma, delta, iterations = level
    n, c, h, w = x.shape
    out = gaussian_blur(x, sigma)
    rows = torch.arange(h, device=x.device).view(h, 1)
    cols = torch.arange(w, device=x.device).view(1, w)
    interior = (rows > delta) & (rows <= h - delta) & (cols > delta) & (cols <= w - delta)
    base = (rows * w + cols).view(1, h * w)
    for it in range(int(iterations)):
        b = state["bits"][:, it].reshape(n, h * w)
        # 15-bit fractions a, d -> floor(a * 2 delta / 2^15) - delta: offsets in [-delta, delta)
        dy = (((b >> 1) & 0x7FFF) * (2 * delta) >> 15) - delta
        dx = (((b >> 16) & 0x7FFF) * (2 * delta) >> 15) - delta
        shift = torch.where(((b & 1) == 1) & interior.view(1, h * w), dy * w + dx, torch.zeros_like(b))
        index = (base + shift).unsqueeze(1).expand(n, c, h * w)  # interior targets stay inside the image
        out = out.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    return gaussian_blur(out, sigma)


def _motion_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    u = uniform(keys, (1,), 0, dtype=torch.float64)[:, 0]
    return {"angle": torch.deg2rad((2 * u - 1) * MOTION_MAX_ANGLE_DEG)}


def motion_kernel(radius: float, sigma: float) -> torch.Tensor:
    """ImageMagick's one-sided motion-blur weights: ``exp(-i^2 / (2 sigma^2))`` for i in 0..2 ceil(radius)."""
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    return k / k.sum()


@register("motion-blur", "blur", prepare=_motion_state, random=True)
def motion_blur(x: torch.Tensor, level: tuple[float, float], state: State) -> torch.Tensor:
    """Motion blur along a random direction (ImageMagick MotionBlurImage, as MNIST-C calls it).

    Tap ``i`` reads the pixel ``(round(i cos a), round(i sin a))`` away; outside the image the edge pixel
    repeats (ImageMagick's default virtual pixels). Each tap is one gather at per-example row and column
    indices, clamped to the image.
    """
    radius, sigma = level
    n, c, h, w = x.shape
    weights = motion_kernel(radius, sigma).tolist()
    angle = state["angle"].to(x.device)
    taps = torch.arange(len(weights), dtype=angle.dtype, device=x.device).view(1, -1, 1)
    # ImageMagick rounds with ceil(v - 0.5)
    ox = torch.ceil(taps * torch.cos(angle).view(-1, 1, 1) - 0.5).long()
    oy = torch.ceil(taps * torch.sin(angle).view(-1, 1, 1) - 0.5).long()
    row_index = (torch.arange(h, device=x.device).view(1, 1, h) + oy).clamp(0, h - 1) * w  # (N, taps, H)
    col_index = (torch.arange(w, device=x.device).view(1, 1, w) + ox).clamp(0, w - 1)  # (N, taps, W)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    for i, weight in enumerate(weights):
        index = (row_index[:, i, :, None] + col_index[:, i, None, :]).view(n, 1, h * w).expand(n, c, h * w)
        out.add_(flat.gather(2, index), alpha=weight)
    return out.view(n, c, h, w)


@functools.lru_cache(maxsize=64)
def _resize(n_in: int, n_out: int) -> torch.Tensor:
    cpu = torch.device("cpu")
    if n_out < n_in:
        return box_resize_matrix(n_in, n_out, dtype=torch.float64, device=cpu)
    return nearest_resize_matrix(n_in, n_out, dtype=torch.float64, device=cpu)


@register("pixelate", "blur")
def pixelate(x: torch.Tensor, factor: float, state: State) -> torch.Tensor:
    """Average down to ``int(size factor)`` pixels and scale the blocks back up (PIL ``Image.BOX`` both ways)."""
    _, _, h, w = x.shape
    sh, sw = max(int(h * factor), 1), max(int(w * factor), 1)
    down_h, down_w = (_resize(n, s).to(dtype=x.dtype, device=x.device) for n, s in ((h, sh), (w, sw)))
    up_h, up_w = (_resize(s, n).to(dtype=x.dtype, device=x.device) for n, s in ((h, sh), (w, sw)))
    return up_h @ (down_h @ x @ down_w.T) @ up_w.T
