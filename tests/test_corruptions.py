"""Tests of ninr.robustness corruptions: the registered set, argument checks, then oracles.

The contracts every registered corruption keeps (shape/dtype/range, no input mutation, a distance from
the clean image that grows with severity, reproducibility, batch == one by one) are checked in
tests/test_registries.py. Here: closed forms (translate, contrast, pixelate, brightness), scikit-image's
canny on a square (pinned), the counter-based RNG against a pure-Python hash, and noise std against the
requested std.
"""

from __future__ import annotations

import math

import pytest
import torch

from helpers import garment_images
from ninr.errors import ConfigError, UnknownNameError
from ninr.robustness import CORRUPTIONS, TABLES, corrupt, get_corruption
from ninr.robustness._random import example_keys, hash32, normal, uniform
from ninr.robustness.corruptions import INTENSITY_NAMES, canny, poisson_quantile
from ninr.robustness.corruptions._poisson import poisson_ptrs

NAMES = CORRUPTIONS.names()


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
    }  # fmt: skip
    assert set(NAMES) == expected
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
    for name in ("gaussian-blur", "motion-blur", "glass-blur", "pixelate"):
        torch.testing.assert_close(corrupt(x, name, 5, generator=gen()), x)


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
