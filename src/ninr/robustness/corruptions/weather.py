"""Weather corruptions: fog (plasma fractal) and spatter (blurred, thresholded noise), as in MNIST-C."""

from __future__ import annotations

import torch

from ninr.robustness._random import normal, uniform
from ninr.robustness.corruptions._ops import gaussian_blur
from ninr.robustness.corruptions.base import State, register

PLASMA_WIBBLE = 100.0  # MNIST-C's plasma_fractal starting wibble
MUD_COLOUR = 63.0 / 255.0  # MNIST-C spatter's mud colour


def _mapsize(h: int, w: int) -> int:
    size = 2
    while size < max(h, w):
        size *= 2
    return size


def _fog_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    size = _mapsize(*x.shape[-2:])
    state: State = {}
    level, m = 0, 1
    while m < size:
        for part in range(3):  # squares, then the two diamond sets
            state[f"u{level}.{part}"] = uniform(keys, (m, m), 3 * level + part, dtype=x.dtype)
        level, m = level + 1, m * 2
    return state


def plasma(state: State, decay: float, size: int) -> torch.Tensor:
    """Diamond-square plasma fractal (MNIST-C ``plasma_fractal``) on a ``size`` x ``size`` torus.

    MNIST-C builds a 256 x 256 map and crops 28 x 28; here the map is the smallest power of two that
    covers the image (32 for 28 x 28), with the same per-level amplitude rule
    ``wibble^2 U(-1, 1)``, ``wibble /= decay`` per level, normalised to [0, 1] per example.
    """
    first = state["u0.0"]
    n, dtype, device = first.shape[0], first.dtype, first.device
    grid = torch.zeros(n, size, size, dtype=dtype, device=device)
    step, wibble, level = size, PLASMA_WIBBLE, 0
    while step >= 2:
        half = step // 2
        amp = wibble * wibble

        def noise(part: int, amp: float = amp, level: int = level) -> torch.Tensor:
            return amp * (2.0 * state[f"u{level}.{part}"] - 1.0)

        corner = grid[:, 0::step, 0::step]
        square = corner + torch.roll(corner, -1, dims=1)
        square = square + torch.roll(square, -1, dims=2)
        grid[:, half::step, half::step] = square / 4 + noise(0)
        centre = grid[:, half::step, half::step]
        corner = grid[:, 0::step, 0::step]
        left = centre + torch.roll(centre, 1, dims=1) + corner + torch.roll(corner, -1, dims=2)
        grid[:, 0::step, half::step] = left / 4 + noise(1)
        top = centre + torch.roll(centre, 1, dims=2) + corner + torch.roll(corner, -1, dims=1)
        grid[:, half::step, 0::step] = top / 4 + noise(2)
        step, wibble, level = half, wibble / decay, level + 1
    lo = grid.amin(dim=(1, 2), keepdim=True)
    hi = grid.amax(dim=(1, 2), keepdim=True)
    return (grid - lo) / (hi - lo).clamp(min=torch.finfo(dtype).tiny)


@register("fog", "weather", prepare=_fog_state, random=True)
def fog(x: torch.Tensor, level: tuple[float, float], state: State) -> torch.Tensor:
    """Add a plasma-fractal haze and rescale: ``(x + s fog) max(x) / (max(x) + s)``."""
    strength, decay = level
    h, w = x.shape[-2:]
    haze = plasma(state, decay, _mapsize(h, w))[:, :h, :w].unsqueeze(1)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * haze) * peak / (peak + strength)


def _spatter_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    return {"z": normal(keys, (1, *x.shape[-2:]), 0, dtype=x.dtype)}


@register("spatter", "weather", prepare=_spatter_state, random=True)
def spatter(x: torch.Tensor, level: tuple[float, float, float, float, float], state: State) -> torch.Tensor:
    """Mud spatter: blurred Gaussian noise, thresholded into blobs, blurred again, painted in dark gray."""
    mean, std, sigma, threshold, mask_sigma = level
    liquid = gaussian_blur(mean + std * state["z"], sigma)
    mask = gaussian_blur((liquid > threshold).to(x.dtype), mask_sigma)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    return x * (1 - mask) + MUD_COLOUR * mask
