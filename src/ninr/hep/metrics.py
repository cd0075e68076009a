"""Classifier metrics of photon identification: ROC curve, AUC, background rejection. Pure numpy functions.

Convention: signal is label 1 (prompt photon), a higher score means more signal-like. The signal
efficiency eps_S is the true-positive rate, the background efficiency eps_B the false-positive rate,
and the background rejection is 1 / eps_B at a chosen eps_S (infinite when no background passes).
"""

from __future__ import annotations

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
