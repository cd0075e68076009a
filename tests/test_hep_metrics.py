"""ROC, AUC and background rejection against brute-force oracles and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from ninr.errors import ConfigError, DataError
from ninr.hep.metrics import auc, background_efficiency, background_rejection, roc_curve, roc_on_grid


def brute_roc(s: np.ndarray, y: np.ndarray) -> set[tuple[float, float]]:
    """(eps_b, eps_s) at every threshold 'score >= t', t over all scores and +inf."""
    pts = {(0.0, 0.0)}
    for t in np.unique(s):
        sel = s >= t
        pts.add((float(sel[y == 0].mean()), float(sel[y == 1].mean())))
    return pts


def test_roc_matches_the_brute_force_thresholds() -> None:
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=200), 1)  # many ties
    y = rng.integers(0, 2, 200)
    eps_b, eps_s, thr = roc_curve(s, y)
    assert set(zip(eps_b.tolist(), eps_s.tolist(), strict=True)) == brute_roc(s, y)
    assert np.all(np.diff(eps_b) >= 0) and np.all(np.diff(eps_s) >= 0) and np.all(np.diff(thr) < 0)
    assert (eps_b[-1], eps_s[-1]) == (1.0, 1.0)


def test_auc_is_the_mann_whitney_probability() -> None:
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=300) + 0.5 * (y := rng.integers(0, 2, 300)), 1)
    sig, bkg = s[y == 1], s[y == 0]
    mw = ((sig[:, None] > bkg[None, :]).sum() + 0.5 * (sig[:, None] == bkg[None, :]).sum()) / (len(sig) * len(bkg))
    assert auc(s, y) == pytest.approx(mw, rel=1e-12)


def test_rejection_of_perfect_random_and_inverted_classifiers() -> None:
    y = np.array([0] * 1000 + [1] * 1000)
    perfect = y.astype(float)
    assert background_rejection(perfect, y, 0.7) == float("inf") and auc(perfect, y) == 1.0
    # a classifier whose scores do not depend on the label: eps_B = eps_S in expectation
    rng = np.random.default_rng(2)
    s = rng.random(2000)
    assert background_efficiency(s, y, 0.5) == pytest.approx(0.5, abs=0.05)
    assert background_rejection(-perfect, y, 0.7) == pytest.approx(1.0)  # everything must pass to keep any signal


def test_background_efficiency_interpolates_between_roc_points() -> None:
    # signal scores 4, 3; background 3.5, 1: ROC points (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    s = np.array([4.0, 3.0, 3.5, 1.0])
    y = np.array([1, 1, 0, 0])
    assert background_efficiency(s, y, 0.5) == 0.0  # reached exactly at threshold 4
    assert background_efficiency(s, y, 0.75) == pytest.approx(0.5)  # between (.5,.5) and (.5,1)
    assert background_efficiency(s, y, 1.0) == pytest.approx(0.5)
    assert roc_on_grid(s, y, [0.5, 1.0]) == [0.0, 0.5]


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(DataError, match="both signal and background"):
        roc_curve(np.ones(3), np.ones(3))
    with pytest.raises(DataError, match="same length"):
        roc_curve(np.ones(3), np.ones(2))
    with pytest.raises(DataError, match="finite"):
        roc_curve(np.array([np.nan, 1.0]), np.array([0, 1]))
    with pytest.raises(ConfigError, match="signal_efficiency"):
        background_efficiency(np.array([0.0, 1.0]), np.array([0, 1]), 0.0)
