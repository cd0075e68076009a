"""Closed forms of the linear-regression model with one noise injection node.

Model: ``f(x) = w . x + a eps`` with ``eps ~ N(0, sigma^2)`` drawn per example, loss ``1/2 (f - y)^2``.
The NIW ``a`` obeys, per SGD step with batch ``B`` (residual ``r = w . x - y`` without the noise)::

    a <- a - eta * mean_i[(r_i + a eps_i) eps_i] = (1 - eta m2) a - eta m1,
    m2 = mean_i eps_i^2 = sigma^2 X / B  (X ~ chi^2_B),   m1 = mean_i r_i eps_i.

With ``k = eta sigma^2 lambda`` (``lambda = d^2 loss / d f^2 = 1`` here) the mean obeys
``E a_{t+1} = (1 - k) E a_t`` exactly; a single run's magnitude decays at the *typical* rate
``gamma = -E ln|1 - k X / B|``; the second moment follows ``q = (1 - k)^2 + 2 k^2 / B`` plus the
random-walk input ``eta^2 sigma^2 R^2 / B`` (``R^2 = mean r^2``). The poster's factor
``1 - 1/2 eta sigma^2 H`` is the same as ``1 - k`` with ``H = 2 lambda``: its ``H`` is the curvature of the
unhalved squared error. See docs/dynamics.md for the derivation and the neglected ``w``-``a`` coupling,
which is ``O(k eta d / B^2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ninr.dynamics.phases import DECOUPLED_MAX_CHANGE
from ninr.dynamics.theory.chi2 import chi2_median, expected_log_abs_factor
from ninr.errors import check_nonneg, check_positive, check_positive_int

LINEAR_PHASES = ("decoupled", "decay", "oscillating", "divergent")
"""Phases of the one-layer linear model: decoupled, decay, oscillating decay (``oscillating``: 1 < k < 2 for GD,
the factor ``1 - k`` is negative and ``|a|`` decays) and divergent. Its curvature is constant, so it has no
catapult; the two-layer toy (:mod:`ninr.dynamics.theory.two_layer`) and networks do."""


def control_parameter(eta: float, sigma: float, curvature: float = 1.0) -> float:
    """``k = eta sigma^2 lambda``: the one number that sets the NIW dynamics."""
    return check_positive("eta", eta) * check_nonneg("sigma", sigma) ** 2 * check_nonneg("curvature", curvature)


def sigma_for_k(k: float, eta: float, curvature: float = 1.0) -> float:
    """The ``sigma`` giving control parameter ``k`` (inverse of :func:`control_parameter`)."""
    return math.sqrt(check_nonneg("k", k) / (check_positive("eta", eta) * check_positive("curvature", curvature)))


def mean_trajectory(a0: float, k: float, steps: int) -> np.ndarray:
    """``E a_t = a0 (1 - k)^t`` for ``t = 0..steps`` (exact for GD and SGD alike).

    Shape:
        returns (steps + 1,).
    """
    return a0 * (1.0 - k) ** np.arange(steps + 1, dtype=np.float64)


def decay_rate(k: float, batch_size: int | None = None) -> float:
    """Per-step log decay rate of ``|a_t|``: positive decays, negative grows, ``inf`` at ``k = 1`` (GD).

    ``batch_size=None`` is the noise-averaged (``B -> infinity``) rate ``-ln|1 - k|``, which is also the
    rate of the mean ``|E a_t|``; a finite ``B`` gives the typical rate of one run,
    ``-E ln|1 - k X / B|``, ``X ~ chi^2_B``.
    """
    check_nonneg("k", k)
    if k == 0:
        return 0.0
    if batch_size is None:
        return math.inf if k == 1 else -math.log(abs(1.0 - k))
    return -expected_log_abs_factor(k, check_positive_int("batch_size", batch_size))


def decay_time(k: float, batch_size: int | None = None) -> float:
    """The e-folding time (in steps) of ``|a_t|``: ``1 / decay_rate``; ``inf`` where it does not decay."""
    rate = decay_rate(k, batch_size)
    return 1.0 / rate if rate > 0 else math.inf


def second_moment_factor(k: float, batch_size: int | None = None) -> float:
    """``q = E(1 - eta m2)^2 = (1 - k)^2 + 2 k^2 / B``: ``E a^2`` shrinks per step by ``q`` (``B=None``: no term)."""
    extra = 0.0 if batch_size is None else 2.0 * k**2 / check_positive_int("batch_size", batch_size)
    return (1.0 - k) ** 2 + extra


def stationary_variance(eta: float, sigma: float, residual_sq: float, batch_size: int) -> float:
    """``E a^2`` at stationarity: ``eta^2 sigma^2 R^2 / B / (1 - q)`` (``inf`` where ``q >= 1``).

    ``residual_sq`` is ``R^2``, the mean squared noise-free residual (the label-noise variance once ``w``
    has converged). It simplifies to ``eta R^2 / (B (2 - k (1 + 2 / B))) / lambda`` with ``lambda = 1``.
    """
    k = control_parameter(eta, sigma)
    q = second_moment_factor(k, batch_size)
    if q >= 1:
        return math.inf
    return eta**2 * sigma**2 * check_nonneg("residual_sq", residual_sq) / batch_size / (1.0 - q)


def _bisect(fn: Callable[[float], float], lo: float, hi: float, tol: float = 1e-10) -> float:
    """Root of a monotone ``fn`` on [lo, hi] (sign change assumed)."""
    f_lo = fn(lo)
    while hi - lo > tol * max(1.0, abs(hi)):
        mid = (lo + hi) / 2
        if (fn(mid) > 0) == (f_lo > 0):
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class PhaseBoundaries:
    """The three boundaries in ``k`` of the linear model for a horizon and batch size."""

    decoupled_decay: float  # below: |a| changes by less than DECOUPLED_MAX_CHANGE over the horizon
    decay_oscillating: float  # above: the factor 1 - k X / B is negative in most steps
    oscillating_divergent: float  # above: a typical run grows

    def phase(self, k: float) -> str:
        """The phase of control parameter ``k`` (one of :data:`LINEAR_PHASES`)."""
        if k >= self.oscillating_divergent:
            return "divergent"
        if k >= self.decay_oscillating:
            return "oscillating"
        return "decay" if k >= self.decoupled_decay else "decoupled"

    def as_sigma(self, eta: float, curvature: float = 1.0) -> dict[str, float]:
        """The boundaries as noise scales."""
        names = ("decoupled_decay", "decay_oscillating", "oscillating_divergent")
        return {n: sigma_for_k(getattr(self, n), eta, curvature) for n in names}


FINAL_WINDOW = 0.1
"""A simulated run's *final* ``|a|`` is the mean of its last 10% of samples (at least one), averaging out the
random walk around the floor; the decoupled|decay boundary is where that final value is
``1 - DECOUPLED_MAX_CHANGE`` of the start."""


def _decoupled_rate(horizon: int) -> float:
    """The decay rate whose final-window mean over ``t = 0..horizon`` is ``1 - DECOUPLED_MAX_CHANGE``."""
    n = max(1, math.ceil(FINAL_WINDOW * (horizon + 1)))
    t = np.arange(horizon - n + 1, horizon + 1, dtype=np.float64)
    return _bisect(lambda r: float(np.mean(np.exp(-r * t))) - (1.0 - DECOUPLED_MAX_CHANGE), 0.0, 10.0 / horizon)


def phase_boundaries(horizon: int, batch_size: int | None = None) -> PhaseBoundaries:
    """Predicted phase boundaries in ``k`` for a run of ``horizon`` steps with batch ``batch_size``.

    - decoupled|decay: the classifier's final value (mean of the last ``FINAL_WINDOW`` of the ``horizon + 1``
      samples) of ``exp(-rate t)`` equals ``1 - DECOUPLED_MAX_CHANGE``; about ``0.22 / horizon``.
    - decay|oscillating: ``k = B / median(chi^2_B)`` (``1`` for ``B = None``): above it the sign of ``a``
      flips in more than half of the steps.
    - oscillating|divergent: ``rate(k) = 0``; ``2`` for ``B = None``, above 2 for finite ``B`` (a typical
      run survives longer than the mean square, whose boundary is ``2 B / (B + 2)``).

    Example:
        >>> b = phase_boundaries(200)
        >>> round(b.decay_oscillating, 6), round(b.oscillating_divergent, 6)
        (1.0, 2.0)
    """
    check_positive_int("horizon", horizon)
    target = _decoupled_rate(horizon)
    low = _bisect(lambda k: decay_rate(k, batch_size) - target, 1e-12, 0.999)
    if batch_size is None:
        return PhaseBoundaries(low, 1.0, 2.0)
    osc = batch_size / chi2_median(batch_size)
    div = _bisect(lambda k: decay_rate(k, batch_size), 1.0 + 1e-9, 2.0 + 20.0 / batch_size**0.5)
    return PhaseBoundaries(low, osc, div)


def theory_curve(eta: float, steps: int, batch: int, sigmas: Sequence[float], points: int = 300) -> dict[str, Any]:
    """The closed form across a sigma grid: decay time, phase regions and a one-line summary of the boundaries.

    The curve spans ``min(sigmas) / 1.5`` to ``max(sigmas) * 1.5`` on a log grid of ``points``; regions are
    ``(phase, sigma_lo, sigma_hi)`` for the decoupled, decay, oscillating and divergent bands at horizon
    ``steps`` and batch ``batch``.
    """
    grid = np.geomspace(min(sigmas) / 1.5, max(sigmas) * 1.5, points)
    tau = [decay_time(control_parameter(eta, float(s)), batch) for s in grid]
    bounds = phase_boundaries(steps, batch)
    edges = bounds.as_sigma(eta)
    cuts = [grid[0], edges["decoupled_decay"], edges["decay_oscillating"], edges["oscillating_divergent"], grid[-1]]
    names = ("decoupled", "decay", "oscillating", "divergent")
    regions = [(name, lo, hi) for name, lo, hi in zip(names, cuts[:-1], cuts[1:], strict=True) if hi > lo]
    summary = (
        f"predicted boundaries in k (horizon {steps}, batch {batch}): decoupled|decay "
        f"{bounds.decoupled_decay:.4g}, decay|oscillating {bounds.decay_oscillating:.4g}, "
        f"oscillating|divergent {bounds.oscillating_divergent:.4g}; in sigma (eta={eta:g}): "
        + ", ".join(f"{v:.4g}" for v in edges.values())
    )
    return {
        "sigma": grid.tolist(),
        "tau": [t if np.isfinite(t) else np.nan for t in tau],
        "regions": regions,
        "summary": summary,
    }
