"""Weather corruptions: fog (plasma fractal), spatter (MNIST-C), snow and frost (ImageNet-C / imagecorruptions)."""

from __future__ import annotations

import math

import torch

from ninr.robustness._random import normal, uniform
from ninr.robustness.corruptions._ops import (
    gaussian_blur,
    gaussian_kernel1d,
    luma601,
    magick_motion_blur,
    zoom_matrix,
)
from ninr.robustness.corruptions.base import State, register

PLASMA_WIBBLE = 100.0  # MNIST-C's plasma_fractal starting wibble
FOG_MAP_SIZE = 256  # MNIST-C's plasma_fractal map size (its default), cropped to the image's top-left corner
FOG_COARSE_STEP = 8  # the map's points of this step are built on a torus; finer ones only around the crop
FOG_FINE_LEVELS = 3  # log2(FOG_COARSE_STEP): the levels refined around the crop
FOG_WINDOW_STREAM = 100  # random streams of the refined levels start here (the torus levels use 0..)
MUD_COLOUR = 63.0 / 255.0  # MNIST-C spatter's mud colour
SNOW_ANGLE_DEG = (-135.0, -45.0)  # ImageNet-C draws the snow's motion-blur direction from U(-135, -45) degrees

# The reference's frost photographs (MNIST-C and imagecorruptions draw one of frost1..frost5 and crop it):
# per photograph, over 5,000 random 28x28 crops of its gray version, the mean and standard deviation of
# the crop's mean, and the root-mean-square standard deviation inside a crop. Photographs 2 and 3 are the
# same picture. Measured by ``benchmarks/corruption_reference.py --frost-dir`` (crops drawn with seed 1).
FROST_PHOTOS = (
    (0.507, 0.055, 0.044),
    (0.802, 0.057, 0.059),
    (0.803, 0.058, 0.059),
    (0.593, 0.068, 0.085),
    (0.469, 0.107, 0.126),
)
# Texture inside a crop: a fine and a coarse Gaussian-smoothed white noise, mixed so that the correlation
# between pixels 1, 2, 4 and 8 apart inside a 28x28 crop (0.63, 0.29, 0.15, 0.01) is near the photographs'
# (0.63, 0.32, 0.18, 0.05, the mean over the five, same crops).
FROST_FINE_SIGMA = 0.65
FROST_COARSE_SIGMA = 3.0
FROST_COARSE_WEIGHT = 0.25  # share of the texture's variance in the coarse part


def _fog_geometry(h: int, w: int) -> tuple[int, int, int]:
    """(points per side of the coarse torus, window points along rows, along columns).

    The map is ``FOG_MAP_SIZE`` wide, or the next power of two above the image plus a 16-pixel margin for
    larger images. The window covers map coordinates -8 .. 8 ceil((size + 7) / 8) at step 8.
    """
    size = FOG_MAP_SIZE
    while size < max(h, w) + 2 * FOG_COARSE_STEP:
        size *= 2
    return size // FOG_COARSE_STEP, math.ceil((h + 7) / FOG_COARSE_STEP) + 2, math.ceil((w + 7) / FOG_COARSE_STEP) + 2


def _fog_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    torus, rows, cols = _fog_geometry(*x.shape[-2:])
    state: State = {}
    level, m = 0, 1
    while m < torus:
        for part in range(3):  # squares, then the two diamond sets
            state[f"u{level}.{part}"] = uniform(keys, (m, m), 3 * level + part, dtype=x.dtype)
        level, m = level + 1, m * 2
    for fine in range(FOG_FINE_LEVELS):
        shapes = ((rows - 1, cols - 1), (rows, cols - 1), (rows - 1, cols))
        for part, shape in enumerate(shapes):
            state[f"w{fine}.{part}"] = uniform(keys, shape, FOG_WINDOW_STREAM + 3 * fine + part, dtype=x.dtype)
        rows, cols = 2 * rows - 1, 2 * cols - 1
    return state


def plasma(state: State, decay: float, size: int) -> torch.Tensor:
    """Diamond-square plasma fractal (MNIST-C ``plasma_fractal``) on a ``size`` x ``size`` torus, unnormalised.

    Per level the new points are the mean of their four neighbours plus ``wibble^2 U(-1, 1)``, and
    ``wibble`` (100 at first) is divided by ``decay``; point (0, 0) stays 0. The points of step 8 of
    MNIST-C's 256 x 256 map are this torus with ``size`` 32.
    """
    first = state["u0.0"]
    n, dtype, device = first.shape[0], first.dtype, first.device
    grid = torch.zeros(n, size, size, dtype=dtype, device=device)
    step, wibble, level = size, PLASMA_WIBBLE, 0
    while step >= 2:
        half = step // 2
        amp = wibble * wibble

        def noise(part: int, amp: float = amp, level: int = level) -> torch.Tensor:
            return amp * (2.0 * state[f"u{level}.{part}"] - 1.0)

        corner = grid[:, 0::step, 0::step]
        square = corner + torch.roll(corner, -1, dims=1)
        square = square + torch.roll(square, -1, dims=2)
        grid[:, half::step, half::step] = square / 4 + noise(0)
        centre = grid[:, half::step, half::step]
        corner = grid[:, 0::step, 0::step]
        left = centre + torch.roll(centre, 1, dims=1) + corner + torch.roll(corner, -1, dims=2)
        grid[:, 0::step, half::step] = left / 4 + noise(1)
        top = centre + torch.roll(centre, 1, dims=2) + corner + torch.roll(corner, -1, dims=1)
        grid[:, half::step, 0::step] = top / 4 + noise(2)
        step, wibble, level = half, wibble / decay, level + 1
    return grid


def refine(grid: torch.Tensor, state: State, fine: int, wibble: float) -> torch.Tensor:
    """One diamond-square level on a window of the map (N, r, c) -> (N, 2r - 1, 2c - 1).

    The same rule as :func:`plasma`, without wrapping: a point on the window's edge lacks a neighbour,
    and its value (and, at the next levels, its neighbours') is wrong, one step of the new grid further
    in per level. Three levels from step 8 spoil the outer 7 pixels; the window's margin is 8.
    """
    n, r, c = grid.shape
    amp = wibble * wibble

    def noise(part: int) -> torch.Tensor:
        return amp * (2.0 * state[f"w{fine}.{part}"] - 1.0)

    out = grid.new_zeros(n, 2 * r - 1, 2 * c - 1)
    out[:, 0::2, 0::2] = grid
    centre = (grid[:, :-1, :-1] + grid[:, 1:, :-1] + grid[:, :-1, 1:] + grid[:, 1:, 1:]) / 4 + noise(0)
    out[:, 1::2, 1::2] = centre
    above = torch.cat([centre[:, :1], centre, centre[:, -1:]], dim=1)  # row i: the centre row above, i - 1/2
    out[:, 0::2, 1::2] = (above[:, :-1] + above[:, 1:] + grid[:, :, :-1] + grid[:, :, 1:]) / 4 + noise(1)
    beside = torch.cat([centre[:, :, :1], centre, centre[:, :, -1:]], dim=2)
    out[:, 1::2, 0::2] = (beside[:, :, :-1] + beside[:, :, 1:] + grid[:, :-1] + grid[:, 1:]) / 4 + noise(2)
    return out


def fog_crop(state: State, decay: float, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The plasma map's top-left ``h`` x ``w`` crop (N, h, w), unnormalised, and its step-8 points (N, T, T).

    The step-8 points are built whole (a T x T torus, T = 32 for the 256 x 256 map); the three finer levels
    only on a window over map coordinates -8 .. 8 ceil((size + 7) / 8), whose outer 7 pixels
    :func:`refine` spoils.
    """
    torus, rows, cols = _fog_geometry(h, w)
    coarse = plasma(state, decay, torus)
    levels = int(math.log2(torus))
    device = coarse.device
    r_idx = torch.remainder(torch.arange(-1, rows - 1, device=device), torus)
    c_idx = torch.remainder(torch.arange(-1, cols - 1, device=device), torus)
    window = coarse[:, r_idx][:, :, c_idx]
    wibble = PLASMA_WIBBLE / decay**levels
    for fine in range(FOG_FINE_LEVELS):
        window = refine(window, state, fine, wibble)
        wibble /= decay
    return window[:, FOG_COARSE_STEP : FOG_COARSE_STEP + h, FOG_COARSE_STEP : FOG_COARSE_STEP + w], coarse


def fog_map(state: State, decay: float, h: int, w: int) -> torch.Tensor:
    """MNIST-C's haze: the top-left ``h`` x ``w`` crop of a 256 x 256 plasma map normalised to [0, 1] (N, h, w).

    The map's minimum and maximum are taken over its step-8 points and the crop (:func:`fog_crop`), not
    over all its points: a finer point is a mean of four earlier ones plus noise of amplitude
    ``(100 / decay^k)^2`` at level k = 5, 6, 7, so the map's maximum exceeds ours by at most the sum of
    those (and the minimum likewise). On 300 maps per table decay this moved the crop's normalised values
    by 0 at decays 1.7 and 2 and by at most 0.019 (mean 0.0008) at decay 1.4.
    """
    crop, coarse = fog_crop(state, decay, h, w)
    lo = torch.minimum(coarse.amin(dim=(1, 2)), crop.amin(dim=(1, 2))).view(-1, 1, 1)
    hi = torch.maximum(coarse.amax(dim=(1, 2)), crop.amax(dim=(1, 2))).view(-1, 1, 1)
    return (crop - lo) / (hi - lo).clamp(min=torch.finfo(crop.dtype).tiny)


@register("fog", "weather", prepare=_fog_state, random=True)
def fog(x: torch.Tensor, level: tuple[float, float], state: State) -> torch.Tensor:
    """Add a plasma-fractal haze and rescale: ``(x + s fog) max(x) / (max(x) + s)`` (MNIST-C fog)."""
    strength, decay = level
    h, w = x.shape[-2:]
    haze = fog_map(state, decay, h, w).unsqueeze(1)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * haze) * peak / (peak + strength)


def _spatter_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    return {"z": normal(keys, (1, *x.shape[-2:]), 0, dtype=x.dtype)}


@register("spatter", "weather", prepare=_spatter_state, random=True)
def spatter(x: torch.Tensor, level: tuple[float, float, float, float, float], state: State) -> torch.Tensor:
    """Mud spatter: blurred Gaussian noise, thresholded into blobs, blurred again, painted in dark gray."""
    mean, std, sigma, threshold, mask_sigma = level
    liquid = gaussian_blur(mean + std * state["z"], sigma)
    mask = gaussian_blur((liquid > threshold).to(x.dtype), mask_sigma)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    return x * (1 - mask) + MUD_COLOUR * mask


def _snow_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    lo, hi = SNOW_ANGLE_DEG
    u = uniform(keys, (1,), 2, dtype=torch.float64)[:, 0]
    return {"z": normal(keys, (1, *x.shape[-2:]), 0, dtype=x.dtype), "angle": torch.deg2rad(lo + (hi - lo) * u)}


@register("snow", "weather", prepare=_snow_state, random=True)
def snow(x: torch.Tensor, level: tuple[float, ...], state: State) -> torch.Tensor:
    """Snowflakes: zoomed, thresholded noise streaked by a motion blur over a brightened image (ImageNet-C snow).

    As the reference: flakes ``N(mean, std)`` per pixel, ``clipped_zoom`` by ``zoom``, values below the
    threshold set to 0, clipped to [0, 1] and cut to 8 bits; ImageMagick's motion blur at an angle drawn
    from U(-135, -45) degrees, rounded to 8 bits; the image becomes ``a x + (1 - a) max(x, 1.5 gray + 0.5)``
    (gray: the BT.601 luma of RGB) and the flakes and their 180-degree turn are added.
    """
    mean, std, zoom, threshold, radius, sigma, weight = level
    _, _, h, w = x.shape
    flakes = mean + std * state["z"]
    flakes = zoom_matrix(h, zoom, dtype=x.dtype, device=x.device) @ flakes
    flakes = flakes @ zoom_matrix(w, zoom, dtype=x.dtype, device=x.device).T
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp(0.0, 1.0)
    flakes = torch.floor(flakes * 255.0) / 255.0
    flakes = torch.round(magick_motion_blur(flakes, radius, sigma, state["angle"]) * 255.0) / 255.0
    bright = torch.maximum(x, luma601(x) * 1.5 + 0.5)
    return weight * x + (1.0 - weight) * bright + flakes + torch.flip(flakes, dims=(-2, -1))


def _unit_noise(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """White noise ``z`` smoothed by a Gaussian of ``sigma`` and scaled back to unit variance (in the interior)."""
    return gaussian_blur(z, sigma, mode="reflect") / sum(v * v for v in gaussian_kernel1d(sigma))


def _frost_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    shape = (1, *x.shape[-2:])
    photos = torch.tensor(FROST_PHOTOS, dtype=x.dtype, device=x.device)
    pick = (uniform(keys, (1,), 0, dtype=torch.float64)[:, 0] * len(FROST_PHOTOS)).long().clamp(max=len(photos) - 1)
    mean, spread, texture = (photos[pick, i].view(-1, 1, 1, 1) for i in range(3))
    level = mean + spread * normal(keys, (1, 1, 1), 1, dtype=x.dtype)
    fine = _unit_noise(normal(keys, shape, 3, dtype=x.dtype), FROST_FINE_SIGMA)
    coarse = _unit_noise(normal(keys, shape, 5, dtype=x.dtype), FROST_COARSE_SIGMA)
    field = math.sqrt(1 - FROST_COARSE_WEIGHT) * fine + math.sqrt(FROST_COARSE_WEIGHT) * coarse
    return {"frost": (level + texture * field).clamp(0.0, 1.0)}


@register("frost", "weather", prepare=_frost_state, random=True)
def frost(x: torch.Tensor, level: tuple[float, float], state: State) -> torch.Tensor:
    """Blend with a frost texture: ``a x + b frost`` (ImageNet-C frost; the texture is synthesised).

    The reference crops one of its frost photographs; here the texture is procedural, matched to those
    crops: a level drawn from one photograph's spread of crop means, plus smoothed noise of its
    within-crop standard deviation and spatial correlation (:data:`FROST_PHOTOS`), clipped to [0, 1].
    """
    image_weight, frost_weight = level
    return image_weight * x + frost_weight * state["frost"]
