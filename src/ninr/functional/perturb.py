"""Pure perturbation ops: input and activation noise, corrupted batches, dropout, weight and gradient noise.

Every op takes a keyword-only ``generator=`` and never changes its input tensors, except
:func:`add_gradient_noise`, which, like ``torch.nn.utils.clip_grad_norm_``, works on ``.grad`` in
place. ``scale`` is always a standard deviation (see :mod:`ninr.functional.noise`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from ninr.errors import check_nonneg, check_probability, fail
from ninr.functional.noise import sample
from ninr.functional.schedules import NEELAKANTAN_GAMMA

NOISE_MODES = ("additive", "multiplicative")

NEELAKANTAN_ETA = 0.01
"""eta of Neelakantan et al. (2015): they pick eta from {0.01, 0.3, 1.0}; 0.01 is the mildest."""


def add_noise(
    x: torch.Tensor,
    *,
    scale: float,
    distribution: str = "gaussian",
    mode: str = "additive",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x + scale * eps`` (additive) or ``x * (1 + scale * eps)`` (multiplicative), ``eps`` unit-std.

    Multiplicative Gaussian noise of std ``sqrt(p / (1 - p))`` is Gaussian dropout of rate ``p``
    (Srivastava et al. 2014, section 10).

    Shape:
        x: any shape; returns the same shape, dtype and device.
    """
    if mode not in NOISE_MODES:
        raise fail("mode", f"one of {list(NOISE_MODES)}", mode)
    if scale == 0:
        return x
    noise = sample(distribution, x.shape, scale=scale, generator=generator, device=x.device, dtype=x.dtype)
    return x + noise if mode == "additive" else x * noise.add_(1.0)


def corrupt_batch(
    x: torch.Tensor,
    *,
    strength: float,
    fraction: float = 1.0,
    clip: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training on corrupted data: Gaussian noise of std ``strength`` on a ``fraction`` of the batch.

    ``round(fraction * B)`` examples, chosen uniformly without replacement, get i.i.d. Gaussian
    noise; the result is clipped to ``clip`` (the pixel range by default; ``None``: no clipping).
    Clipping keeps corrupted images valid images, as the corruptions at test time do; it also
    shrinks the noise near 0 and 1, so the realised std is below ``strength`` there.

    Shape:
        x: (B, ...); returns the same shape.
    """
    check_nonneg("strength", strength)
    check_probability("fraction", fraction, closed_right=True)
    k = round(fraction * x.shape[0])
    if strength == 0 or k == 0:
        return x
    noise = sample("gaussian", x.shape, scale=strength, generator=generator, device=x.device, dtype=x.dtype)
    if k < x.shape[0]:
        keep = torch.randperm(x.shape[0], generator=generator, device=x.device)[k:]
        noise[keep] = 0.0
    out = x + noise
    return out.clamp_(*clip) if clip is not None else out


def dropout(x: torch.Tensor, *, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout: zero each element with probability ``rate``, scale the rest by 1 / (1 - rate).

    The same op as ``torch.nn.functional.dropout(x, rate, training=True)``, drawn from ``generator``.
    """
    check_probability("rate", rate)
    if rate == 0:
        return x
    # rand >= rate is Bernoulli(1 - rate), drawn about 3x faster on CPU than Tensor.bernoulli_.
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= rate
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - rate))


def perturb_tensors(
    tensors: Mapping[str, torch.Tensor],
    *,
    scale: float,
    distribution: str = "gaussian",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``{name: t + noise}`` with fresh i.i.d. noise of std ``scale`` per tensor, in ``tensors``' order.

    The inputs are untouched; the outputs stay in the autograd graph of the inputs, so a loss
    computed with them has gradients at the perturbed point that flow to the originals.
    """
    out = {}
    for name, t in tensors.items():
        noise = sample(distribution, t.shape, scale=scale, generator=generator, device=t.device, dtype=t.dtype)
        out[name] = t + noise
    return out


def gradient_noise_std(step: int, eta: float = NEELAKANTAN_ETA, gamma: float = NEELAKANTAN_GAMMA) -> float:
    """The std of gradient noise at ``step``: sqrt(eta / (1 + step)^gamma) (Neelakantan et al. 2015)."""
    return math.sqrt(eta / (1.0 + step) ** gamma)


def add_gradient_noise(
    params: Iterable[torch.Tensor],
    step: int,
    eta: float = NEELAKANTAN_ETA,
    gamma: float = NEELAKANTAN_GAMMA,
    *,
    generator: torch.Generator | None = None,
) -> float:
    """Add N(0, eta / (1 + step)^gamma) noise to every existing ``.grad`` in place; returns the std.

    Parameters without a gradient are skipped. Call it between ``backward()`` and
    ``optimizer.step()``; after any gradient clipping if the noise should not be clipped.
    """
    check_nonneg("eta", eta)
    check_nonneg("gamma", gamma)
    if step < 0:
        raise fail("step", "an integer >= 0", step)
    std = gradient_noise_std(step, eta, gamma)
    if std == 0:
        return std
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                g = p.grad
                g.add_(sample("gaussian", g.shape, scale=std, generator=generator, device=g.device, dtype=g.dtype))
    return std
