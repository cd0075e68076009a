"""Detector-like noise distributions for noise injection nodes: ``correlated``, ``neighbour`` and ``pileup``.

Importing this module (``import ninr.hep`` does) registers them in :data:`ninr.functional.DISTRIBUTIONS`,
so ``--param distribution=correlated`` works for the NINR methods. They keep the registry's contract:
``scale`` is the standard deviation, the mean is zero, and ``scale == 0`` gives exact zeros without
consuming the generator.

All are spatial on the last two axes of a map (a per-pixel conv NIN draws ``(B, 1, H, W)``, use
``per="pixel"``); a draw with fewer than two axes (a dense NIN draws ``(B,)``) has no neighbours:
``correlated`` and ``neighbour`` then reduce to Gaussian, ``pileup`` to its one-cell, skewed distribution.

* ``correlated``: white Gaussian noise blurred by a Gaussian kernel of ``length`` pixels (1.0), periodic
  on the H x W torus, renormalised so every pixel has variance exactly ``scale**2``: spatially
  correlated cell noise (coherent noise across neighbouring cells).
* ``neighbour``: Gaussian noise whose side-neighbour pixels have correlation ``correlation`` (0.25) exactly,
  on the H x W torus (H, W >= 3): white noise plus ``w`` times the sum of its four side-neighbours,
  renormalised to std ``scale``, with 2 w / (1 + 4 w^2) = correlation (:func:`neighbour_weight`), the law of
  the fast calorimeter's correlated cell noise (``cell_noise_correlation``), set by the measured correlation
  rather than a blur length.
* ``pileup``: each pixel holds a deposit with probability ``occupancy`` (0.05), of exponential energy,
  spread by a periodic Gaussian of ``width`` pixels (0.7), then shifted and scaled to mean 0 and standard
  deviation ``scale`` by the exact moments (mean = occupancy, var = (2 occupancy - occupancy^2) sum k^2).
  Sparse, positive-skewed blobs like soft pileup deposits.

:func:`register_correlated`, :func:`register_neighbour` and :func:`register_pileup` register variants with other
parameters.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from ninr.errors import check_positive, check_probability, fail
from ninr.functional.noise import DISTRIBUTIONS, Sampler, zero_at_zero_scale


def periodic_gaussian_kernel(h: int, w: int, length: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A Gaussian of standard deviation ``length`` pixels on the h x w torus, centred at (0, 0), sum 1.

    Shape:
        returns (h, w).
    """
    dy = torch.arange(h, dtype=dtype)
    dx = torch.arange(w, dtype=dtype)
    dy, dx = torch.minimum(dy, h - dy), torch.minimum(dx, w - dx)  # wrapped distances
    k = torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * length**2))
    return k / k.sum()


def neighbour_weight(correlation: float) -> float:
    """The weight ``w`` of the four side-neighbours' white noise in a cell's noise with neighbour correlation
    ``correlation``: the root in [0, 1/2] of 2 w / (1 + 4 w^2) = correlation (correlation in [0, 1/2]).

    A field ``n = z + w * (sum of the four side-neighbours of z)`` of white ``z`` has variance 1 + 4 w^2 per cell and
    covariance 2 w between side-neighbours (they share no other term), hence that correlation.
    """
    if not 0 <= correlation <= 0.5:
        raise fail("correlation", "a number in [0, 0.5]", correlation)
    if correlation == 0:
        return 0.0
    return (1 - math.sqrt(1 - 4 * correlation**2)) / (4 * correlation)


def periodic_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Circular convolution of the last two axes of ``x`` with ``kernel`` (same h, w), by FFT."""
    h, w = x.shape[-2:]
    spec = torch.fft.rfft2(x.to(torch.float64)) * torch.fft.rfft2(kernel.to(torch.float64))
    return torch.fft.irfft2(spec, s=(h, w))


@zero_at_zero_scale
def correlated_noise(
    shape: Sequence[int],
    *,
    scale: float,
    length: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian noise correlated over the last two axes with correlation length ``length`` pixels."""
    check_positive("length", length)
    white = torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float64)
    if len(shape) < 2 or white.numel() == 0:  # no neighbours to blur over (an empty draw has no pixels at all)
        return white.mul_(scale).to(dtype)
    kernel = periodic_gaussian_kernel(shape[-2], shape[-1], length).to(white.device)
    blurred = periodic_blur(white, kernel)
    return (blurred * (scale / kernel.square().sum().sqrt())).to(dtype)  # var of a blur = sum k^2


def neighbour_kernel(h: int, w: int, correlation: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The kernel on the h x w torus of :func:`neighbour_noise`: 1 at (0, 0), ``neighbour_weight(correlation)`` at
    the four side-neighbours of (0, 0) (wrapped, so on a side shorter than 3 the weights add up), not normalised.

    Shape:
        returns (h, w).
    """
    weight = neighbour_weight(correlation)
    k = torch.zeros((h, w), dtype=dtype)
    k[0, 0] += 1.0
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        k[dy % h, dx % w] += weight
    return k


@zero_at_zero_scale
def neighbour_noise(
    shape: Sequence[int],
    *,
    scale: float,
    correlation: float = 0.25,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian noise of std ``scale`` whose side-neighbours on the last two axes (a torus) have correlation
    ``correlation`` in [0, 0.5] (exactly, for sides of at least 3 pixels); diagonal neighbours then have
    2 w^2 / (1 + 4 w^2), pixels further apart none."""
    neighbour_weight(correlation)  # validates before drawing
    white = torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float64)
    if len(shape) < 2 or white.numel() == 0:
        return white.mul_(scale).to(dtype)
    kernel = neighbour_kernel(shape[-2], shape[-1], correlation).to(white.device)
    return (periodic_blur(white, kernel) * (scale / kernel.square().sum().sqrt())).to(dtype)


@zero_at_zero_scale
def pileup_noise(
    shape: Sequence[int],
    *,
    scale: float,
    occupancy: float = 0.05,
    width: float = 0.7,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sparse exponential deposits blurred over the last two axes, standardised to mean 0, std ``scale``."""
    p = _check_occupancy(occupancy)
    check_positive("width", width)
    hit = torch.rand(tuple(shape), generator=generator, device=device, dtype=torch.float64) < p
    energy = torch.empty(tuple(shape), device=device, dtype=torch.float64).exponential_(1.0, generator=generator)
    raw = hit * energy  # mean p, variance 2p - p^2 (E[X^2] = 2 for Exp(1))
    sum_k2 = 1.0
    if len(shape) >= 2 and raw.numel():
        kernel = periodic_gaussian_kernel(shape[-2], shape[-1], width).to(raw.device)
        raw = periodic_blur(raw, kernel)  # sum k = 1 keeps the mean
        sum_k2 = float(kernel.square().sum())
    std = math.sqrt((2 * p - p * p) * sum_k2)
    return ((raw - p) * (scale / std)).to(dtype)


def _check_occupancy(occupancy: float) -> float:
    if check_probability("occupancy", occupancy) == 0:
        raise fail("occupancy", "a number in (0, 1)", occupancy)
    return float(occupancy)


def register_correlated(name: str, length: float) -> Sampler:
    """Register ``correlated_noise`` with correlation length ``length`` pixels as distribution ``name``."""
    check_positive("length", length)
    sampler = functools.partial(correlated_noise, length=length)
    DISTRIBUTIONS.add(name, sampler, doc=f"Gaussian noise correlated over neighbouring pixels (length {length:g} px).")
    return sampler


def register_neighbour(name: str, correlation: float) -> Sampler:
    """Register ``neighbour_noise`` with side-neighbour correlation ``correlation`` as distribution ``name``."""
    neighbour_weight(correlation)
    sampler = functools.partial(neighbour_noise, correlation=correlation)
    DISTRIBUTIONS.add(
        name, sampler, doc=f"Gaussian noise with side-neighbour correlation {correlation:g} (calorimeter cell noise)."
    )
    return sampler


def register_pileup(name: str, occupancy: float, width: float) -> Sampler:
    """Register ``pileup_noise`` with these parameters as distribution ``name``."""
    _check_occupancy(occupancy)
    check_positive("width", width)
    sampler = functools.partial(pileup_noise, occupancy=occupancy, width=width)
    DISTRIBUTIONS.add(
        name,
        sampler,
        doc=f"Pileup-like sparse positive deposits (occupancy {occupancy:g}, width {width:g} px), mean 0.",
    )
    return sampler


if "correlated" not in DISTRIBUTIONS:  # a re-import (e.g. importlib.reload) must not raise
    register_correlated("correlated", 1.0)
if "pileup" not in DISTRIBUTIONS:
    register_pileup("pileup", 0.05, 0.7)
if "neighbour" not in DISTRIBUTIONS:
    register_neighbour("neighbour", 0.25)
