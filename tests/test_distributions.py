"""The noise samplers' own laws: kurtosis, support, spikes, parameters, the fused gaussian path.

The contracts every registered distribution keeps (shape and dtype, exact zeros at scale 0, replayable
draws, no global RNG, mean zero and std ``scale``) are checked in tests/test_registries.py.

Tolerances are stated as multiples of the standard error of the estimate on N = 10^6 draws:
the mean's is ``scale / sqrt(N)``; the sample standard deviation's is about
``scale * sqrt((kurtosis - 1) / (4 N))`` with the law's kurtosis (gaussian 3, uniform 1.8,
laplace 6, impulse 1 / density).
"""

from __future__ import annotations

import math

import pytest
import torch

from ninr.errors import ConfigError, UnknownNameError
from ninr.functional.noise import DISTRIBUTIONS, IMPULSE_DENSITY, impulse, sample

N = 1_000_000
SCALE = 0.7
KURTOSIS = {"gaussian": 3.0, "uniform": 1.8, "laplace": 6.0, "impulse": 1.0 / IMPULSE_DENSITY}
Z = 5.0  # standard errors allowed: a correct sampler fails with probability < 1e-6 per check


def draw(name: str, seed: int = 0, n: int = N, scale: float = SCALE, **kw: object) -> torch.Tensor:
    return sample(name, (n,), scale=scale, generator=torch.Generator().manual_seed(seed), **kw)  # type: ignore[arg-type]


def test_registry_holds_the_four_documented_distributions() -> None:
    assert {"gaussian", "uniform", "laplace", "impulse"} <= set(DISTRIBUTIONS.names())


@pytest.mark.parametrize("name", sorted(KURTOSIS))
def test_kurtosis_identifies_the_law(name: str) -> None:
    # The fourth moment tells the laws apart at equal std: guards against e.g. a mis-scaled gaussian.
    x = draw(name, seed=1, dtype=torch.float64)
    kurt = float((x**4).mean() / (x**2).mean() ** 2)
    assert kurt == pytest.approx(KURTOSIS[name], rel=0.05)


def test_uniform_support_is_plus_minus_sqrt3_scale() -> None:
    x = draw("uniform")
    bound = math.sqrt(3) * SCALE
    assert float(x.abs().max()) <= bound
    assert float(x.abs().max()) > 0.999 * bound


def test_laplace_mean_absolute_value_is_its_scale_parameter() -> None:
    # E|X| = b = scale / sqrt(2) for Laplace(0, b); sd of |X| is b, so the standard error is b / sqrt(N).
    b = SCALE / math.sqrt(2)
    assert abs(float(draw("laplace", dtype=torch.float64).abs().mean()) - b) < Z * b / math.sqrt(N)


def test_impulse_is_sparse_plus_minus_spikes() -> None:
    x = draw("impulse")
    hit = x != 0
    amplitude = SCALE / math.sqrt(IMPULSE_DENSITY)
    p = IMPULSE_DENSITY
    assert abs(float(hit.double().mean()) - p) < Z * math.sqrt(p * (1 - p) / N)
    assert torch.allclose(x[hit].abs(), torch.full_like(x[hit], amplitude))
    assert abs(float((x > 0).double().mean()) - p / 2) < Z * math.sqrt(p / 2 / N)


def test_impulse_density_is_a_parameter() -> None:
    x = impulse((N,), scale=SCALE, generator=torch.Generator().manual_seed(4), density=0.5)
    assert abs(float((x != 0).double().mean()) - 0.5) < Z * 0.5 / math.sqrt(N)
    assert abs(float(x.std()) - SCALE) < Z * SCALE * math.sqrt(1 / (4 * N))  # kurtosis 2
    with pytest.raises(ConfigError, match="density"):
        impulse((3,), scale=1.0, density=1.5)


def test_bad_names_and_scales_are_rejected() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'laplace'"):
        sample("laplase", (3,), scale=1.0)
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ConfigError, match="`scale` must be a finite number >= 0"):
            sample("gaussian", (3,), scale=bad)


@pytest.mark.parametrize("n", [7, 64, 4096])
def test_gaussian_is_a_scaled_standard_normal_from_the_same_stream(n: int) -> None:
    # Runs recorded before the fused sampler replay: the draw is randn * scale (to an ulp below 16
    # elements, where PyTorch takes a scalar path) and leaves the generator where randn leaves it.
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    fused = sample("gaussian", (n,), scale=370.0, generator=g1)
    reference = torch.randn((n,), generator=g2) * 370.0
    # Below 16 elements the fused draw rounds 370 z once from double, the reference rounds z and then 370 z: three
    # roundings of relative size <= u = 2^-24 apart, 3u = 1.8e-7 < rtol 2e-7. From 16 on both run one vectorised
    # kernel that rounds z, then 370 z, in float32: the same operations on one machine, so the same bits.
    torch.testing.assert_close(fused, reference, rtol=2e-7, atol=0.0)
    if n >= 16:
        assert torch.equal(fused, reference)
    assert torch.equal(g1.get_state(), g2.get_state())
