"""Batched image operations the corruptions share: Gaussian blur, affine warps, drawn lines, resizes,
ImageMagick's motion blur.

All act on (N, C, H, W) tensors, on each example alone, in the input's dtype and device.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

# scipy.ndimage.gaussian_filter's default kernel extent, as used by skimage.filters.gaussian
TRUNCATE = 4.0
# MNIST-C's line profile: value log(1 - d / 2.3) + 1 at vertical distance d, clipped to [0, 1]
LINE_REACH = 2.3


def gaussian_kernel1d(sigma: float, truncate: float = TRUNCATE) -> tuple[float, ...]:
    """scipy's 1-D Gaussian kernel: radius ``int(truncate sigma + 0.5)``, normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return tuple((k / k.sum()).tolist())


def fold_index(index: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Indices outside ``[0, n)`` mapped inside by an edge rule, at any distance from the edge.

    ``"replicate"``: the edge pixel (scipy ``nearest``); ``"reflect"``: half-sample symmetric, ``d c b a | a b c d``
    (scipy ``reflect``, numpy ``symmetric``); ``"mirror"``: whole-sample symmetric, ``d c b | a b c d`` (scipy
    ``mirror``, OpenCV ``BORDER_REFLECT_101``).
    """
    if mode == "replicate" or n == 1:
        return index.clamp(0, n - 1)
    if mode == "reflect":
        m = torch.remainder(index, 2 * n)
        return torch.where(m < n, m, 2 * n - 1 - m)
    if mode == "mirror":
        m = torch.remainder(index, 2 * n - 2)
        return torch.where(m < n, m, 2 * n - 2 - m)
    raise ValueError(f"unknown edge mode {mode!r}")


@functools.lru_cache(maxsize=256)
def _correlation_matrix(n: int, kernel: tuple[float, ...], mode: str) -> torch.Tensor:
    """The (n, n) matrix of a 1-D correlation with an odd ``kernel``, edges folded in by ``mode``
    (``"constant"``: zeros outside; otherwise a :func:`fold_index` rule)."""
    radius = len(kernel) // 2
    out = torch.arange(n).view(n, 1).expand(n, len(kernel))
    src = out + torch.arange(len(kernel)).view(1, -1) - radius
    weights = torch.tensor(kernel, dtype=torch.float64).view(1, -1).expand(n, -1)
    if mode == "constant":
        weights = torch.where((src >= 0) & (src < n), weights, torch.zeros_like(weights))
        src = src.clamp(0, n - 1)
    else:
        src = fold_index(src, n, mode)
    mat = torch.zeros(n, n, dtype=torch.float64)
    mat.index_put_((out.reshape(-1), src.reshape(-1)), weights.reshape(-1), accumulate=True)
    return mat


def correlation_matrix(
    n: int, kernel: tuple[float, ...], *, mode: str, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """:func:`_correlation_matrix` (cached) in ``dtype`` on ``device``."""
    return _correlation_matrix(n, kernel, mode).to(dtype=dtype, device=device)


def separable(x: torch.Tensor, kernel_h: tuple[float, ...], kernel_w: tuple[float, ...], *, mode: str) -> torch.Tensor:
    """Correlate every channel with ``kernel_h`` down the rows and ``kernel_w`` along the columns.

    ``mode`` is ``"constant"`` (zeros) or a :func:`fold_index` rule (``"replicate"`` is scipy's ``nearest``).
    Each pass is one matrix product with the correlation's (size x size) matrix, whose cost does not grow
    with the kernel.
    """
    h, w = x.shape[-2:]
    mh = correlation_matrix(h, kernel_h, mode=mode, dtype=x.dtype, device=x.device)
    mw = correlation_matrix(w, kernel_w, mode=mode, dtype=x.dtype, device=x.device)
    return mh @ x @ mw.T


def gaussian_blur(
    x: torch.Tensor, sigma: float, *, mode: str = "replicate", truncate: float = TRUNCATE
) -> torch.Tensor:
    """``skimage.filters.gaussian`` per channel over both image axes (truncate 4, ``nearest`` edges by default)."""
    if sigma <= 0:
        return x.clone()
    k = gaussian_kernel1d(sigma, truncate)
    return separable(x, k, k, mode=mode)


def affine_warp(x: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """``skimage.transform.warp(x, inverse_map=A)`` with the image centre fixed: bilinear, zeros outside.

    The output pixel at ``p`` (column, row), measured from the centre, reads the input at ``A p + offset``.

    Args:
        x: images (N, C, H, W).
        matrix: per-example 2x2 maps ``A`` (N, 2, 2) in pixel units, acting on (column, row).
        offset: per-example shifts (N, 2) in pixels, (column, row); ``None`` for none.
    """
    n, _, h, w = x.shape
    # align_corners=True puts pixel centres 0 and size-1 at -1 and +1, so pixel units scale by 2/(size-1)
    to_norm = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], dtype=x.dtype, device=x.device)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, :, :2] = to_norm.view(1, 2, 1) * matrix.to(x.dtype) / to_norm.view(1, 1, 2)
    if offset is not None:
        theta[:, :, 2] = offset.to(x.dtype) * to_norm
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def paint_segments(
    c0: torch.Tensor, r0: torch.Tensor, c1: torch.Tensor, r1: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """The sum of MNIST-C ``line_from_points`` maps over segments, per example.

    A segment from (column ``c0``, row ``r0``) to (``c1``, ``r1``) paints ``log(1 - d / 2.3) + 1`` (clipped to
    [0, 1]) at vertical distance ``d`` from it, between columns ``floor(c0)`` and ``ceil(c1)``; a vertical
    segment (``c1 == c0``) paints nothing. The paint is nonzero only within 1.46 pixels of the segment, so
    only four candidate rows per column are evaluated and scattered into the image.

    Args:
        c0, r0, c1, r1: endpoints (N, S): S segments per example.
        size: (H, W).

    Returns:
        Paint (N, H, W), summed over the segments.
    """
    h, w = size
    n, s = c0.shape
    cols = torch.arange(w, dtype=c0.dtype, device=c0.device).view(1, 1, 1, w)
    a0, b0, a1, b1 = (t.reshape(n, s, 1, 1) for t in (c0, r0, c1, r1))
    flat = a1 == a0
    slope = (b1 - b0) / torch.where(flat, torch.ones_like(a0), a1 - a0)
    centre = slope * (cols - a0) + b0
    rows = torch.floor(centre) + torch.arange(-1, 3, dtype=c0.dtype, device=c0.device).view(1, 1, 4, 1)
    dist = (rows - centre).abs().clamp(max=LINE_REACH - 1e-6)
    paint = (torch.log1p(-dist / LINE_REACH) + 1).clamp(0.0, 1.0)
    keep = (cols >= torch.floor(a0)) & (cols < torch.ceil(a1)) & ~flat & (rows >= 0) & (rows < h)
    paint = torch.where(keep, paint, torch.zeros_like(paint))
    index = (rows.clamp(0, h - 1) * w + cols).long().expand(n, s, 4, w)
    out = torch.zeros(n, h * w, dtype=c0.dtype, device=c0.device)
    return out.scatter_add_(1, index.reshape(n, -1), paint.reshape(n, -1)).view(n, h, w)


def box_resize_matrix(n_in: int, n_out: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Area (box) downsampling along one axis as an (n_out, n_in) matrix.

    Output pixel ``i`` covers ``[i, i + 1) n_in / n_out`` in input pixels and averages the input pixels
    weighted by their overlap with it. For integer factors this is PIL's ``Image.BOX``; for fractional ones
    PIL weights whole pixels by their centres, which makes the result depend on sub-pixel phase.
    """
    lo = torch.arange(n_out, dtype=torch.float64).view(-1, 1) * (n_in / n_out)
    hi = lo + n_in / n_out
    left = torch.arange(n_in, dtype=torch.float64).view(1, -1)
    overlap = (torch.minimum(hi, left + 1) - torch.maximum(lo, left)).clamp(min=0)
    return (overlap / overlap.sum(dim=1, keepdim=True)).to(dtype=dtype, device=device)


def nearest_resize_matrix(n_in: int, n_out: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Upsampling along one axis as an (n_out, n_in) matrix: output ``i`` copies input
    ``floor((i + 0.5) n_in / n_out)``, the pixel whose box holds its centre (PIL ``Image.BOX`` upscaling)."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)).floor().long().clamp(max=n_in - 1)
    return torch.nn.functional.one_hot(src, n_in).to(dtype=dtype, device=device)


def rotation(angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (N, 2, 2) for angles (N,) in radians, acting on (column, row)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """One channel: itself for grayscale, ``skimage.color.rgb2gray`` luminance for RGB."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] == 3:
        weights = torch.tensor([0.2125, 0.7154, 0.0721], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    return x.mean(dim=1, keepdim=True)


def signs(u: torch.Tensor) -> torch.Tensor:
    """+1 or -1 from uniforms in (0, 1)."""
    return torch.where(u < 0.5, -torch.ones_like(u), torch.ones_like(u))


def floor_int(u: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """``numpy.random.randint(low, high)`` from uniforms in (0, 1): integers in [low, high), as floats."""
    return torch.floor(u * (high - low)).clamp(max=high - low - 1) + low


def zoom_matrix(n: int, factor: float, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`_zoom_matrix` (cached) in ``dtype`` on ``device``."""
    return _zoom_matrix(n, float(factor)).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=256)
def _zoom_matrix(n: int, factor: float) -> torch.Tensor:
    """ImageNet-C's ``clipped_zoom`` along one axis as an (n, n) float64 matrix.

    The central ``ceil(n / factor)`` pixels (starting at ``(n - ceil(n / factor)) // 2``) are zoomed by
    ``scipy.ndimage.zoom(order=1)``: ``round(crop factor)`` output pixels, output ``o`` reading the crop at
    ``o (crop - 1) / (out - 1)`` by linear interpolation; the central ``n`` of them are kept (the first
    at ``(out - n) // 2``).
    """
    crop = math.ceil(n / factor)
    top = (n - crop) // 2
    size = round(crop * factor)
    trim = (size - n) // 2
    pos = (torch.arange(n, dtype=torch.float64) + trim) * ((crop - 1) / max(size - 1, 1))
    lo = pos.floor().clamp(max=max(crop - 2, 0))
    frac = pos - lo
    mat = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)
    mat.index_put_((rows, (lo.long() + top).clamp(max=n - 1)), 1 - frac, accumulate=True)
    if crop > 1:
        mat.index_put_((rows, lo.long() + top + 1), frac, accumulate=True)
    return mat


def magick_motion_weights(radius: float, sigma: float) -> list[float]:
    """ImageMagick's one-sided motion-blur weights: ``exp(-i^2 / (2 sigma^2))`` for i in 0..2 ceil(radius)."""
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    return (k / k.sum()).tolist()


def magick_motion_blur(x: torch.Tensor, radius: float, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """ImageMagick's ``MotionBlurImage`` along a per-example direction ``angle`` (N,) in radians.

    Tap ``i`` reads the pixel ``(ceil(i cos a - 0.5), ceil(i sin a - 0.5))`` (column, row) away, weighted by
    :func:`magick_motion_weights`; outside the image the edge pixel repeats (ImageMagick's default virtual
    pixels). Each tap is one gather at per-example row and column indices, clamped to the image.
    """
    n, c, h, w = x.shape
    weights = magick_motion_weights(radius, sigma)
    angle = angle.to(device=x.device, dtype=torch.float64)
    taps = torch.arange(len(weights), dtype=angle.dtype, device=x.device).view(1, -1, 1)
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


def luma601(x: torch.Tensor) -> torch.Tensor:
    """One channel: itself for grayscale, ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` for RGB (OpenCV's
    ``RGB2GRAY``, as imagecorruptions uses it), the channel mean otherwise."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    return x.mean(dim=1, keepdim=True)
