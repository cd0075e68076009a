"""Noise distributions as a registry of pure samplers.

One meaning of ``scale`` everywhere: the standard deviation of the draw. Methods can therefore be
compared at equal noise power whatever the distribution. A sampler has the signature
``sampler(shape, *, scale, generator, device, dtype) -> Tensor`` and, at ``scale == 0``, returns
exact zeros without consuming the generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch

from ninr.errors import check_nonneg
from ninr.registry import Registry


class Sampler(Protocol):
    """A pure noise sampler with standard deviation ``scale``."""

    def __call__(
        self,
        shape: Sequence[int],
        *,
        scale: float,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor: ...


DISTRIBUTIONS: Registry[Sampler] = Registry("distribution")


@DISTRIBUTIONS.register("gaussian")
def gaussian(
    shape: Sequence[int],
    *,
    scale: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normal noise N(0, scale^2)."""
    if scale == 0:
        return torch.zeros(tuple(shape), device=device, dtype=dtype)
    out = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    return out.mul_(scale)


@DISTRIBUTIONS.register("uniform")
def uniform(
    shape: Sequence[int],
    *,
    scale: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform noise on [-sqrt(3) scale, sqrt(3) scale] (standard deviation ``scale``)."""
    if scale == 0:
        return torch.zeros(tuple(shape), device=device, dtype=dtype)
    half_width = math.sqrt(3.0) * scale
    out = torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype)
    return out.mul_(2 * half_width).sub_(half_width)


def sample(
    distribution: str,
    shape: Sequence[int],
    *,
    scale: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw ``shape`` noise from the registered ``distribution`` with standard deviation ``scale``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample("gaussian", (3,), scale=0.0, generator=g)
        tensor([0., 0., 0.])
    """
    check_nonneg("scale", scale)
    sampler = DISTRIBUTIONS.get(distribution)
    return sampler(shape, scale=scale, generator=generator, device=device, dtype=dtype)
