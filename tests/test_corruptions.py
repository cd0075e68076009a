"""Tests of ninr.robustness corruptions: the registered set, argument checks, then oracles.

The contracts every corruption of :data:`CORRUPTIONS` keeps (shape/dtype/range, no input mutation, a
distance from the clean image that grows with severity, reproducibility, batch == one by one) are checked
in tests/test_registries.py; the same contracts for the RGB-only corruptions (:data:`RGB_CORRUPTIONS`) on
RGB input are checked here. Also here: closed forms (translate, contrast, pixelate, brightness, zoom,
saturate against ``colorsys``), scikit-image's canny and PIL's JPEG on small images (pinned), glass blur's
swaps against a plain loop, fog's windowed plasma against the whole 256 x 256 map, the frost texture's
statistics, the counter-based RNG against a pure-Python hash, noise std against the requested std, and
(slow, Fashion-MNIST) every corruption compared in benchmarks/corruption_reference.py against the
reference numbers it stored in tests/data/corruption_reference.json.
"""

from __future__ import annotations

import colorsys
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from helpers import assert_global_rng_untouched, assert_no_input_mutation, garment_images
from ninr.data import load_fashion_mnist_raw, locate_fashion_mnist
from ninr.errors import ConfigError, DataError, UnknownNameError
from ninr.robustness import CORRUPTIONS, TABLES, corrupt, get_corruption
from ninr.robustness._random import example_keys, hash32, normal, uniform
from ninr.robustness.corruptions import INTENSITY_NAMES, RGB_CORRUPTIONS, canny, poisson_quantile
from ninr.robustness.corruptions._ops import gaussian_blur, zoom_matrix
from ninr.robustness.corruptions._poisson import poisson_ptrs
from ninr.robustness.corruptions.blur import disk_kernel
from ninr.robustness.corruptions.digital import JPEG_LUMINANCE, jpeg_table
from ninr.robustness.corruptions.geometric import reflect_sample
from ninr.robustness.corruptions.weather import FOG_MAP_SIZE, FROST_PHOTOS, PLASMA_WIBBLE, fog_crop, fog_map
from ninr.robustness.severities import SEVERITIES

NAMES = CORRUPTIONS.names()
RGB_NAMES = RGB_CORRUPTIONS.names()
REFERENCE = Path(__file__).parent / "data" / "corruption_reference.json"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """16 garment-like 28x28 images: a textured ellipse with a hard edge on a black background."""
    return garment_images(16)


@pytest.fixture(scope="module")
def rgb() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=gen(7), dtype=torch.float64)


# ----------------------------------------------------------------------------- the registered set


def test_registry_holds_the_issue_set() -> None:
    expected = {
        "gaussian-noise", "uniform-noise", "shot-noise", "impulse-noise", "speckle-noise",  # unstructured
        "glass-blur", "motion-blur", "shear", "scale", "rotate", "brightness", "translate", "stripe", "fog",
        "spatter", "dotted-line", "zigzag", "canny-edges",  # MNIST-C
        "contrast", "gaussian-blur", "pixelate", "inverse",
        "defocus-blur", "zoom-blur", "snow", "frost", "jpeg-compression", "elastic-transform",  # ImageNet-C
    }  # fmt: skip
    assert set(NAMES) == expected
    assert set(RGB_NAMES) == {"saturate"}
    assert get_corruption("saturate").rgb_only and not any(get_corruption(n).rgb_only for n in NAMES)
    assert set(INTENSITY_NAMES) == {"gaussian-noise", "uniform-noise", "shot-noise", "impulse-noise", "speckle-noise"}


# ----------------------------------------------------------------------------- argument checks


def test_bad_names_get_did_you_mean(images: torch.Tensor) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'gaussian-noise'"):
        corrupt(images, "gausian-noise", 1)
    assert torch.equal(
        corrupt(images, "motion_blur", 2, generator=gen()), corrupt(images, "motion-blur", 2, generator=gen())
    )


@pytest.mark.parametrize("severity", [0, 6, 2.5, True, "3", None])
def test_severity_outside_1_to_5_is_rejected(severity: object, images: torch.Tensor) -> None:
    with pytest.raises(ConfigError):
        corrupt(images, "contrast", severity)  # type: ignore[arg-type]


def test_intensity_rules(images: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="intensity"):
        corrupt(images, "fog", intensity=0.1)
    with pytest.raises(ConfigError, match="exactly one"):
        corrupt(images, "gaussian-noise", 2, intensity=0.1)
    with pytest.raises(ConfigError, match=">= 0"):
        corrupt(images, "gaussian-noise", intensity=-0.1)
    with pytest.raises(ConfigError, match=r"<= 0\.5"):
        corrupt(images, "impulse-noise", intensity=0.6)
    for name in INTENSITY_NAMES:
        assert torch.equal(corrupt(images, name, intensity=0.0, generator=gen()), images)


@pytest.mark.parametrize(
    "bad", [torch.zeros(28, 28), torch.zeros(2, 1, 28, 28, dtype=torch.int64), torch.full((1, 1, 4, 4), 1.5)]
)
def test_bad_images_are_rejected(bad: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="`x` must be"):
        corrupt(bad, "contrast", 1)


# ----------------------------------------------------------------------------- noise std


@pytest.mark.parametrize(("name", "pixel"), [("gaussian-noise", 0.5), ("uniform-noise", 0.5), ("shot-noise", 1.0),
                                             ("impulse-noise", 0.5), ("speckle-noise", 1.0)])  # fmt: skip
@pytest.mark.parametrize("std", [0.05, 0.2])
def test_noise_std_matches_the_request(name: str, pixel: float, std: float) -> None:
    """Before clipping, (corrupted - clean) has the requested std; 64 x 784 values, 3% tolerance (> 8 SE)."""
    x = torch.full((64, 1, 28, 28), pixel, dtype=torch.float64)
    diff = corrupt(x, name, intensity=std, generator=gen(1), clip=False) - x
    assert abs(float(diff.std()) / std - 1) < 0.03
    assert abs(float(diff.mean())) < 5 * std / math.sqrt(diff.numel()) + (0.02 * std if name == "shot-noise" else 0)


def test_noise_severity_table_is_the_std() -> None:
    x = torch.full((32, 1, 28, 28), 0.5, dtype=torch.float64)
    for severity, std in enumerate(TABLES["gaussian-noise"].values, start=1):
        diff = corrupt(x, "gaussian-noise", severity, generator=gen(2), clip=False) - x
        assert abs(float(diff.std()) / std - 1) < 0.03


def test_poisson_quantile_is_the_exact_inverse_cdf() -> None:
    lam = torch.tensor([0.0, 0.5, 3.0, 12.0, 25.0, 60.0, 99.0], dtype=torch.float64).repeat_interleave(6)
    u = torch.tensor([1e-6, 0.01, 0.3, 0.7, 0.99, 1 - 1e-7], dtype=torch.float64).repeat(7)

    def reference(mean: float, level: float) -> int:
        k, pmf = 0, math.exp(-mean)
        cdf = pmf
        while cdf < level:
            k += 1
            pmf *= mean / k
            cdf += pmf
        return k

    got = poisson_quantile(lam, u)
    assert got.tolist() == [reference(float(a), float(b)) for a, b in zip(lam, u, strict=True)]


@pytest.mark.parametrize("mean", [10.0, 23.5, 60.0])
def test_ptrs_matches_the_poisson_pmf(mean: float) -> None:
    """Chi-square of 100,000 PTRS draws against the exact pmf (tail bins merged to >= 20 expected counts).

    The threshold is about the 99.9% quantile of chi-square with the bins' degrees of freedom.
    """
    n = 100_000
    g = gen(3)
    u, v = torch.rand(n, generator=g, dtype=torch.float64), torch.rand(n, generator=g, dtype=torch.float64)

    def retry(idx: torch.Tensor, rnd: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(len(idx), generator=g, dtype=torch.float64), torch.rand(len(idx), generator=g).double()

    draws = poisson_ptrs(torch.full((n,), mean, dtype=torch.float64), u, v, retry).long()
    top = int(mean + 8 * math.sqrt(mean)) + 10
    pmf = [math.exp(k * math.log(mean) - mean - math.lgamma(k + 1)) for k in range(top)]
    counts = torch.bincount(draws.clamp(max=top - 1), minlength=top).tolist()
    observed = expected = chi2 = 0.0
    bins = 0
    for k in range(top):
        observed, expected = observed + counts[k], expected + n * pmf[k]
        if expected >= 20:
            chi2, bins = chi2 + (observed - expected) ** 2 / expected, bins + 1
            observed = expected = 0.0
    dof = bins - 1
    assert chi2 < dof + 3.09 * math.sqrt(2 * dof) + 10, (chi2, dof)


# ----------------------------------------------------------------------------- closed forms and oracles


def test_translate_is_an_integer_shift(images: torch.Tensor) -> None:
    spec = get_corruption("translate")
    state = spec.prepare(images, spec.keys(len(images), gen(4), images.device))
    out = spec.apply(images, 2, state)
    for i in range(len(images)):
        dx, dy = (int(v) * 2 for v in state["sign"][i].tolist())
        expected = torch.zeros_like(images[i])
        src = images[i, :, max(dy, 0) : 28 + min(dy, 0), max(dx, 0) : 28 + min(dx, 0)]
        expected[:, max(-dy, 0) : 28 + min(-dy, 0), max(-dx, 0) : 28 + min(-dx, 0)] = src
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)  # float32 grid coordinates


def test_digital_closed_forms(images: torch.Tensor) -> None:
    mean = images.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(corrupt(images, "contrast", 3), ((images - mean) * 0.2 + mean).clamp(0, 1))
    torch.testing.assert_close(corrupt(images, "brightness", 2), (images + 0.2).clamp(0, 1))
    torch.testing.assert_close(corrupt(images, "inverse", 5), 1 - images)
    blocks = torch.nn.functional.avg_pool2d(images, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(get_corruption("pixelate").apply(images, 0.5, {}), blocks)  # 28 -> 14 -> 28
    striped = corrupt(images, "stripe", 5)
    torch.testing.assert_close(striped[..., 7:21], images[..., 7:21])
    torch.testing.assert_close(striped[..., :7], 1 - images[..., :7])


def test_brightness_keeps_rgb_hue(rgb: torch.Tensor) -> None:
    out = get_corruption("brightness").apply(rgb, 0.1, {})
    ratio = out / rgb.clamp(min=1e-9)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    torch.testing.assert_close(out.amax(dim=1), (rgb.amax(dim=1) + 0.1).clamp(max=1))


def test_blurs_keep_a_constant_image() -> None:
    x = torch.full((2, 1, 28, 28), 0.4, dtype=torch.float64)
    for name in ("gaussian-blur", "motion-blur", "glass-blur", "pixelate", "zoom-blur"):
        torch.testing.assert_close(corrupt(x, name, 5, generator=gen()), x)
    # The defocus kernels of radius 3..6 sum to 1; at radius 8 and 10 the disk reaches the edge of its array
    # and the anti-aliasing blur (reflect-101 edges, as OpenCV's) folds part of it back in: sums above 1,
    # as in the reference.
    for severity in (1, 2, 3):
        torch.testing.assert_close(corrupt(x, "defocus-blur", severity), x)
    for severity in (4, 5):
        total = float(disk_kernel(*TABLES["defocus-blur"].at(severity)).sum())
        assert 1.005 < total < 1.02
        torch.testing.assert_close(corrupt(x, "defocus-blur", severity), x * total)


def test_zoom_matrix_is_clipped_zoom_of_a_ramp() -> None:
    """On a linear ramp the zoom is exact: ``clipped_zoom`` crops the central ceil(n / f) pixels starting at
    (n - ceil(n / f)) // 2, stretches them onto round(ceil(n / f) f) pixels (scipy ``zoom``, order 1) and
    keeps the central n, so output ``o`` holds ``top + (o + trim) (crop - 1) / (size - 1)``."""
    n = 28
    ramp = torch.arange(n, dtype=torch.float64)
    for factor in (1.0, 1.11, 2.0, 2.5, 4.5):
        crop = math.ceil(n / factor)
        size = round(crop * factor)
        expected = (n - crop) // 2 + (ramp + (size - n) // 2) * ((crop - 1) / (size - 1))
        torch.testing.assert_close(zoom_matrix(n, factor, dtype=torch.float64, device=ramp.device) @ ramp, expected)


# skimage.feature.canny of a white 12x12 square on black (rows/cols 6..21 shown), pinned from
# scikit-image 0.26: `feature.canny(np.pad(np.ones((12, 12)), 8))[6:22, 6:22]`.
CANNY_SQUARE = [
    "0000000000000000", "0000000110000000", "0011111001111100", "0010000000000100",
    "0010000000000100", "0010000000000100", "0010000000000100", "0110000000000110",
    "0110000000000110", "0010000000000100", "0010000000000100", "0010000000000100",
    "0010000000000100", "0011111001111100", "0000000110000000", "0000000000000000",
]  # fmt: skip


def test_canny_matches_scikit_image_on_a_square() -> None:
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(1, 1, 28, 28, dtype=dtype)
        x[..., 8:20, 8:20] = 1.0
        edges = canny(x)[0, 0]
        assert int(edges.sum()) == 48
        assert ["".join(str(v) for v in row) for row in edges[6:22, 6:22].int().tolist()] == CANNY_SQUARE


# ----------------------------------------------------------------------------- the per-example random numbers


def _lowbias32(v: int) -> int:
    v &= 0xFFFFFFFF
    v ^= v >> 16
    v = (v * 0x21F0AAAD) & 0xFFFFFFFF
    v ^= v >> 15
    v = (v * 0x735A2D97) & 0xFFFFFFFF
    v ^= v >> 15
    return v - (1 << 32) if v >= 1 << 31 else v


def test_hash_matches_pure_python() -> None:
    values = torch.randint(-(2**31), 2**31, (500,), generator=gen(0), dtype=torch.int64).to(torch.int32)
    assert hash32(values).tolist() == [_lowbias32(int(v)) for v in values]


def test_keys_are_drawn_one_per_example_in_order() -> None:
    g = gen(11)
    one_by_one = torch.cat([example_keys(1, g) for _ in range(50)])
    assert torch.equal(example_keys(50, gen(11)), one_by_one)


def test_uniform_and_normal_statistics() -> None:
    keys = example_keys(400, gen(0))
    u = uniform(keys, (1000,), 0)
    assert float(u.min()) > 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.002 and abs(float(u.var()) * 12 - 1) < 0.01
    z = normal(keys, (999,), 2)
    assert abs(float(z.mean())) < 0.005 and abs(float(z.std()) - 1) < 0.005
    corr = torch.corrcoef(torch.stack([u[:, 0], u[:, 1], uniform(keys, (1,), 7)[:, 0]]))
    assert float((corr - torch.eye(3)).abs().max()) < 0.2  # 400 samples: |r| < 4 SE


# ----------------------------------------------------------------------------- RGB-only corruptions
# The contracts of tests/test_registries.py, on RGB input: an RGB-only corruption refuses other channel
# counts, keeps shape/dtype/device and [0, 1], leaves x alone, draws only from its generator, gives a batch
# what it gives its examples one by one, and its distance from the clean image grows with severity.


def tinted(n: int = 16, seed: int = 0) -> torch.Tensor:
    """Garment images in colour (N, 3, 28, 28): an orange tint of saturation 0.05..0.15 per image.

    Saturate's table scales the saturation by 0.3, 0.1, then raises it to 2s, min(5s + 0.1, 1) and
    min(20s + 0.2, 1): the change grows with severity for saturations below 0.18, the range of most
    photographs' pixels; above it severities 4 and 5 both reach saturation 1.
    """
    gray = garment_images(n, seed=seed).double()
    s = 0.05 + 0.1 * torch.rand(n, 1, 1, 1, generator=gen(seed), dtype=torch.float64)
    return torch.cat([gray, gray * (1 - s / 2), gray * (1 - s)], dim=1)


@pytest.mark.parametrize("name", RGB_NAMES)
def test_rgb_only_corruption_refuses_other_channel_counts(name: str, images: torch.Tensor) -> None:
    for x in (images[:2], torch.rand(2, 2, 8, 8, generator=gen(1)), torch.rand(2, 4, 8, 8, generator=gen(1))):
        with pytest.raises(ConfigError, match=rf"`x` must be RGB images \(N, 3, H, W\) for {name}, got \d channel"):
            corrupt(x, name, 1, generator=gen())


@pytest.mark.parametrize("name", RGB_NAMES)
def test_rgb_only_corruption_keeps_shape_dtype_and_the_unit_range(name: str) -> None:
    x = tinted(4)
    assert_no_input_mutation(lambda t: corrupt(t, name, 3, generator=gen()), x.clone())
    inputs = [x, x.float(), x.half(), x.bfloat16(), torch.rand(2, 3, 9, 13, generator=gen(8)), x[:0]]
    for t in inputs:
        for severity in SEVERITIES:
            out = corrupt(t, name, severity, generator=gen())
            assert out.shape == t.shape and out.dtype == t.dtype and torch.isfinite(out).all()
            assert not out.numel() or (float(out.min()) >= 0.0 and float(out.max()) <= 1.0)


@pytest.mark.parametrize("name", RGB_NAMES)
def test_rgb_only_corruption_distance_grows_with_severity(name: str) -> None:
    x = tinted()
    dist = [float((corrupt(x, name, s, generator=gen()) - x).abs().mean()) for s in SEVERITIES]
    assert dist[0] > 0
    assert all(b > a for a, b in itertools.pairwise(dist)), dist


@pytest.mark.parametrize("name", RGB_NAMES)
def test_rgb_only_corruption_draws_only_from_its_generator(name: str) -> None:
    x = tinted(6)
    assert_global_rng_untouched(lambda: corrupt(x, name, 4, generator=gen(5)))
    g = gen(5)
    state = g.get_state()
    first = corrupt(x, name, 4, generator=g)
    assert torch.equal(first, corrupt(x, name, 4, generator=gen(5)))
    assert get_corruption(name).random == (not torch.equal(g.get_state(), state))
    # a batch equals its examples one by one (float64 sums reordered: atol 1e-12, see test_registries.py)
    g = gen(9)
    single = torch.cat([corrupt(x[i : i + 1], name, 3, generator=g) for i in range(len(x))])
    torch.testing.assert_close(corrupt(x, name, 3, generator=gen(9)), single, atol=1e-12, rtol=0)


def test_saturate_matches_colorsys() -> None:
    """Python's ``colorsys`` HSV round trip (hue 0 for gray, as ``skimage.color.rgb2hsv``), pixel by pixel."""
    x = torch.rand(1, 3, 5, 7, generator=gen(3), dtype=torch.float64)
    x[0, :, 0, 0] = 0.6  # a gray pixel: an offset gives it hue 0 (red)
    x[0, :, 0, 1] = 0.0  # black stays black
    for factor, offset in TABLES["saturate"].values:
        out = corrupt(x, "saturate", TABLES["saturate"].values.index((factor, offset)) + 1)
        for i, j in itertools.product(range(5), range(7)):
            h, s, v = colorsys.rgb_to_hsv(*x[0, :, i, j].tolist())
            expected = colorsys.hsv_to_rgb(h, min(max(s * factor + offset, 0.0), 1.0), v)
            torch.testing.assert_close(out[0, :, i, j], torch.tensor(expected, dtype=torch.float64))


# ----------------------------------------------------------------------------- glass blur, fog, frost


def test_glass_blur_swaps_pixels_one_after_another_in_the_reference_order() -> None:
    """Between the two blurs, the reference visits rows H - delta .. delta + 1 and, in each, columns
    W - delta .. delta + 1, and with probability 1/2 swaps the pixel with the one at (h + dy, w + dx);
    a plain loop over the same decisions (decoded from the same bits) gives the same image."""
    x = torch.rand(2, 2, 11, 9, generator=gen(4), dtype=torch.float64)
    spec = get_corruption("glass-blur")
    state = spec.prepare(x, spec.keys(len(x), gen(2), x.device))
    for sigma, delta, iterations in TABLES["glass-blur"].values[:4]:
        expected = gaussian_blur(x, sigma).clone()
        for i in range(len(x)):
            bits = state["bits"][i].tolist()
            for it in range(iterations):
                for h in range(11 - delta, delta, -1):
                    for w in range(9 - delta, delta, -1):
                        b = bits[it][h][w]
                        if b & 1:
                            dy = ((((b >> 1) & 0x7FFF) * 2 * delta) >> 15) - delta
                            dx = ((((b >> 16) & 0x7FFF) * 2 * delta) >> 15) - delta
                            here = expected[i, :, h, w].clone()
                            expected[i, :, h, w] = expected[i, :, h + dy, w + dx]
                            expected[i, :, h + dy, w + dx] = here
        expected = gaussian_blur(expected, sigma)
        torch.testing.assert_close(spec.apply(x, (sigma, delta, iterations), state), expected, atol=1e-14, rtol=0)


def _whole_plasma(state: dict[str, torch.Tensor], decay: float, rows: int, cols: int) -> torch.Tensor:
    """MNIST-C's 256 x 256 diamond-square map (unnormalised), written out whole: the levels of step 256..16
    draw the torus numbers of ``state`` (u*), the levels of step 8, 4, 2 the window's (w*) at their map
    coordinates and zero noise elsewhere (points the crop does not depend on)."""
    size = FOG_MAP_SIZE
    first = state["u0.0"]
    m = torch.zeros(len(first), size, size, dtype=first.dtype)
    step, wibble, level = size, PLASMA_WIBBLE, 0
    while step >= 2:
        half, count = step // 2, size // step
        if level < 5:
            noise = [state[f"u{level}.{part}"] for part in range(3)]
        else:
            fine, shift = level - 5, 2 ** (level - 5)  # the window starts at map coordinate -8 = -shift steps
            noise = []
            for part in range(3):
                window = state[f"w{fine}.{part}"]
                full = torch.zeros(len(first), count, count, dtype=first.dtype)
                r = torch.remainder(torch.arange(window.shape[1]) - shift, count)
                c = torch.remainder(torch.arange(window.shape[2]) - shift, count)
                full[:, r.view(-1, 1), c.view(1, -1)] = window
                noise.append(full)
        amp = wibble * wibble
        corner = m[:, 0::step, 0::step]
        square = corner + torch.roll(corner, -1, 1)
        square = square + torch.roll(square, -1, 2)
        m[:, half::step, half::step] = square / 4 + amp * (2 * noise[0] - 1)
        dr, ul = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = (dr + torch.roll(dr, 1, 1) + ul + torch.roll(ul, -1, 2)) / 4 + amp * (
            2 * noise[1] - 1
        )
        m[:, half::step, 0::step] = (dr + torch.roll(dr, 1, 2) + ul + torch.roll(ul, -1, 1)) / 4 + amp * (
            2 * noise[2] - 1
        )
        step, wibble, level = half, wibble / decay, level + 1
    return m


@pytest.mark.parametrize(("h", "w"), [(28, 28), (9, 13)])
def test_fog_builds_the_crop_of_the_whole_256_map(h: int, w: int) -> None:
    """The windowed crop equals the whole map's; the map's range exceeds ours by at most the noise of the
    three finer levels (each new point is a mean of earlier points plus noise of amplitude wibble^2)."""
    x = torch.zeros(3, 1, h, w, dtype=torch.float64)
    spec = get_corruption("fog")
    state = spec.prepare(x, spec.keys(len(x), gen(6), x.device))
    for decay in (2.0, 1.4):
        crop, coarse = fog_crop(state, decay, h, w)
        whole = _whole_plasma(state, decay, h, w)
        torch.testing.assert_close(crop, whole[:, :h, :w], atol=1e-9, rtol=1e-12)  # values up to ~1e4
        torch.testing.assert_close(coarse, whole[:, ::8, ::8], atol=1e-9, rtol=1e-12)
        slack = sum((PLASMA_WIBBLE / decay**k) ** 2 for k in (5, 6, 7))
        lo, hi = whole.amin(dim=(1, 2)), whole.amax(dim=(1, 2))
        our_lo = torch.minimum(coarse.amin(dim=(1, 2)), crop.amin(dim=(1, 2)))
        our_hi = torch.maximum(coarse.amax(dim=(1, 2)), crop.amax(dim=(1, 2)))
        assert bool((hi >= our_hi).all() and (hi <= our_hi + slack).all()), (hi, our_hi, slack)
        assert bool((lo <= our_lo).all() and (lo >= our_lo - slack).all()), (lo, our_lo, slack)
        haze = fog_map(state, decay, h, w)
        assert float(haze.min()) >= 0.0 and float(haze.max()) <= 1.0


def test_frost_texture_has_the_photographs_statistics() -> None:
    """Over 2,000 textures: the mean level is the photographs' mean crop mean, and the RMS within-texture
    std and the correlation of pixels 1 and 4 apart are near the photographs' (FROST_PHOTOS; the weather.py
    comment gives both). Tolerances: the texture model's stated mismatch plus 5 standard errors."""
    x = torch.zeros(2000, 1, 28, 28, dtype=torch.float64)
    spec = get_corruption("frost")
    frost = spec.prepare(x, spec.keys(len(x), gen(0), x.device))["frost"][:, 0]
    level = frost.mean(dim=(1, 2))
    photo_mean = sum(p[0] for p in FROST_PHOTOS) / len(FROST_PHOTOS)
    assert abs(float(level.mean()) - photo_mean) < 5 * float(level.std()) / math.sqrt(len(level))
    q = frost - level.view(-1, 1, 1)
    var = (q * q).mean(dim=(1, 2))
    photo_std = math.sqrt(sum(p[2] ** 2 for p in FROST_PHOTOS) / len(FROST_PHOTOS))
    assert abs(math.sqrt(float(var.mean())) - photo_std) < 0.01
    for lag, photo_corr in ((1, 0.63), (4, 0.18)):
        corr = ((q[:, :, lag:] * q[:, :, :-lag]).mean(dim=(1, 2)) + (q[:, lag:] * q[:, :-lag]).mean(dim=(1, 2))) / 2
        assert abs(float((corr / var).mean()) - photo_corr) < 0.05


# ----------------------------------------------------------------------------- JPEG, elastic transform


def test_jpeg_tables_follow_libjpeg_quality_scaling() -> None:
    base = torch.tensor(JPEG_LUMINANCE, dtype=torch.float64)
    assert torch.equal(jpeg_table(JPEG_LUMINANCE, 50), base)
    assert torch.equal(jpeg_table(JPEG_LUMINANCE, 100), torch.ones(8, 8, dtype=torch.float64))
    assert torch.equal(jpeg_table(JPEG_LUMINANCE, 25), (2 * base).clamp(max=255))  # scale 5000 // 25 = 200
    assert torch.equal(jpeg_table(JPEG_LUMINANCE, 7), ((base * 714 + 50) // 100).clamp(1, 255))


# PIL 13.0's JPEG (libjpeg-turbo) of small images, pinned: `Image.fromarray(a).save(f, "JPEG", quality=q)`,
# read back. Gray: 12x12, a + 40 + 10 i + 5 j ramp with a 230 square at rows 3..7, columns 4..8, quality 25.
PIL_GRAY_Q25 = [
    [25, 64, 64, 56, 71, 60, 54, 89, 72, 73, 107, 116],
    [35, 63, 54, 49, 72, 63, 49, 74, 99, 85, 107, 116],
    [53, 70, 56, 65, 114, 119, 100, 113, 143, 105, 108, 119],
    [72, 83, 71, 103, 184, 212, 195, 201, 188, 126, 112, 126],
    [86, 92, 81, 124, 223, 255, 246, 249, 219, 143, 120, 138],
    [95, 99, 85, 123, 217, 252, 232, 232, 232, 152, 131, 154],
    [107, 112, 96, 127, 210, 237, 216, 217, 232, 155, 142, 168],
    [117, 126, 112, 141, 219, 244, 225, 230, 229, 156, 148, 177],
    [119, 121, 126, 131, 137, 143, 147, 150, 155, 158, 163, 168],
    [131, 134, 138, 144, 150, 155, 160, 162, 168, 171, 176, 180],
    [146, 149, 153, 159, 165, 170, 174, 177, 183, 186, 191, 195],
    [154, 156, 161, 166, 172, 178, 182, 185, 191, 194, 198, 203],
]  # fmt: skip
# RGB: 8x10, channels 30 i, 25 j, 255 - 14 (i + j), quality 50 (JFIF YCbCr, 4:2:0).
PIL_RGB_Q50 = [
    [[0, 9, 16, 18, 13, 12, 15, 14, 15, 21], [16, 25, 32, 34, 29, 27, 30, 30, 31, 36],
     [46, 54, 60, 62, 59, 58, 58, 57, 59, 64], [75, 83, 92, 92, 88, 87, 89, 88, 88, 94],
     [109, 117, 124, 125, 121, 120, 123, 122, 122, 127], [137, 145, 152, 154, 151, 149, 151, 150, 151, 157],
     [163, 171, 180, 181, 177, 175, 177, 177, 177, 184], [178, 185, 194, 196, 192, 191, 191, 192, 193, 198]],
    [[5, 22, 46, 70, 93, 119, 149, 173, 193, 209], [8, 25, 49, 72, 96, 122, 152, 176, 196, 212],
     [10, 26, 51, 74, 98, 124, 154, 177, 197, 214], [10, 26, 51, 75, 98, 124, 153, 177, 198, 214],
     [9, 24, 48, 72, 95, 121, 151, 175, 196, 212], [9, 25, 49, 72, 96, 122, 151, 175, 195, 211],
     [10, 26, 51, 75, 97, 124, 153, 178, 197, 214], [14, 29, 54, 78, 101, 127, 156, 181, 201, 217]],
    [[219, 224, 220, 208, 190, 171, 160, 145, 133, 133], [217, 219, 217, 205, 185, 168, 155, 140, 130, 129],
     [206, 207, 206, 194, 175, 158, 143, 129, 119, 117], [190, 191, 191, 179, 159, 142, 127, 113, 103, 104],
     [170, 174, 172, 160, 140, 123, 110, 95, 85, 83], [158, 159, 158, 146, 128, 111, 97, 81, 71, 71],
     [150, 153, 152, 141, 122, 103, 89, 76, 64, 64], [149, 152, 150, 139, 119, 102, 88, 75, 63, 63]],
]  # fmt: skip


def test_jpeg_matches_pil_on_small_images() -> None:
    """Within 2 levels of libjpeg: its integer DCT, inverse DCT and colour conversions each round to integers,
    which moves a sample by at most one level per step from exact arithmetic (the pinned images differ by 1)."""
    i, j = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    gray = (40 + 10 * i + 5 * j).double()
    gray[3:8, 4:9] = 230
    out = get_corruption("jpeg-compression").apply(gray.view(1, 1, 12, 12) / 255, 25, {})
    assert float((out[0, 0] * 255 - torch.tensor(PIL_GRAY_Q25, dtype=torch.float64)).abs().max()) <= 2
    i, j = torch.meshgrid(torch.arange(8), torch.arange(10), indexing="ij")
    rgb = torch.stack([30 * i, 25 * j, 255 - 14 * (i + j)]).double().unsqueeze(0) / 255
    out = get_corruption("jpeg-compression").apply(rgb, 50, {})
    assert float((out[0] * 255 - torch.tensor(PIL_RGB_Q50, dtype=torch.float64)).abs().max()) <= 2


def test_reflect_sample_is_bilinear_on_the_symmetric_extension() -> None:
    """Against numpy's ``pad(mode="symmetric")`` (half-sample symmetric, scipy's ``reflect``) and a plain
    bilinear read; at integer positions inside the image it returns the pixels."""
    np = pytest.importorskip("numpy")
    x = torch.rand(2, 3, 6, 5, generator=gen(2), dtype=torch.float64)
    rows = torch.rand(2, 6, 5, generator=gen(3), dtype=torch.float64) * 16 - 5  # -5 .. 11: one fold and more
    cols = torch.rand(2, 6, 5, generator=gen(4), dtype=torch.float64) * 15 - 5
    out = reflect_sample(x, rows, cols)
    pad = 12
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    for n, r, c in itertools.product(range(2), range(6), range(5)):
        fr, fc = float(rows[n, r, c]) + pad, float(cols[n, r, c]) + pad
        r0, c0 = math.floor(fr), math.floor(fc)
        a, b = fr - r0, fc - c0
        p = padded[n]
        want = (1 - a) * ((1 - b) * p[:, r0, c0] + b * p[:, r0, c0 + 1]) + a * (
            (1 - b) * p[:, r0 + 1, c0] + b * p[:, r0 + 1, c0 + 1]
        )
        torch.testing.assert_close(out[n, :, r, c], torch.from_numpy(want))
    grid_r, grid_c = torch.meshgrid(torch.arange(6.0), torch.arange(5.0), indexing="ij")
    same = reflect_sample(x, grid_r.double().expand(2, 6, 5), grid_c.double().expand(2, 6, 5))
    assert torch.equal(same, x)
    field = torch.rand(2, 2, 6, 5, generator=gen(5), dtype=torch.float64)
    assert torch.equal(get_corruption("elastic-transform").apply(x, 0.0, {"field": field}), x)


# ----------------------------------------------------------------------------- against the references
# tests/data/corruption_reference.json holds the mean absolute change and the accuracy drop of a fixed
# model under independent NumPy/SciPy re-implementations of the reference formulas, on the first 1,000
# Fashion-MNIST test images, 3 draws each. Regenerate it with
#     PYTHONPATH=<a folder with scipy> .venv/bin/python benchmarks/corruption_reference.py \
#         --frost-dir <mnist-c checkout>/frost --write
# The requirement: ours within 2% of the reference's mean absolute change and within 2 points of its
# accuracy drop. The reference's standard errors over its 10 draws are at most 0.4% of the change and
# 0.5 points of the drop; ours, over 3 draws here, about 0.7% and 0.8 points. A faithful corruption then
# misses 2% by more than 2.5 combined standard errors and 2 points by more than 2 (measured: 0.5% and
# 0.9 points at most, benchmarks/corruption_reference.py); the test checks the requirement itself.


OUR_DRAWS = 3


def fashion_mnist_present() -> bool:
    try:
        locate_fashion_mnist(download=False)
    except DataError:
        return False
    return True


needs_fmnist = pytest.mark.skipif(not fashion_mnist_present(), reason="Fashion-MNIST files are not on this machine")


def train_reference_mlp(x_train: torch.Tensor, y_train: torch.Tensor) -> torch.nn.Module:
    """The benchmark's fixed model: 784-128-10 ReLU MLP, one epoch of SGD (lr 0.1, momentum 0.9, batch 64)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        xs = x_train.float().div(255).unsqueeze(1)
        order = torch.randperm(len(xs))
        for i in range(0, len(xs), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), y_train[idx].long()).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def reference_comparison() -> dict[str, dict[str, list[float]]]:
    """Ours on the reference's images and model: per corruption, the mean absolute change and the accuracy
    drop per severity, next to the stored reference numbers."""
    stored = json.loads(REFERENCE.read_text())
    x_train, y_train, x_test, y_test = load_fashion_mnist_raw(download=False)
    x = x_test[: stored["images"]].double().div(255).unsqueeze(1)
    labels = y_test[: stored["images"]].long()
    model = train_reference_mlp(x_train, y_train)

    def accuracy(images: torch.Tensor) -> float:
        with torch.no_grad():
            return float((model(images.float()).argmax(1) == labels).float().mean())

    clean = accuracy(x)
    out = {}
    for name, ref in stored["corruptions"].items():
        change, drop = [], []
        draws = OUR_DRAWS if get_corruption(name).random else 1
        for severity in SEVERITIES:
            corrupted = [corrupt(x, name, severity, generator=gen(1000 + d)) for d in range(draws)]
            change.append(sum(float((c - x).abs().mean()) for c in corrupted) / draws)
            drop.append(sum(100 * (clean - accuracy(c)) for c in corrupted) / draws)
        out[name] = {"change": change, "drop": drop, "ref_change": ref["mean_abs_change"],
                     "ref_drop": ref["accuracy_drop"]}  # fmt: skip
    return out


@pytest.mark.slow
@needs_fmnist
def test_corruptions_change_images_as_much_as_the_reference(reference_comparison: dict) -> None:
    assert set(reference_comparison) >= {"glass-blur", "fog", "defocus-blur", "zoom-blur", "snow",
                                         "jpeg-compression", "elastic-transform"}  # fmt: skip
    for name, row in reference_comparison.items():
        for severity, ours, ref in zip(SEVERITIES, row["change"], row["ref_change"], strict=True):
            assert abs(ours / ref - 1) < 0.02, (name, severity, ours, ref)


@pytest.mark.slow
@needs_fmnist
def test_corruptions_cost_a_fixed_model_as_much_accuracy_as_the_reference(reference_comparison: dict) -> None:
    for name, row in reference_comparison.items():
        for severity, ours, ref in zip(SEVERITIES, row["drop"], row["ref_drop"], strict=True):
            assert abs(ours - ref) < 2.0, (name, severity, ours, ref)
