"""The linear-regression NIN model: closed forms against ninr's own simulation.

Tolerances (the closed form must hold to a few percent, not a factor):
- GD decay rates of |a_t| (mean of ln|a_t| over seeds, fitted slope): 2% relative, in all of
  decay, oscillating and divergent (growth rate) phases (the last ones in a slow test);
- GD phase boundaries measured by bisection on simulations: 2% relative (decoupled|decay: 3%);
- SGD (B = 64) typical decay rates: 5% (the per-step factor fluctuates, 8 seeds);
- SGD stationary variance of the NIW under label noise: 10% (one long run, ~3000 effective samples);
- quadrature of E ln|1 - k X / B| against 400k Monte Carlo draws: 4 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ninr.dynamics.theory.boundaries import measure_boundaries
from ninr.dynamics.theory.chi2 import chi2_median, expected_log_abs_factor
from ninr.dynamics.theory.linear import (
    control_parameter,
    decay_rate,
    decay_time,
    mean_trajectory,
    phase_boundaries,
    second_moment_factor,
    sigma_for_k,
    stationary_variance,
)
from ninr.dynamics.theory.simulate import LinearSetup, simulate_linear
from ninr.errors import ConfigError

GD = {"eta": 0.001, "n_train": 16384, "dim": 1}


@pytest.mark.parametrize("b", [1, 4, 32, 512])
@pytest.mark.parametrize("k", [0.4, 1.0, 1.7, 2.4])
def test_chi2_expectation_against_monte_carlo(b: int, k: float) -> None:
    x = np.random.default_rng(0).chisquare(b, 400_000)
    v = np.log(np.abs(1 - k * x / b))
    assert abs(expected_log_abs_factor(k, b) - v.mean()) < 4 * v.std() / math.sqrt(len(v))


def test_chi2_median_and_second_moment() -> None:
    assert chi2_median(1) == pytest.approx(0.454936423119573, rel=1e-8)
    assert chi2_median(2) == pytest.approx(2 * math.log(2), rel=1e-8)
    x = np.random.default_rng(1).chisquare(16, 400_000)
    v = (1 - 0.8 * x / 16) ** 2
    assert abs(second_moment_factor(0.8, 16) - v.mean()) < 4 * v.std() / math.sqrt(len(v))


def test_closed_forms() -> None:
    assert control_parameter(0.1, 2.0) == pytest.approx(0.4)
    assert sigma_for_k(0.4, 0.1) == pytest.approx(2.0)
    assert decay_rate(0.5) == pytest.approx(math.log(2))
    assert decay_rate(1.5) == pytest.approx(math.log(2))  # oscillating: |1 - k| < 1
    assert decay_time(2.5) == math.inf  # divergent
    assert decay_rate(0.5, 10**6) == pytest.approx(math.log(2), rel=1e-5)  # B -> infinity
    np.testing.assert_allclose(mean_trajectory(2.0, 0.25, 3), [2.0, 1.5, 1.125, 0.84375])
    b = phase_boundaries(200)
    assert (b.decay_oscillating, b.oscillating_divergent) == (1.0, 2.0)
    assert b.phase(1e-5) == "decoupled" and b.phase(0.5) == "decay"
    assert b.phase(1.5) == "oscillating" and b.phase(2.5) == "divergent"
    sgd = phase_boundaries(200, 16)
    assert sgd.oscillating_divergent > 2.0 > 2 * 16 / 18  # typical runs outlive the mean square
    with pytest.raises(ConfigError, match="`k` must be a finite number >= 0"):
        decay_rate(-1.0)


def _measured_rate(k: float, batch: int | None, seeds: int, setup: dict[str, float]) -> float:
    """Fitted slope of the seed-mean of ln|a_t| while |a| is above the w-a coupling floor."""
    eta = setup["eta"]
    horizon = int(min(200, max(4, math.ceil(math.log(1e3) / abs(decay_rate(k, batch or int(setup["n_train"])))))))
    logs = [
        np.log(
            np.abs(
                simulate_linear(
                    LinearSetup(sigma=math.sqrt(k / eta), steps=horizon, batch_size=batch, seed=s, **setup)
                ).niw
            )
        )
        for s in range(seeds)
    ]  # type: ignore[arg-type]
    mean = np.mean(logs, axis=0)
    return -float(np.polyfit(np.arange(len(mean)), mean, 1)[0])


@pytest.mark.parametrize("k", [0.05, 0.3, 0.6])
def test_gd_decay_rate_matches_closed_form(k: float) -> None:
    setup = {**GD, "n_train": 2048}
    assert _measured_rate(k, None, 4, setup) == pytest.approx(decay_rate(k, 2048), rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("k", [0.05, 0.3, 0.6, 1.5, 1.9, 2.3])
def test_gd_decay_rate_matches_closed_form_all_phases(k: float) -> None:
    # N = 16384 keeps the per-step fluctuation of the factor small enough for a 2% test near k = 2
    assert _measured_rate(k, None, 8, GD) == pytest.approx(decay_rate(k, GD["n_train"]), rel=0.02)


def test_fixed_noise_gd_is_deterministic_exponential() -> None:
    setup = LinearSetup(sigma=math.sqrt(0.3 / GD["eta"]), steps=20, noise="fixed", **GD)  # type: ignore[arg-type]
    traj = simulate_linear(setup)
    k_hat = setup.eta * traj.extra["fixed_noise_power"]
    slope = -np.polyfit(np.arange(len(traj.niw)), np.log(np.abs(traj.niw)), 1)[0]
    assert slope == pytest.approx(decay_rate(k_hat), rel=0.01)


@pytest.mark.parametrize("k", [0.1, 0.4])
def test_sgd_typical_decay_rate(k: float) -> None:
    setup = {"eta": 0.001, "n_train": 1024, "dim": 1}
    assert _measured_rate(k, 64, 8, setup) == pytest.approx(decay_rate(k, 64), rel=0.05)


def test_sgd_stationary_variance_with_label_noise() -> None:
    setup = LinearSetup(
        sigma=math.sqrt(0.5 / 0.01),
        eta=0.01,
        steps=3000,
        batch_size=32,
        n_train=2048,
        dim=2,
        label_noise=0.5,
        a0=0.0 + 1e-12,
        seed=0,
    )
    traj = simulate_linear(setup)
    measured = float(np.mean(traj.niw[100:] ** 2))
    assert measured == pytest.approx(stationary_variance(0.01, setup.sigma, 0.25, 32), rel=0.1)


@pytest.mark.slow
def test_gd_phase_boundaries_match_closed_form() -> None:
    base = LinearSetup(sigma=1.0, steps=100, eta=0.001, n_train=256, dim=1)
    measured = measure_boundaries(base, seeds=(0,), rel_tol=2e-3)
    predicted = phase_boundaries(100, 256)
    assert measured.decoupled_decay == pytest.approx(predicted.decoupled_decay, rel=0.03)
    assert measured.decay_oscillating == pytest.approx(predicted.decay_oscillating, rel=0.02)
    assert measured.oscillating_divergent == pytest.approx(predicted.oscillating_divergent, rel=0.02)
