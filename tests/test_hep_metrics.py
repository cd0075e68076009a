"""ROC, AUC, background rejection and its bootstrap intervals against brute-force oracles and closed forms (two
Gaussian score distributions, whose ROC is known through the normal quantile)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from ninr.errors import ConfigError, DataError
from ninr.hep.metrics import (
    auc,
    background_efficiency,
    background_rejection,
    bootstrap_background_efficiency,
    bootstrap_counts,
    percentile_interval,
    rejection_interval,
    roc_curve,
    roc_on_grid,
    weighted_background_efficiency,
)


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


# ---------------------------------------------------------------- closed forms and the bootstrap

GAUSS = NormalDist()
SHIFT = 1.5  # signal ~ N(SHIFT, 1), background ~ N(0, 1)
EFFS = (0.5, 0.7, 0.9)


def gaussian_bkg_eff(e: float, d: float = SHIFT) -> float:
    """eps_B at eps_S = e for signal N(d, 1) against background N(0, 1): the cut t passing a fraction e of the signal
    is t = d - Phi^-1(e), and a background event passes it with probability 1 - Phi(t) = Phi(Phi^-1(e) - d)."""
    return GAUSS.cdf(GAUSS.inv_cdf(e) - d)


def gaussian_bkg_eff_sd(e: float, n_sig: int, n_bkg: int, d: float = SHIFT) -> float:
    """Large-sample standard deviation of the empirical eps_B at fixed eps_S (the delta method on the two empirical
    CDFs): var = p (1 - p) / n_bkg + (f_B(t) / f_S(t))^2 e (1 - e) / n_sig, with p the true eps_B and t the cut."""
    t = d - GAUSS.inv_cdf(e)
    p = gaussian_bkg_eff(e, d)
    slope = GAUSS.pdf(t) / GAUSS.pdf(t - d)
    return math.sqrt(p * (1 - p) / n_bkg + slope**2 * e * (1 - e) / n_sig)


def gaussian_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n signal then n background scores."""
    return np.r_[rng.normal(SHIFT, 1.0, n), rng.normal(0.0, 1.0, n)], np.r_[np.ones(n), np.zeros(n)].astype(int)


def test_rejection_of_two_gaussians_matches_the_normal_quantile() -> None:
    n = 200_000
    s, y = gaussian_sample(np.random.default_rng(3), n)
    for e in EFFS:
        sd = gaussian_bkg_eff_sd(e, n, n)
        # 5 standard deviations of the estimate: a false failure has probability 6e-7
        assert background_efficiency(s, y, e) == pytest.approx(gaussian_bkg_eff(e), abs=5 * sd)
        assert background_rejection(s, y, e) == pytest.approx(1 / gaussian_bkg_eff(e), rel=5 * sd / gaussian_bkg_eff(e))
    assert gaussian_bkg_eff(0.7) == pytest.approx(0.16463, abs=1e-5)  # Phi(0.5244 - 1.5) = Phi(-0.9756), from a table


def test_weighted_efficiency_equals_the_resampled_test_set_with_ties() -> None:
    rng = np.random.default_rng(4)
    s = np.round(rng.normal(size=300), 1)  # about 50 distinct scores: many ties within and across classes
    y = rng.integers(0, 2, 300)
    counts = bootstrap_counts(y, 40, generator=np.random.default_rng(5))
    effs = (0.5, 0.7, 0.9, 1.0)
    got = weighted_background_efficiency(s, y, counts, effs)
    for row, c in zip(got, counts, strict=True):
        idx = np.repeat(np.arange(len(s)), c)  # the resample written out event by event
        want = [background_efficiency(s[idx], y[idx], e) for e in effs]
        # the same float64 operations on the same integer counts: equal up to the last bit of the interpolation
        assert row == pytest.approx(want, abs=1e-12)
    ones = weighted_background_efficiency(s, y, np.ones((1, len(s))), effs)[0]
    assert ones == pytest.approx([background_efficiency(s, y, e) for e in effs], abs=1e-12)


def test_bootstrap_resamples_are_stratified_and_replayable() -> None:
    y = np.array([1] * 30 + [0] * 70)
    counts = bootstrap_counts(y, 500, generator=np.random.default_rng(6))
    assert counts.shape == (500, 100)
    assert (counts[:, :30].sum(axis=1) == 30).all() and (counts[:, 30:].sum(axis=1) == 70).all()
    # each event is drawn Binomial(30, 1/30) times (signal): mean 1 within 5 standard errors of the 500 x 30 draws
    assert counts[:, :30].mean() == pytest.approx(1.0, abs=5 * math.sqrt((1 - 1 / 30) / (500 * 30)))
    again = bootstrap_counts(y, 500, generator=np.random.default_rng(6))
    other = bootstrap_counts(y, 500, generator=np.random.default_rng(7))
    assert (again == counts).all() and not (other == counts).all()
    s = np.random.default_rng(8).normal(size=100) + y
    a = bootstrap_background_efficiency(s, y, EFFS, replicates=50, generator=np.random.default_rng(9))
    b = bootstrap_background_efficiency(s, y, EFFS, replicates=50, generator=np.random.default_rng(9))
    assert a.shape == (50, 3) and (a == b).all()


def test_percentile_and_rejection_intervals() -> None:
    values = np.arange(101, dtype=float)  # quantile q of 0..100 with linear interpolation is 100 q
    assert percentile_interval(values) == pytest.approx((2.5, 97.5))
    assert percentile_interval(values, 0.5) == pytest.approx((25.0, 75.0))
    eps_b = np.linspace(0.1, 0.5, 101)  # quantiles 0.11 and 0.49
    assert rejection_interval(eps_b) == pytest.approx((1 / 0.49, 1 / 0.11))
    assert rejection_interval(np.r_[np.zeros(10), np.full(91, 0.2)]) == (5.0, math.inf)  # 2.5% of replicates at 0
    with pytest.raises(ConfigError, match="confidence"):
        percentile_interval(values, 1.0)


def bootstrap_coverage(draws: int, n: int, replicates: int, seed: int) -> np.ndarray:
    """Fraction of ``draws`` test sets (n signal, n background, two Gaussians) whose 95% percentile interval of eps_B
    (and so of 1/eps_B) contains the true value, per working point of :data:`EFFS`."""
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(EFFS))
    truth = [gaussian_bkg_eff(e) for e in EFFS]
    for _ in range(draws):
        s, y = gaussian_sample(rng, n)
        boot = bootstrap_background_efficiency(s, y, EFFS, replicates=replicates, generator=rng)
        for j, t in enumerate(truth):
            lo, hi = rejection_interval(boot[:, j])
            hits[j] += lo <= 1 / t <= hi
    return hits / draws


def coverage_bound(draws: int) -> float:
    """Allowed distance of a measured coverage from 0.95: 4 binomial standard deviations of a fraction over ``draws``
    (a false failure has probability 6e-5 per working point), plus 0.02 for the percentile bootstrap's own
    finite-sample error at n = 200 per class (measured 0.955-0.98 over 200 draws, 0.964-0.969 over 1000 draws of
    300 per class with 400 replicates: a percentile interval of a plug-in quantile errs on the wide side)."""
    return 4 * math.sqrt(0.95 * 0.05 / draws) + 0.02


def test_bootstrap_interval_covers_the_true_rejection_at_its_level() -> None:
    draws = 200
    coverage = bootstrap_coverage(draws, n=200, replicates=200, seed=10)
    assert np.all(np.abs(coverage - 0.95) <= coverage_bound(draws)), coverage


@pytest.mark.slow
def test_bootstrap_coverage_on_many_draws() -> None:
    draws = 2000
    coverage = bootstrap_coverage(draws, n=300, replicates=400, seed=11)
    assert np.all(np.abs(coverage - 0.95) <= coverage_bound(draws)), coverage
