"""Geometric corruptions (MNIST-C): shear, rotate, scale and translate about the image centre.

Each is ``skimage.transform.warp`` with an inverse affine map, as in the reference: one
``affine_grid`` / ``grid_sample`` call per batch, bilinear, zeros outside the image.
"""

from __future__ import annotations

import torch

from ninr.robustness._random import uniform
from ninr.robustness.corruptions._ops import affine_warp, rotation, signs
from ninr.robustness.corruptions.base import State, register


def _sign_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    return {"sign": signs(uniform(keys, (2,), 0, dtype=x.dtype))}


@register("shear", "geometric", prepare=_sign_state, random=True)
def shear(x: torch.Tensor, angle: float, state: State) -> torch.Tensor:
    """Shear by an angle (radians) of random sign.

    The map is ``[[1, -sin a], [0, cos a]]``: ``skimage.transform.AffineTransform(shear=a)`` as MNIST-C ran
    it (scikit-image before 0.19; later versions define shear as ``[[1, -tan a], [0, 1]]``).
    """
    a = angle * state["sign"][:, 0]
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    matrix = torch.stack([torch.stack([one, -torch.sin(a)], -1), torch.stack([zero, torch.cos(a)], -1)], -2)
    return affine_warp(x, matrix)


@register("rotate", "geometric", prepare=_sign_state, random=True)
def rotate(x: torch.Tensor, angle: float, state: State) -> torch.Tensor:
    """Rotation by an angle (radians) of random sign."""
    return affine_warp(x, rotation(angle * state["sign"][:, 0]))


@register("scale", "geometric")
def scale(x: torch.Tensor, factor: float, state: State) -> torch.Tensor:
    """Zoom out: the output at ``p`` reads the input at ``factor p`` (the image shrinks by ``1/factor``)."""
    matrix = torch.eye(2, dtype=x.dtype, device=x.device).expand(len(x), 2, 2) * factor
    return affine_warp(x, matrix)


@register("translate", "geometric", prepare=_sign_state, random=True)
def translate(x: torch.Tensor, shift: float, state: State) -> torch.Tensor:
    """Shift by ``shift`` pixels along each axis, with random signs."""
    matrix = torch.eye(2, dtype=x.dtype, device=x.device).expand(len(x), 2, 2)
    return affine_warp(x, matrix, shift * state["sign"])
