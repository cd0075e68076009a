"""Blurs: Gaussian, glass, defocus, motion and zoom blur, and pixelate, as convolutions, gathers and matrices."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ninr.robustness._random import bits, uniform
from ninr.robustness.corruptions._ops import (
    box_resize_matrix,
    correlation_matrix,
    fold_index,
    gaussian_blur,
    magick_motion_blur,
    nearest_resize_matrix,
    zoom_matrix,
)
from ninr.robustness.corruptions.base import State, register

GLASS_MAX_ITERATIONS = 3  # the most iterations in the glass-blur table
GLASS_BLOCK = 512  # swap positions whose partner indices are computed at once (bounds the memory on large images)
MOTION_MAX_ANGLE_DEG = 45.0  # MNIST-C draws the motion direction from U(-45, 45) degrees
DISK_MIN_HALF_WIDTH = 8  # ImageNet-C's disk(): the kernel spans at least -8..8 pixels
DISK_SMALL_RADIUS = 8  # up to this radius the anti-aliasing blur is 3x3, beyond it 5x5
DEFOCUS_MATRIX_MAX_PIXELS = 1024  # up to 32 x 32 defocus is one (HW x HW) matrix product; larger images: conv2d


@register("gaussian-blur", "blur")
def gaussian_blur_corruption(x: torch.Tensor, sigma: float, state: State) -> torch.Tensor:
    """Gaussian blur of the given sigma in pixels (skimage.filters.gaussian, nearest edges)."""
    return gaussian_blur(x, sigma)


def _glass_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    return {"bits": bits(keys, (GLASS_MAX_ITERATIONS, *x.shape[-2:]), 0)}


@register("glass-blur", "blur", prepare=_glass_state, random=True)
def glass_blur(x: torch.Tensor, level: tuple[float, int, int], state: State) -> torch.Tensor:
    """Blur, locally scramble pixels by swaps, blur again (ImageNet-C / MNIST-C glass blur).

    The reference's swaps, in its order: ``iterations`` times, for rows ``h`` from ``H - delta`` down to
    ``delta + 1`` and, in each, columns ``w`` from ``W - delta`` down to ``delta + 1``, with probability 1/2
    the pixel at (h, w) trades places with the one at ``(h + dy, w + dx)``, offsets in [-delta, delta).
    A swap may move a pixel that an earlier swap moved, so the swaps run one after another; each is one
    gather and one scatter over the whole batch (a Python loop over positions, never over examples).
    """
    sigma, delta, iterations = level
    n, c, h, w = x.shape
    out = gaussian_blur(x, sigma)
    rows = torch.arange(h - delta, delta, -1, device=x.device)
    cols = torch.arange(w - delta, delta, -1, device=x.device)
    if not (len(rows) and len(cols) and iterations):
        return gaussian_blur(out, sigma)
    pos = (rows.view(-1, 1) * w + cols.view(1, -1)).reshape(-1)  # the reference's visiting order
    bits_flat = state["bits"].reshape(n, GLASS_MAX_ITERATIONS, h * w)
    # Pixel-major layout (H W, N C): the pixel at ``p`` of every image is one contiguous row, and the partner
    # of image ``i`` is element ``partner * N C + column`` of the flat buffer.
    columns = torch.arange(n * c, device=x.device)
    flat = out.permute(2, 3, 0, 1).reshape(h * w, n * c).contiguous()
    buffer = flat.view(-1)
    for it in range(int(iterations)):
        for start in range(0, len(pos), GLASS_BLOCK):
            block = pos[start : start + GLASS_BLOCK]
            b = bits_flat[:, it, block]  # (N, positions)
            # bit 0: swap or not; 15-bit fractions a, d -> floor(a * 2 delta / 2^15) - delta, in [-delta, delta)
            dy = (((b >> 1) & 0x7FFF) * (2 * delta) >> 15) - delta
            dx = (((b >> 16) & 0x7FFF) * (2 * delta) >> 15) - delta
            partner = torch.where((b & 1) == 1, block + dy * w + dx, block)  # inside the image by the ranges
            linear = (partner.repeat_interleave(c, dim=0) * (n * c) + columns.view(-1, 1)).T.contiguous()
            for k, p in enumerate(block.tolist()):
                here = flat[p].clone()
                index = linear[k]
                flat[p] = buffer[index]
                buffer[index] = here
    return gaussian_blur(flat.view(h, w, n, c).permute(2, 3, 0, 1), sigma)


@functools.lru_cache(maxsize=16)
def disk_kernel(radius: int, alias_blur: float) -> torch.Tensor:
    """ImageNet-C's defocus kernel (``disk``), float64 (K, K).

    The indicator of ``x^2 + y^2 <= radius^2`` on the grid -L..L (L = max(8, radius)), normalised to sum 1,
    then smoothed by OpenCV's ``GaussianBlur`` (3x3 up to radius 8, 5x5 beyond; sigma ``alias_blur``;
    ``BORDER_REFLECT_101`` edges).
    """
    half = max(DISK_MIN_HALF_WIDTH, int(radius))
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((grid.view(-1, 1) ** 2 + grid.view(1, -1) ** 2) <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    ksize = 3 if radius <= DISK_SMALL_RADIUS else 5
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    g = torch.exp(-(t**2) / (2 * alias_blur**2))  # cv2.getGaussianKernel for sigma > 0
    taps = tuple((g / g.sum()).tolist())
    m = correlation_matrix(len(grid), taps, mode="mirror", dtype=torch.float64, device=torch.device("cpu"))
    return m @ disk @ m.T


@functools.lru_cache(maxsize=32)
def defocus_matrix(h: int, w: int, radius: int, alias_blur: float) -> torch.Tensor:
    """The defocus blur of an ``h`` x ``w`` image as one (HW, HW) float64 matrix, reflect-101 edges folded in."""
    kernel = disk_kernel(radius, alias_blur)
    k = kernel.shape[0]
    r = k // 2
    out_r, out_c = torch.arange(h).view(h, 1, 1, 1), torch.arange(w).view(1, w, 1, 1)
    src_r = fold_index(out_r + torch.arange(k).view(1, 1, k, 1) - r, h, "mirror")
    src_c = fold_index(out_c + torch.arange(k).view(1, 1, 1, k) - r, w, "mirror")
    rows = (out_r * w + out_c).expand(h, w, k, k)
    cols = (src_r * w + src_c).expand(h, w, k, k)
    mat = torch.zeros(h * w, h * w, dtype=torch.float64)
    mat.index_put_((rows.reshape(-1), cols.reshape(-1)), kernel.expand(h, w, k, k).reshape(-1), accumulate=True)
    return mat


@register("defocus-blur", "blur")
def defocus_blur(x: torch.Tensor, level: tuple[int, float], state: State) -> torch.Tensor:
    """Convolve with an anti-aliased disk (ImageNet-C defocus blur; OpenCV ``filter2D``, reflect-101 edges).

    Small images (up to 32 x 32) take one matrix product with :func:`defocus_matrix`; larger ones a
    ``conv2d`` over the reflect-101-padded image.
    """
    radius, alias_blur = int(level[0]), float(level[1])
    n, c, h, w = x.shape
    if h * w <= DEFOCUS_MATRIX_MAX_PIXELS:
        mat = defocus_matrix(h, w, radius, alias_blur).to(dtype=x.dtype, device=x.device)
        return (x.reshape(n * c, h * w) @ mat.T).view(n, c, h, w)
    kernel = disk_kernel(radius, alias_blur).to(dtype=x.dtype, device=x.device)
    r = kernel.shape[0] // 2
    rows = fold_index(torch.arange(-r, h + r, device=x.device), h, "mirror")
    cols = fold_index(torch.arange(-r, w + r, device=x.device), w, "mirror")
    padded = x[:, :, rows][:, :, :, cols].reshape(n * c, 1, h + 2 * r, w + 2 * r)
    return F.conv2d(padded, kernel.view(1, 1, *kernel.shape)).view(n, c, h, w)


def _motion_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    u = uniform(keys, (1,), 0, dtype=torch.float64)[:, 0]
    return {"angle": torch.deg2rad((2 * u - 1) * MOTION_MAX_ANGLE_DEG)}


@register("motion-blur", "blur", prepare=_motion_state, random=True)
def motion_blur(x: torch.Tensor, level: tuple[float, float], state: State) -> torch.Tensor:
    """Motion blur along a random direction (ImageMagick MotionBlurImage, as MNIST-C calls it).

    Tap ``i`` reads the pixel ``(round(i cos a), round(i sin a))`` away; outside the image the edge pixel
    repeats (ImageMagick's default virtual pixels). Each tap is one gather at per-example row and column
    indices, clamped to the image.
    """
    radius, sigma = level
    return magick_motion_blur(x, radius, sigma, state["angle"])


@register("zoom-blur", "blur")
def zoom_blur(x: torch.Tensor, factors: tuple[float, ...], state: State) -> torch.Tensor:
    """Average the image with copies zoomed in about its centre (ImageNet-C zoom blur).

    Each zoom is ImageNet-C's ``clipped_zoom``: the central ``ceil(size / factor)`` pixels, zoomed by
    ``scipy.ndimage.zoom(order=1)``, centre-cropped back; per axis one (size x size) matrix.
    """
    _, _, h, w = x.shape
    out = x.clone()
    for factor in factors:
        mh = zoom_matrix(h, factor, dtype=x.dtype, device=x.device)
        mw = zoom_matrix(w, factor, dtype=x.dtype, device=x.device)
        out.add_(mh @ x @ mw.T)
    return out / (len(factors) + 1)


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
