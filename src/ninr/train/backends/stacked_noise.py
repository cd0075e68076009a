"""Dropout, activation noise and weight noise of K stacked runs, each run drawing from its own noise module.

A lone model applies these through forward hooks (:mod:`ninr.nn.noise_layers`): :class:`NoiseDropout` and
:class:`ActivationNoise` hang after a module and perturb its output, :class:`WeightNoise` feeds a layer
``p + eps`` for its named parameters. In a stack every run keeps its own modules, hence its own seeded
generators: for each forward pass each run's module draws once, with the shape, dtype and distribution it
draws alone (its slice of the stacked tensor has the shape of its lone tensor), so a seeded run draws the
same numbers as alone, step for step. The draws are then stacked and applied in one element-wise op:

- output noise: ``x * M + A`` with run k's multiplier ``M_k`` (dropout's ``keep / (1 - p)``, multiplicative
  noise's ``1 + s eps``; ones for a run without) and addend ``A_k`` (additive noise; zeros for a run without).
  A run's slice is then exactly what its module computes (``x * 1``, ``x + 0`` leave a value unchanged).
- weight noise: the stacked weight plus the stacked draws (zeros for a run without), in the stacked layout.

Noise that is off (``eval()``, :func:`~ninr.nn.force_noise`), a dropout rate of 0 and a scale of 0 draw
nothing, as alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ninr.functional.noise import sample
from ninr.nn.noise_layers import ActivationNoise, NoiseDropout, OutputNoise, WeightNoise

OUTPUT_NOISE: tuple[type[OutputNoise], ...] = (NoiseDropout, ActivationNoise)
"""The output-noise modules a stack applies itself (exact types: a subclass may change ``perturb``)."""

WEIGHT_NOISE_PARAMS = ("weight", "bias")
"""The layer parameters stacked weight noise can perturb (those of a Linear/Conv layer)."""


def output_factors(
    modules: Sequence[OutputNoise | None], shape: Sequence[int], like: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Each run's multiplier and addend for one output-noise module per run, stacked: ``(K, *shape)`` each.

    ``shape`` is one run's slice (its lone output's shape); ``None`` for a factor no run needs. Run k draws
    from ``modules[k]``'s own generator exactly what that module draws alone (:func:`ninr.functional.perturb.dropout`
    and :func:`~ninr.functional.perturb.add_noise`: one uniform draw ``>= p``, or one ``sample`` of the
    distribution, of the output's shape and dtype).
    """
    k = len(modules)
    mult: list[torch.Tensor | None] = [None] * k
    add: list[torch.Tensor | None] = [None] * k
    device, dtype = like.device, like.dtype
    for i, m in enumerate(modules):
        if m is None or not m.noise_active:
            continue
        gen = m.generator(device)
        if isinstance(m, NoiseDropout):
            if m.rate == 0:
                continue
            keep = torch.rand(tuple(shape), generator=gen, device=device, dtype=dtype) >= m.rate
            mult[i] = keep.to(dtype).mul_(1.0 / (1.0 - m.rate))
        else:
            assert isinstance(m, ActivationNoise)
            if m.scale == 0:
                continue
            noise = sample(m.distribution, tuple(shape), scale=m.scale, generator=gen, device=device, dtype=dtype)
            if m.mode == "additive":
                add[i] = noise
            else:
                mult[i] = noise.add_(1.0)
    return _stacked(mult, 1.0, shape, like), _stacked(add, 0.0, shape, like)


def _stacked(
    parts: list[torch.Tensor | None], fill: float, shape: Sequence[int], like: torch.Tensor
) -> torch.Tensor | None:
    if all(p is None for p in parts):
        return None
    neutral = torch.full(tuple(shape), fill, dtype=like.dtype, device=like.device)
    return torch.stack([neutral if p is None else p for p in parts])


def weight_draws(
    modules: Sequence[WeightNoise | None], layers: Sequence[nn.Module]
) -> dict[str, list[torch.Tensor | None]]:
    """Each run's draws for its layer's parameters: ``{name: [run k's draw, or None]}``.

    Drawn as :class:`WeightNoise` draws alone: per parameter, in the module's ``names`` order, one ``sample`` of
    the parameter's shape from the module's generator; recorded in the module's ``last_noise``.
    """
    out: dict[str, list[torch.Tensor | None]] = {}
    for i, (m, layer) in enumerate(zip(modules, layers, strict=True)):
        if m is None:
            continue
        m.last_noise = {}
        if not m.noise_active:
            continue
        for name in m.names:
            p = layer._parameters[name]
            assert p is not None
            gen = m.generator(p.device)
            eps = sample(m.distribution, p.shape, scale=m.scale, generator=gen, device=p.device, dtype=p.dtype)
            m.last_noise[name] = eps
            out.setdefault(name, [None] * len(modules))[i] = eps
    return out


def stack_draws(draws: list[torch.Tensor | None], like: torch.Tensor, *, transpose: bool, flat: bool) -> torch.Tensor:
    """The K runs' draws in the layout of the stacked parameter ``like`` (zeros for a run without a draw).

    ``transpose``: the stack holds each run's matrix transposed (dense weights, ``(K, in, out)``); ``flat``: the
    runs' tensors are concatenated along their first dimension (conv layers, ``(K*out, ...)``).
    """
    shape = next(d for d in draws if d is not None).shape
    zeros = torch.zeros(shape, dtype=like.dtype, device=like.device)
    rows = [zeros if d is None else d for d in draws]
    if transpose:
        rows = [r.t() for r in rows]
    return torch.cat(rows) if flat else torch.stack(rows)
