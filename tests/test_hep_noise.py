"""Structured noise distributions: registry contract, exact moments, spatial correlation, use in NINs."""

from __future__ import annotations

import math

import pytest
import torch

import ninr.hep  # noqa: F401  (registers the distributions)
from ninr.errors import ConfigError
from ninr.functional.noise import DISTRIBUTIONS, sample
from ninr.hep.noise import (
    correlated_noise,
    neighbour_kernel,
    neighbour_noise,
    neighbour_weight,
    periodic_gaussian_kernel,
    pileup_noise,
    register_correlated,
    register_neighbour,
)
from ninr.models import build_model
from ninr.nn import attach_nins, nin_nodes

NAMES = ("correlated", "neighbour", "pileup")
Z = 5.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_mean_zero_and_std_scale(name: str) -> None:
    assert name in DISTRIBUTIONS
    x = sample(name, (400, 1, 16, 16), scale=0.7, generator=gen(), dtype=torch.float64)
    # neighbouring pixels are correlated, so the effective sample size is smaller than N: use the
    # per-map means (independent maps) for the standard error of the mean
    maps = x.mean(dim=(1, 2, 3))
    assert abs(float(maps.mean())) < Z * float(maps.std()) / math.sqrt(len(maps))
    assert float(x.std()) == pytest.approx(0.7, rel=0.03)


@pytest.mark.parametrize("name", NAMES)
def test_scale_zero_is_exact_zero_and_leaves_the_generator_alone(name: str) -> None:
    g = gen(3)
    state = g.get_state()
    out = sample(name, (2, 1, 5, 5), scale=0.0, generator=g)
    assert torch.count_nonzero(out) == 0 and torch.equal(g.get_state(), state)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(7,), (3, 1, 6, 4), (2, 3, 1, 1)])
def test_replayable_with_dtype_and_shape_kept(name: str, shape: tuple[int, ...]) -> None:
    g = gen(5)
    state = g.get_state()
    a = sample(name, shape, scale=1.0, generator=g, dtype=torch.float32)
    g.set_state(state)
    b = sample(name, shape, scale=1.0, generator=g, dtype=torch.float32)
    assert torch.equal(a, b) and a.shape == shape and a.dtype == torch.float32 and torch.isfinite(a).all()


def test_correlated_noise_has_the_kernel_autocorrelation() -> None:
    # for unit-variance white noise blurred by k on the torus, corr(shift d) = sum_u k(u) k(u + d) / sum k^2
    length = 1.5
    x = correlated_noise((2000, 1, 12, 12), scale=1.0, length=length, generator=gen(1), dtype=torch.float64)
    k = periodic_gaussian_kernel(12, 12, length)
    expected = float((k * torch.roll(k, 1, dims=-1)).sum() / k.square().sum())
    measured = float((x * torch.roll(x, 1, dims=-1)).mean() / x.square().mean())
    assert measured == pytest.approx(expected, abs=0.01)
    assert expected > 0.5
    white = sample("gaussian", (2000, 1, 12, 12), scale=1.0, generator=gen(1), dtype=torch.float64)
    assert abs(float((white * torch.roll(white, 1, dims=-1)).mean())) < 0.01


def test_pileup_noise_is_sparse_and_positively_skewed() -> None:
    x = pileup_noise((500, 1, 16, 16), scale=1.0, generator=gen(2), dtype=torch.float64)
    skew = float((x**3).mean() / x.std() ** 3)
    assert skew > 2.0  # gaussian 0
    assert float((x > 1.0).double().mean()) < 0.12  # most pixels hold little


def test_dense_shapes_fall_back_to_one_cell_laws() -> None:
    x = correlated_noise((200_000,), scale=2.0, generator=gen(4), dtype=torch.float64)
    assert float(x.std()) == pytest.approx(2.0, rel=0.01)
    p = pileup_noise((200_000,), scale=1.0, generator=gen(4), dtype=torch.float64)
    assert abs(float(p.mean())) < 0.02 and float(p.std()) == pytest.approx(1.0, rel=0.03)


def test_variants_register_and_bad_parameters_are_refused() -> None:
    if "correlated-3" not in DISTRIBUTIONS:
        register_correlated("correlated-3", 3.0)
    assert "correlated-3" in DISTRIBUTIONS
    with pytest.raises(ConfigError, match="already registered"):
        register_correlated("correlated", 1.0)
    with pytest.raises(ConfigError, match="`occupancy`"):
        pileup_noise((3, 3), scale=1.0, occupancy=0.0)
    with pytest.raises(ConfigError, match="`length`"):
        correlated_noise((3, 3), scale=1.0, length=-1.0)


@pytest.mark.parametrize("name", NAMES)
def test_per_pixel_nins_on_resnet18_draw_structured_maps(name: str) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", (2, 16, 16), 2, width=4)
    x = torch.randn(3, 2, 16, 16)
    attach_nins(model, "all", sigma=0.5, distribution=name, per="pixel", seed=0, example_input=x[:1])
    model.train()
    model(x).sum().backward()
    stem = nin_nodes(model)["conv1"]
    assert stem.last_noise is not None and stem.last_noise.shape == (3, 1, 16, 16)
    assert stem.distribution == name


def test_neighbour_noise_has_the_set_correlation_on_the_torus() -> None:
    # On the torus every pixel has four neighbours, so each pixel has variance scale^2 and every side-neighbour pair
    # correlation rho, diagonal pairs 2 w^2 / (1 + 4 w^2), pairs two apart along a side w^2 / (1 + 4 w^2).
    # Pixels 4 apart share no white draw: the 4 x 4 sub-grid of pairs of a 16 x 16 map x 2000 maps are
    # independent samples; SE of a correlation estimate (1 - r^2) / sqrt(N - 1), of a variance sqrt(2 / N).
    rho, scale, n = 0.35, 0.6, 2000
    x = neighbour_noise((n, 1, 16, 16), scale=scale, correlation=rho, generator=gen(3), dtype=torch.float64)
    w = neighbour_weight(rho)
    grid = [(r, c) for r in range(0, 16, 4) for c in range(0, 16, 4)]
    for (dr, dc), expected in (((0, 1), rho), ((1, 0), rho), ((1, 1), 2 * w * w / (1 + 4 * w * w)), ((0, 3), 0.0)):
        a = torch.cat([x[:, 0, r, c] for r, c in grid])
        b = torch.cat([x[:, 0, (r + dr) % 16, (c + dc) % 16] for r, c in grid])
        measured = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        assert abs(measured - expected) < Z * (1 - expected**2) / math.sqrt(len(a) - 1), (dr, dc)
    a = torch.cat([x[:, 0, r, c] for r, c in grid])
    assert abs(float(a.square().mean()) / scale**2 - 1) < Z * math.sqrt(2 / len(a))
    # the kernel's exact neighbour correlation, sum_u k(u) k(u + e) / sum k^2, is rho
    k = neighbour_kernel(16, 16, rho)
    assert float((k * torch.roll(k, 1, dims=-1)).sum() / k.square().sum()) == pytest.approx(rho, rel=1e-12)
    with pytest.raises(ConfigError, match="`correlation` must be a number in"):
        neighbour_noise((2, 4, 4), scale=1.0, correlation=0.7)
    if "neighbour-0.1" not in DISTRIBUTIONS:
        register_neighbour("neighbour-0.1", 0.1)
    assert "neighbour-0.1" in DISTRIBUTIONS
