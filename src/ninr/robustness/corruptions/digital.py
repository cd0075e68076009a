"""Digital corruptions: brightness, contrast, inverse, stripe, JPEG compression and saturate (deterministic)."""

from __future__ import annotations

import functools
import math

import torch

from ninr.robustness.corruptions._ops import fold_index
from ninr.robustness.corruptions.base import State, register

# The JPEG standard's example quantisation tables (ITU-T T.81, Annex K, tables K.1 and K.2), which libjpeg
# (and so PIL) scales by the quality setting.
JPEG_LUMINANCE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
JPEG_CHROMINANCE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
JPEG_BLOCK = 8


@register("brightness", "digital")
def brightness(x: torch.Tensor, amount: float, state: State) -> torch.Tensor:
    """Raise the HSV value by ``amount`` (clipped at 1), keeping hue and saturation.

    For grayscale this is ``clip(x + amount)``, MNIST-C's gray -> HSV -> gray round trip; for RGB the
    value channel is the per-pixel max, and scaling the pixel by V'/V keeps hue and saturation.
    """
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + amount).clamp(max=1.0)
    scaled = x * (new_value / value.clamp(min=torch.finfo(x.dtype).tiny))
    return torch.where(value > 0, scaled, new_value.expand_as(x))


@register("contrast", "digital")
def contrast(x: torch.Tensor, factor: float, state: State) -> torch.Tensor:
    """Scale every pixel's distance from the image's mean (per channel) by ``factor``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


@register("inverse", "digital")
def inverse(x: torch.Tensor, weight: float, state: State) -> torch.Tensor:
    """Blend towards the negative image: ``x + weight (1 - 2x)`` (weight 1 is ``1 - x``)."""
    return x + weight * (1.0 - 2.0 * x)


@register("stripe", "digital")
def stripe(x: torch.Tensor, fraction: float, state: State) -> torch.Tensor:
    """Invert a band of ``round(fraction W)`` columns at the left and at the right edge."""
    w = x.shape[-1]
    band = round(fraction * w)
    cols = torch.arange(w, device=x.device)
    flip = (cols < band) | (cols >= w - band)
    return torch.where(flip, 1.0 - x, x)


def jpeg_table(base: tuple[tuple[int, ...], ...], quality: int) -> torch.Tensor:
    """libjpeg's quantisation table at ``quality`` (1..100): entries ``(t s + 50) // 100`` clipped to 1..255,
    with ``s = 5000 // quality`` below 50 and ``200 - 2 quality`` from 50 (``jpeg_set_quality``, baseline)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return torch.tensor(base, dtype=torch.float64).mul(scale).add(50).div(100).floor().clamp(1, 255)


@functools.lru_cache(maxsize=1)
def dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II (rows are frequencies): JPEG's forward transform is ``D B D^T``."""
    k = torch.arange(JPEG_BLOCK, dtype=torch.float64).view(-1, 1)
    i = torch.arange(JPEG_BLOCK, dtype=torch.float64).view(1, -1)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * JPEG_BLOCK)) * math.sqrt(2 / JPEG_BLOCK)
    d[0] /= math.sqrt(2)
    return d


def _round_half_away(v: torch.Tensor) -> torch.Tensor:
    return torch.sign(v) * torch.floor(v.abs() + 0.5)


def jpeg_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Encode and decode planes (M, H, W) of 0..255 samples through 8x8 blocks quantised by ``table``.

    The plane is padded to a multiple of 8 by repeating its last row and column (libjpeg's edge
    expansion), shifted by -128, transformed by the 2-D DCT, each coefficient divided by its table entry
    and rounded (half away from zero, libjpeg's rule), multiplied back, inverse-transformed, shifted by
    +128 and cropped. The result is not yet rounded to integers.
    """
    m, h, w = plane.shape
    hp, wp = -(-h // JPEG_BLOCK) * JPEG_BLOCK, -(-w // JPEG_BLOCK) * JPEG_BLOCK
    rows = fold_index(torch.arange(hp, device=plane.device), h, "replicate")
    cols = fold_index(torch.arange(wp, device=plane.device), w, "replicate")
    padded = plane[:, rows][:, :, cols] - 128.0
    blocks = padded.view(m, hp // JPEG_BLOCK, JPEG_BLOCK, wp // JPEG_BLOCK, JPEG_BLOCK).transpose(2, 3)
    d = dct_matrix().to(dtype=plane.dtype, device=plane.device)
    q = table.to(dtype=plane.dtype, device=plane.device)
    coef = _round_half_away((d @ blocks @ d.T) / q) * q
    out = (d.T @ coef @ d).transpose(2, 3).reshape(m, hp, wp) + 128.0
    return out[:, :h, :w]


def _samples(v: torch.Tensor) -> torch.Tensor:
    """Round to integer samples in 0..255 (libjpeg's range limit)."""
    return torch.round(v).clamp(0.0, 255.0)


def _fancy_upsample(c: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """libjpeg's 'fancy' 2x upsampling along ``dim``: output ``2i`` is ``3/4 c[i] + 1/4 c[i - 1]``, output
    ``2i + 1`` is ``3/4 c[i] + 1/4 c[i + 1]`` (edges repeated), cropped to ``n``."""
    m = c.shape[dim]
    idx = torch.arange(m, device=c.device)
    prev = c.index_select(dim, (idx - 1).clamp(min=0))
    nxt = c.index_select(dim, (idx + 1).clamp(max=m - 1))
    even, odd = 0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt
    return torch.stack([even, odd], dim=dim + 1).flatten(dim, dim + 1).narrow(dim, 0, n)


def _jpeg_rgb(rgb: torch.Tensor, quality: int) -> torch.Tensor:
    """JFIF colour JPEG of (N, 3, H, W) 0..255 samples: YCbCr, chroma 4:2:0, luminance and chrominance tables."""
    n, _, h, w = rgb.shape
    r, g, b = rgb.unbind(1)
    y = _samples(0.299 * r + 0.587 * g + 0.114 * b)
    cb = _samples(-0.168736 * r - 0.331264 * g + 0.5 * b + 128.0)
    cr = _samples(0.5 * r - 0.418688 * g - 0.081312 * b + 128.0)
    y = _samples(jpeg_plane(y, jpeg_table(JPEG_LUMINANCE, quality)))
    # libjpeg (jcprepct.c, jcsample.c) repeats the last column out to whole 16-pixel units and the last row
    # to an even count, averages 2x2 blocks with a rounding bias of 1 and 2 in alternate columns
    # (h2v2_downsample), then repeats the last chroma row out to whole blocks
    hh, wh = -(-h // 2), -(-w // 2)  # the chroma planes' own size; the decoder upsamples these pixels only
    wp = -(-w // (2 * JPEG_BLOCK)) * 2 * JPEG_BLOCK
    rows = fold_index(torch.arange(2 * hh, device=rgb.device), h, "replicate")
    cols = fold_index(torch.arange(wp, device=rgb.device), w, "replicate")
    chroma = torch.stack([cb, cr], dim=1)[:, :, rows][:, :, :, cols]
    bias = 1.0 + (torch.arange(wp // 2, device=rgb.device) % 2).to(rgb.dtype)
    chroma = torch.floor((chroma.view(n, 2, hh, 2, wp // 2, 2).sum(dim=(3, 5)) + bias) / 4)
    chroma = _samples(jpeg_plane(chroma.reshape(2 * n, hh, wp // 2), jpeg_table(JPEG_CHROMINANCE, quality)))
    chroma = chroma.view(n, 2, hh, wp // 2)[:, :, :, :wh]
    chroma = _fancy_upsample(_fancy_upsample(chroma, h, 2), w, 3)
    cb, cr = chroma[:, 0] - 128.0, chroma[:, 1] - 128.0
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)


@register("jpeg-compression", "digital")
def jpeg_compression(x: torch.Tensor, quality: int, state: State) -> torch.Tensor:
    """JPEG-compress and decompress at a quality level (baseline libjpeg, as PIL saves it).

    The image is cut to 8-bit samples first. Grayscale (and any channel count but 3): each channel is a
    grayscale JPEG with the luminance table. RGB: JFIF YCbCr, chroma subsampled 2x2 and coded with the
    chrominance table, decoded with libjpeg's triangular ('fancy') chroma upsampling. The transforms are
    exact floating-point DCTs (libjpeg uses integer approximations: a sample may differ by one level).
    """
    n, c, h, w = x.shape
    samples = _samples(x.to(torch.float64) * 255.0)  # float64: the roundings must not depend on the image's dtype
    if c == 3:
        out = _jpeg_rgb(samples, int(quality))
    else:
        out = jpeg_plane(samples.reshape(n * c, h, w), jpeg_table(JPEG_LUMINANCE, int(quality))).view(n, c, h, w)
    return (_samples(out) / 255.0).to(x.dtype)


@register("saturate", "digital", rgb_only=True)
def saturate(x: torch.Tensor, level: tuple[float, float], state: State) -> torch.Tensor:
    """Scale the HSV saturation: ``s -> clip(a s + b)``, hue and value kept (ImageNet-C saturate; RGB only).

    With value ``V = max`` and ``S = (V - min) / V``, a channel sits at the fraction ``(V - c) / (V - min)``
    of the way from ``V`` down to ``min``; the new channel is ``V - V S' (V - c) / (V - min)``. A gray pixel
    has hue 0 (red), as in ``skimage.color.rgb2hsv``: an offset ``b > 0`` turns it to ``(V, V (1 - b), V (1 - b))``.
    """
    factor, offset = level
    value = x.amax(dim=1, keepdim=True)
    spread = value - x.amin(dim=1, keepdim=True)
    tiny = torch.finfo(x.dtype).tiny
    sat = torch.where(value > 0, spread / value.clamp(min=tiny), torch.zeros_like(value))
    new_sat = (sat * factor + offset).clamp(0.0, 1.0)
    red = torch.tensor([0.0, 1.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    share = torch.where(spread > 0, (value - x) / spread.clamp(min=tiny), red.expand_as(x))
    return value - value * new_sat * share
