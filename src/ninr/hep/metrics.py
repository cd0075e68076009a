"""Classifier metrics of photon identification: ROC curve, AUC, background rejection. Pure numpy functions.

Convention: signal is label 1 (prompt photon), a higher score means more signal-like. The signal
efficiency eps_S is the true-positive rate, the background efficiency eps_B the false-positive rate,
and the background rejection is 1 / eps_B at a chosen eps_S (infinite when no background passes).

Its uncertainty from the finite test set: stratified bootstrap resamples of the test events
(:func:`bootstrap_counts`), eps_B on each of them at once (:func:`weighted_background_efficiency`), and percentile
intervals (:func:`percentile_interval`, :func:`rejection_interval`). Every draw comes from the generator passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ninr.errors import DataError, fail


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise DataError(f"scores and labels must have the same length, got {s.shape[0]} and {y.shape[0]}")
    if not np.all(np.isin(y, (0, 1))):
        raise DataError("labels must be 0 (background) or 1 (signal)")
    if y.sum() == 0 or y.sum() == len(y):
        raise DataError(f"need both signal and background examples, got {int(y.sum())} signal of {len(y)}")
    if not np.all(np.isfinite(s)):
        raise DataError("scores must be finite")
    return s, y.astype(bool)


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve: one point per distinct score threshold, from (0, 0) to (1, 1).

    A point at threshold t counts examples with score >= t as selected.

    Returns:
        ``(eps_b, eps_s, thresholds)``: background and signal efficiencies (non-decreasing) and the
        thresholds (decreasing; the first is +inf, selecting nothing).
    """
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # one point per distinct score
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    eps_s = np.r_[0.0, tp / y.sum()]
    eps_b = np.r_[0.0, fp / (~y).sum()]
    return eps_b, eps_s, np.r_[np.inf, s[last_of_tie]]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability that a signal scores above a background; ties count half)."""
    eps_b, eps_s, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(eps_b) * (eps_s[1:] + eps_s[:-1]) / 2))


def background_efficiency(scores: np.ndarray, labels: np.ndarray, signal_efficiency: float) -> float:
    """eps_B at signal efficiency ``signal_efficiency``, linearly interpolated between ROC points.

    Interpolation between two neighbouring thresholds is the operating point reached by choosing
    between them at random, so every eps_S in (0, 1] is achievable.
    """
    if not 0 < signal_efficiency <= 1:
        raise fail("signal_efficiency", "a number in (0, 1]", signal_efficiency)
    eps_b, eps_s, _ = roc_curve(scores, labels)
    i = int(np.searchsorted(eps_s, signal_efficiency, side="left"))  # first point with eps_s >= target
    if eps_s[i] == signal_efficiency:
        return float(eps_b[i])
    t = (signal_efficiency - eps_s[i - 1]) / (eps_s[i] - eps_s[i - 1])
    return float(eps_b[i - 1] + t * (eps_b[i] - eps_b[i - 1]))


def background_rejection(scores: np.ndarray, labels: np.ndarray, signal_efficiency: float) -> float:
    """1 / eps_B at ``signal_efficiency`` (``inf`` when no background passes)."""
    eb = background_efficiency(scores, labels, signal_efficiency)
    return float("inf") if eb == 0 else 1.0 / eb


def roc_on_grid(scores: np.ndarray, labels: np.ndarray, grid: Sequence[float]) -> list[float]:
    """eps_B at each signal efficiency of ``grid`` (a fixed grid lets curves be averaged over seeds)."""
    return [background_efficiency(scores, labels, float(g)) for g in grid]


# ---------------------------------------------------------------- bootstrap over test events

BOOTSTRAP_REPLICATES = 1000
"""Bootstrap replicates per test set. The standard error of the 2.5% quantile of B replicates is
sqrt(q (1 - q) / B) / f, with f the replicates' density there: for replicates spread like a normal of std s,
f = phi(1.96) / s = 0.058 / s, so at B = 1000 the quantile's Monte Carlo error is 0.085 s, 4% of the interval's
half-width 1.96 s."""

CONFIDENCE = 0.95
"""Two-sided level of the bootstrap percentile intervals (the level of the project's Student-t intervals)."""


def bootstrap_counts(labels: np.ndarray, replicates: int, *, generator: np.random.Generator) -> np.ndarray:
    """Stratified bootstrap resamples of a test set, as counts: ``(replicates, n)`` integers.

    Each replicate draws ``n_signal`` signal events from the signal events and ``n_background`` background events
    from the background events, with replacement (row ``b``, column ``i``: how often event ``i`` is drawn). Keeping
    the class counts fixed keeps eps_S and eps_B defined in every replicate and matches how a test set is built
    (candidates per class set by the generation), so the spread is that of the scores alone.
    """
    y = np.asarray(labels).reshape(-1).astype(bool)
    if replicates < 1:
        raise fail("replicates", "an integer >= 1", replicates)
    counts = np.zeros((replicates, len(y)), dtype=np.int64)
    for cls in (True, False):
        idx = np.flatnonzero(y == cls)
        if len(idx):
            counts[:, idx] = generator.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=replicates)
    return counts


def weighted_background_efficiency(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, efficiencies: Sequence[float]
) -> np.ndarray:
    """eps_B at each signal efficiency for each row of ``weights`` (``(R, n)`` event counts): ``(R, len(eff))``.

    Row ``r`` is :func:`background_efficiency` of the test set in which event ``i`` appears ``weights[r, i]``
    times (events of equal score form one threshold, as in :func:`roc_curve`; an event of weight 0 adds a repeated
    ROC point, which changes no interpolation). Every row must hold some signal and some background weight.
    """
    s, y = _check(scores, labels)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, len(s))
    for e in efficiencies:
        if not 0 < e <= 1:
            raise fail("signal_efficiency", "a number in (0, 1]", e)
    order = np.argsort(-s, kind="stable")
    s, y, w = s[order], y[order], w[:, order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    n_sig, n_bkg = w[:, y].sum(axis=1), w[:, ~y].sum(axis=1)
    if np.any(n_sig == 0) or np.any(n_bkg == 0):
        raise DataError("every resample needs both signal and background weight")
    zero = np.zeros((len(w), 1))
    eps_s = np.hstack([zero, np.cumsum(w * y, axis=1)[:, last_of_tie] / n_sig[:, None]])
    eps_b = np.hstack([zero, np.cumsum(w * ~y, axis=1)[:, last_of_tie] / n_bkg[:, None]])
    rows = np.arange(len(w))
    out = np.empty((len(w), len(efficiencies)))
    for j, e in enumerate(efficiencies):
        i = np.argmax(eps_s >= e, axis=1)  # first point with eps_s >= e (the last point has eps_s = 1)
        s_hi, s_lo, b_hi, b_lo = eps_s[rows, i], eps_s[rows, i - 1], eps_b[rows, i], eps_b[rows, i - 1]
        exact = s_hi == e
        t = np.where(exact, 0.0, (e - s_lo) / np.where(exact, 1.0, s_hi - s_lo))
        out[:, j] = np.where(exact, b_hi, b_lo + t * (b_hi - b_lo))
    return out


def bootstrap_background_efficiency(
    scores: np.ndarray,
    labels: np.ndarray,
    efficiencies: Sequence[float],
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    generator: np.random.Generator,
) -> np.ndarray:
    """eps_B at each signal efficiency on ``replicates`` stratified resamples (:func:`bootstrap_counts`) of the test
    events: ``(replicates, len(efficiencies))``. The same generator state gives the same resamples, so two models
    scored on the same test set with equally seeded generators are resampled alike (their replicates pair)."""
    counts = bootstrap_counts(labels, replicates, generator=generator)
    return weighted_background_efficiency(scores, labels, counts, efficiencies)


def percentile_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of ``values``
    (numpy's default linear interpolation between order statistics)."""
    if not 0 < confidence < 1:
        raise fail("confidence", "a number in (0, 1)", confidence)
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.quantile(v, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def rejection_interval(
    bkg_eff_replicates: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile interval of the rejection 1/eps_B from replicates of eps_B: the eps_B interval inverted
    (``1/hi``, ``1/lo``; ``inf`` where eps_B is 0). 1/x is decreasing, so this is the percentile interval of the
    replicate rejections up to the interpolation between two neighbouring order statistics, and it stays defined
    when some replicates pass no background."""
    lo, hi = percentile_interval(bkg_eff_replicates, confidence)
    return (math.inf if hi == 0 else 1.0 / hi), (math.inf if lo == 0 else 1.0 / lo)


def rejection(bkg_eff: float) -> float:
    """1/eps_B (``inf`` at 0; NaN stays NaN)."""
    return math.inf if bkg_eff == 0 else 1.0 / bkg_eff
