"""Phase classifier and decay fits on synthetic trajectories with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ninr.dynamics.decay import NO_DECAY_TAU_FACTOR, fit_decay
from ninr.dynamics.phases import (
    CATAPULT_MIN_GROWTH,
    DECAY_FLOOR_DROP,
    DECOUPLED_MAX_CHANGE,
    PEAK_WINDOW,
    PHASES,
    PLATEAU_MAX_RISE,
    classify_nodes,
    classify_phase,
    oscillates,
)
from ninr.errors import ConfigError

T = np.arange(400, dtype=np.float64)
RNG = np.random.default_rng(0)


def wander(scale: float = 0.03) -> np.ndarray:
    """A decoupled NIW norm: a small random walk around its start."""
    return 1.0 + np.cumsum(RNG.normal(0, scale / math.sqrt(len(T)), len(T)))


SYNTHETIC = {
    "decoupled": wander(),
    "decay": 0.1 + 0.9 * np.exp(-T / 60),
    "catapult": 1.0 + 4.0 * np.exp(-((T - 50) ** 2) / 400),  # grows 5x, then comes back
    "divergent": np.exp(T / 100),
}


@pytest.mark.parametrize("phase", PHASES)
def test_classifier_labels_each_phase(phase: str) -> None:
    assert classify_phase(SYNTHETIC[phase]).phase == phase


def test_divergence_from_nan_status_and_loss() -> None:
    assert classify_phase([1.0, 2.0, math.nan]).phase == "divergent"
    assert classify_phase([1.0, 0.9], status="diverged").phase == "divergent"
    assert classify_phase([1.0, 0.5, 0.4], losses=[2.3, 1.0, math.inf]).phase == "divergent"
    assert classify_phase([1.0, 0.5, 0.4], losses=[2.3, 30.0, 40.0]).phase == "divergent"
    assert classify_phase([1.0, 0.5, 0.4], losses=[2.3, 1.0, 0.5]).phase == "decay"


def test_growth_still_rising_at_the_end_is_divergent_not_catapult() -> None:
    rising = np.exp(T / 150)  # peak in the final window: no return seen
    assert classify_phase(rising).phase == "divergent"
    # Fast enough that the final window's mean is under half its last samples: still not a catapult.
    assert classify_phase(np.exp(T / 10)).phase == "divergent"


def test_thresholds_are_where_documented() -> None:
    just_decoupled = np.linspace(1.0, 1.0 - 0.9 * DECOUPLED_MAX_CHANGE, 100)
    just_decay = np.linspace(1.0, 1.0 - 1.2 * DECOUPLED_MAX_CHANGE, 100)
    assert classify_phase(just_decoupled).phase == "decoupled"
    assert classify_phase(just_decay).phase == "decay"
    bump = np.concatenate([np.linspace(1, 0.95 * CATAPULT_MIN_GROWTH, 50), np.linspace(1.4, 0.2, 50)])
    assert classify_phase(bump).phase == "decay"  # below the growth threshold: not a catapult


def test_a_decay_to_a_floor_that_rises_again_is_decay_but_a_shallow_dip_is_not() -> None:
    # As in-NINR at sigma 32 over 20 epochs: down to ~0.45x early, then the random-walk floor climbs
    # back to ~0.9x of the start.
    floor = 0.45 + 0.5 * T / T[-1]
    decayed = np.maximum(np.exp(-T / 20), floor) + wander(0.01) - 1.0
    verdict = classify_phase(decayed)
    assert verdict.phase == "decay" and verdict.final_ratio > 1.0 - DECOUPLED_MAX_CHANGE
    dip = 1.0 - 0.9 * DECAY_FLOOR_DROP * np.exp(-(((T - 200) / 30) ** 2))  # down to 0.64x and back
    assert classify_phase(dip).phase == "decoupled"
    deep = 1.0 - 1.1 * DECAY_FLOOR_DROP * np.exp(-(((T - 200) / 30) ** 2))  # down to 0.56x and back
    assert classify_phase(deep).phase == "decay"


def test_a_short_catapult_in_a_long_run_is_a_catapult_but_one_noisy_sample_is_not() -> None:
    # A 400-step run sampled every step: the norm jumps to ~2.8x within a few steps, stays up for ~30
    # steps and falls back to its start: a catapult, though it spans under 10% of the run.
    spike = np.exp(-(((T - 20) / 15) ** 2))
    assert classify_phase(1.0 + 1.8 * spike).phase == "catapult"
    # A single outlier sample (here 3.25x) is averaged over PEAK_WINDOW samples: no peak, no catapult.
    outlier = np.ones(400)
    outlier[100] = 1.0 + 0.9 * (CATAPULT_MIN_GROWTH - 1.0) * PEAK_WINDOW  # window mean just below the threshold
    assert classify_phase(outlier).phase == "decoupled"


def test_nodes_are_classified_one_by_one_and_the_run_takes_the_leading_phase() -> None:
    quiet = wander()
    decaying = SYNTHETIC["decay"]
    catapult = SYNTHETIC["catapult"]
    # The total norm of a large quiet node and a small catapulting one would read decoupled.
    total = np.sqrt((10 * quiet) ** 2 + catapult**2)
    assert classify_phase(total).phase == "decoupled"
    verdict = classify_nodes({"fc1": 10 * quiet, "out": catapult})
    assert verdict.phase == "catapult" and verdict.node == "out"
    assert verdict.nodes == {"fc1": "decoupled", "out": "catapult"}
    assert classify_nodes({"fc1": quiet, "fc2": decaying}).phase == "decay"
    assert classify_nodes({"fc1": catapult, "out": SYNTHETIC["divergent"]}).phase == "divergent"
    assert classify_nodes({"fc1": quiet}, status="diverged").phase == "divergent"
    # A node that only drifted up (divergent, below the growth threshold) yields to one that decays,
    # and decides the run when nothing else happens.
    drift = np.linspace(1.0, 1.0 + 1.5 * DECOUPLED_MAX_CHANGE, 400)
    assert classify_phase(drift).phase == "divergent" and classify_phase(drift).drift
    assert not classify_phase(SYNTHETIC["divergent"]).drift
    assert classify_nodes({"fc1": drift, "out": decaying}).phase == "decay"
    assert classify_nodes({"fc1": drift, "out": quiet}).phase == "divergent"
    # A node kicked up past the growth threshold that then stays on a plateau is bounded: drift, too.
    plateau = np.minimum(1.0 + T / 10, 2.0) + 0.02 * np.sin(T)  # 2x within 10 steps, flat after
    assert classify_phase(plateau).phase == "divergent" and classify_phase(plateau).drift
    assert classify_nodes({"fc1": plateau, "out": catapult}).phase == "catapult"
    assert classify_nodes({"fc1": plateau, "out": quiet}).phase == "divergent"
    # Still growing over the second half, if only by a little more than the plateau rule allows: no drift.
    growing = np.where(T < 200, 1.0, 2.0 * np.exp(0.6 * (T - 200) / 200))  # 1.82x over the second half
    assert growing[-40:].mean() > PLATEAU_MAX_RISE * growing[200:].mean()  # (1.25x; 1.62x growth is the edge)
    assert not classify_phase(growing).drift
    assert classify_nodes({"fc1": growing, "out": catapult}).phase == "divergent"
    # Among nodes in the leading phase, the one with the largest peak decides.
    assert classify_nodes({"a": catapult, "b": 1.0 + 2.0 * (catapult - 1.0)}).node == "b"
    assert set(verdict.as_dict()) >= {"phase", "node", "nodes", "peak_ratio", "final_ratio"}
    with pytest.raises(ConfigError, match="at least one node"):
        classify_nodes({})


def test_oscillation_flag() -> None:
    alternating = 0.7 ** T[:40] * (-1.0) ** T[:40]
    assert oscillates(alternating)
    assert not oscillates(0.7 ** T[:40])
    result = classify_phase(np.abs(alternating), signed=alternating)
    assert result.phase == "decay" and result.oscillating is True


def test_classifier_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="at least 2 samples"):
        classify_phase([1.0])
    with pytest.raises(ConfigError, match="must be > 0"):
        classify_phase([0.0, 1.0])


# ----------------------------------------------------------------------------- decay fits


@pytest.mark.parametrize("tau", [0.5, 3.0, 40.0, 900.0])
def test_fit_recovers_exact_decay_time(tau: float) -> None:
    fit = fit_decay(T, 2.0 * np.exp(-T / tau) + 0.3)
    assert fit.ok and fit.tau == pytest.approx(tau, rel=1e-4)
    assert fit.floor == pytest.approx(0.3, abs=1e-4) and fit.amplitude == pytest.approx(2.0, rel=1e-4)


def test_fit_with_fixed_floor() -> None:
    fit = fit_decay(T[:50], 0.8 ** T[:50], floor=0.0)
    assert fit.ok and fit.tau == pytest.approx(-1 / math.log(0.8), rel=1e-6)


def test_fit_uncertainty_is_calibrated() -> None:
    """Over noisy replicas the error bar covers the truth about as often as a standard error should."""
    tau, covered, errs = 50.0, 0, []
    rng = np.random.default_rng(1)
    for _ in range(40):
        fit = fit_decay(T[::4], np.exp(-T[::4] / tau) + 0.2 + rng.normal(0, 0.02, len(T[::4])))
        assert fit.ok
        covered += abs(fit.tau - tau) <= 2 * fit.tau_err
        errs.append(fit.tau_err / tau)
    assert covered >= 34  # ~95% expected for +-2 standard errors
    assert 0.005 < float(np.median(errs)) < 0.2


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.ones(100), "flat"),
        (np.full(100, 0.1), "flat"),
        (1.0 - np.exp(-T[:100] / 10), "rises"),
        (np.exp(-T[:100] / (5 * NO_DECAY_TAU_FACTOR * 100)), "span"),
        (np.array([1.0, 0.5, 0.2]), "fewer than"),
    ],
)
def test_no_decay_is_reported(values: np.ndarray, reason: str) -> None:
    fit = fit_decay(np.arange(len(values)), values)
    assert not fit.ok and reason in fit.reason


def test_fit_rejects_bad_times() -> None:
    with pytest.raises(ConfigError, match="strictly increasing"):
        fit_decay([0, 0, 0, 0, 0], [1, 0.5, 0.3, 0.2, 0.1])
    with pytest.raises(ConfigError, match="one length"):
        fit_decay([0, 1], [1.0])
