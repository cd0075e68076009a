"""Geometric corruptions: shear, rotate, scale and translate about the image centre (MNIST-C), and the
elastic transform (imagecorruptions).

The affine ones are ``skimage.transform.warp`` with an inverse affine map, as in the reference: one
``affine_grid`` / ``grid_sample`` call per batch, bilinear, zeros outside the image.
"""

from __future__ import annotations

import torch

from ninr.robustness._random import uniform
from ninr.robustness.corruptions._ops import affine_warp, fold_index, gaussian_kernel1d, rotation, separable, signs
from ninr.robustness.corruptions.base import State, register

ELASTIC_SIGMA = 0.01  # imagecorruptions: the displacement field's smoothing sigma per axis, times that axis' size
ELASTIC_MAX = 0.005  # imagecorruptions: the raw field is uniform on +-(this x the image height)
ELASTIC_TRUNCATE = 3.0  # imagecorruptions smooths with truncate=3


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


def _elastic_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    """The smoothed displacement fields (N, 2, H, W) before the factor alpha (columns, then rows)."""
    assert keys is not None
    _, _, h, w = x.shape
    field = (2.0 * uniform(keys, (2, h, w), 0, dtype=x.dtype) - 1.0) * (ELASTIC_MAX * h)
    k_h = gaussian_kernel1d(ELASTIC_SIGMA * h, ELASTIC_TRUNCATE)
    k_w = gaussian_kernel1d(ELASTIC_SIGMA * w, ELASTIC_TRUNCATE)
    return {"field": separable(field, k_h, k_w, mode="reflect")}


def reflect_sample(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``x`` (N, C, H, W) at per-example positions ``rows``, ``cols`` (N, H, W), outside
    the image from its half-sample-symmetric extension (``scipy.ndimage.map_coordinates(order=1,
    mode="reflect")``)."""
    n, c, h, w = x.shape
    r0, c0 = torch.floor(rows), torch.floor(cols)
    fr, fc = (rows - r0).unsqueeze(1), (cols - c0).unsqueeze(1)
    top, bottom = (fold_index(r0.long() + d, h, "reflect") * w for d in (0, 1))
    left, right = (fold_index(c0.long() + d, w, "reflect") for d in (0, 1))
    flat = x.reshape(n, c, h * w)

    def at(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        index = (row + col).view(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, index).view(n, c, h, w)

    upper = at(top, left) * (1 - fc) + at(top, right) * fc
    lower = at(bottom, left) * (1 - fc) + at(bottom, right) * fc
    return upper * (1 - fr) + lower * fr


@register("elastic-transform", "geometric", prepare=_elastic_state, random=True)
def elastic_transform(x: torch.Tensor, alpha: float, state: State) -> torch.Tensor:
    """Resample along a smooth random displacement field (imagecorruptions' elastic transform).

    Per example two fields uniform on ``+-0.005 H``, each smoothed by a Gaussian of sigma ``0.01 H`` down the
    rows and ``0.01 W`` along the columns (truncate 3, reflected edges) and multiplied by ``alpha``, displace
    the columns and the rows; the image is read there bilinearly, reflected outside. All channels share
    the field. The rule scales with the image: on 28 x 28 the smoothing sigma is 0.28 pixels, so the field
    is close to independent per pixel.
    """
    _, _, h, w = x.shape
    field = state["field"] * alpha
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1) + field[:, 1]
    cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w) + field[:, 0]
    return reflect_sample(x, rows, cols)
