"""Unstructured noise: gaussian, uniform, shot (Poisson), impulse (salt-and-pepper) and speckle.

Besides severities 1..5, each takes a continuous ``intensity``: the standard deviation of
(corrupted - clean) before clipping, at a reference pixel value where the noise depends on the pixel
(1 for shot and speckle, 0.5 for impulse), so curves can be drawn on a fine grid of noise std.
"""

from __future__ import annotations

import math

import torch

from ninr.errors import fail
from ninr.robustness._random import normal, uniform, uniform_at
from ninr.robustness.corruptions._poisson import poisson
from ninr.robustness.corruptions.base import State, register


def _normal_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    return {"z": normal(keys, x.shape[1:], 0, dtype=x.dtype)}


def _uniform_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    return {"u": uniform(keys, x.shape[1:], 0, dtype=x.dtype)}


def _shot_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    shape = x.shape[1:]
    u = uniform(keys, shape, 0, dtype=torch.float64)
    return {"u": u, "v": uniform(keys, shape, 1, dtype=torch.float64), "keys": keys}


def _same(std: float) -> float:
    return std


@register(
    "gaussian-noise",
    "noise",
    prepare=_normal_state,
    random=True,
    intensity=_same,
    intensity_meaning="std of the additive noise",
)
def gaussian_noise(x: torch.Tensor, std: float, state: State) -> torch.Tensor:
    """Additive Gaussian noise N(0, std^2) per pixel."""
    return x + std * state["z"]


@register(
    "uniform-noise",
    "noise",
    prepare=_uniform_state,
    random=True,
    intensity=_same,
    intensity_meaning="std of the additive noise (half-width sqrt(3) std)",
)
def uniform_noise(x: torch.Tensor, std: float, state: State) -> torch.Tensor:
    """Additive uniform noise on [-sqrt(3) std, sqrt(3) std] per pixel."""
    return x + (math.sqrt(3.0) * std) * (2.0 * state["u"] - 1.0)


def _photons(std: float) -> float:
    return math.inf if std == 0 else 1.0 / std**2


@register(
    "shot-noise",
    "noise",
    prepare=_shot_state,
    random=True,
    intensity=_photons,
    intensity_meaning="std at a pixel of value 1, 1/sqrt(c)",
)
def shot_noise(x: torch.Tensor, c: float, state: State) -> torch.Tensor:
    """Poisson photon noise: Poisson(c x) / c per pixel (exact: inversion below mean 10, PTRS above)."""
    if math.isinf(c):
        return x.clone()
    keys, per_example = state["keys"], math.prod(x.shape[1:])

    def retry(flat: torch.Tensor, rnd: int) -> tuple[torch.Tensor, torch.Tensor]:
        example, counter = flat // per_example, flat % per_example
        fresh_u = uniform_at(keys, example, counter, 2 * rnd, dtype=torch.float64)
        return fresh_u, uniform_at(keys, example, counter, 2 * rnd + 1, dtype=torch.float64)

    counts = poisson(x.to(torch.float64) * c, state["u"], state["v"], retry)
    return (counts / c).to(x.dtype)


def _amount(std: float) -> float:
    if std > 0.5:
        raise fail("intensity", "<= 0.5 for impulse-noise (std 0.5 sqrt(p) at a pixel of 0.5)", std)
    return 4.0 * std**2


@register(
    "impulse-noise",
    "noise",
    prepare=_uniform_state,
    random=True,
    intensity=_amount,
    intensity_meaning="std at a pixel of value 0.5, 0.5 sqrt(p)",
)
def impulse_noise(x: torch.Tensor, amount: float, state: State) -> torch.Tensor:
    """Salt-and-pepper noise: each pixel independently set to 0 or to 1, each with probability amount/2."""
    u = state["u"]
    out = torch.where(u < amount / 2, torch.zeros_like(x), x)
    return torch.where(u > 1 - amount / 2, torch.ones_like(x), out)


@register(
    "speckle-noise",
    "noise",
    prepare=_normal_state,
    random=True,
    intensity=_same,
    intensity_meaning="std at a pixel of value 1 (x + x std z)",
)
def speckle_noise(x: torch.Tensor, std: float, state: State) -> torch.Tensor:
    """Multiplicative Gaussian noise: x + x std z per pixel."""
    return x + std * x * state["z"]
