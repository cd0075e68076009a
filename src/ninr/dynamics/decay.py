"""Exponential decay fits ``v(t) = A exp(-t / tau) + c`` with an uncertainty on ``tau``, or "no decay".

The fit profiles the rate: for a fixed rate the model is linear in ``(A, c)``, solved by least squares;
the residual sum of squares is minimised over the rate by a log grid then golden-section search. The
uncertainty comes from the Gauss-Newton covariance ``s^2 (J^T J)^-1`` at the optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ninr.dynamics.phases import Series
from ninr.errors import ConfigError

MIN_POINTS = 4
"""Fewer samples than this cannot constrain three parameters and leave a residual."""

NO_DECAY_TAU_FACTOR = 20.0
"""A decay time above 20x the observed span changes the value by under 5%: report "no decay"."""

MAX_REL_ERROR = 1.0
"""A decay time whose standard error exceeds itself is not a measurement: report "no decay"."""

_GRID = 240
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class DecayFit:
    """Result of :func:`fit_decay`. ``ok`` is False when no decay fits; ``reason`` says why."""

    ok: bool
    tau: float
    tau_err: float
    amplitude: float
    floor: float
    r2: float
    n: int
    reason: str = ""

    def as_dict(self, prefix: str = "") -> dict[str, object]:
        return {f"{prefix}{k}": v for k, v in self.__dict__.items()}


def _solve(t: np.ndarray, v: np.ndarray, rate: float, floor: float | None) -> tuple[float, float, float]:
    """Best ``(A, c)`` for a fixed ``rate``; returns ``(rss, A, c)``."""
    e = np.exp(-rate * (t - t[0]))
    if floor is None:
        design = np.stack([e, np.ones_like(e)], axis=1)
        coef, *_ = np.linalg.lstsq(design, v, rcond=None)
        amp, c = float(coef[0]), float(coef[1])
    else:
        denom = float(e @ e)
        amp, c = float(e @ (v - floor)) / denom if denom > 0 else 0.0, floor
    resid = v - amp * e - c
    return float(resid @ resid), amp, c


def _minimise(t: np.ndarray, v: np.ndarray, floor: float | None, lo: float, hi: float) -> float:
    grid = np.geomspace(lo, hi, _GRID)
    rss = [_solve(t, v, r, floor)[0] for r in grid]
    i = int(np.argmin(rss))
    a, b = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, _GRID - 1)])
    for _ in range(60):  # golden-section in log rate
        x1, x2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        if _solve(t, v, math.exp(x1), floor)[0] < _solve(t, v, math.exp(x2), floor)[0]:
            b = x2
        else:
            a = x1
    return math.exp((a + b) / 2)


def _tau_error(t: np.ndarray, v: np.ndarray, rate: float, amp: float, floor: float | None, rss: float) -> float:
    e = np.exp(-rate * (t - t[0]))
    cols = [e, -amp * (t - t[0]) * e] + ([np.ones_like(e)] if floor is None else [])
    jac = np.stack(cols, axis=1)
    dof = len(t) - jac.shape[1]
    s2 = rss / dof if dof > 0 else math.inf
    try:
        cov = np.linalg.inv(jac.T @ jac) * s2
    except np.linalg.LinAlgError:
        return math.inf
    rate_err = math.sqrt(max(float(cov[1, 1]), 0.0))
    return rate_err / rate**2


def fit_decay(t: Series, values: Series, *, floor: float | None = None) -> DecayFit:
    """Fit ``A exp(-(t - t0)/tau) + c`` to a trajectory; ``floor`` fixes ``c`` (``None``: fitted).

    Args:
        t: sample times (steps), increasing.
        values: the trajectory (NIW norm, training or test loss).
        floor: a known asymptote (``0.0`` for a noise-free NIW decay), or ``None`` to fit it.

    Returns:
        A :class:`DecayFit`; ``ok`` is False (with ``reason``) when the trajectory does not decay, the
        decay is slower than ``NO_DECAY_TAU_FACTOR`` spans, or its uncertainty is too large.

    Example:
        >>> fit = fit_decay(range(50), [2.0 * 0.9**i + 1.0 for i in range(50)])
        >>> round(fit.tau, 4), fit.ok
        (9.4912, True)
    """
    tt, vv = np.asarray(t, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if tt.shape != vv.shape or tt.ndim != 1:
        raise ConfigError(f"`t` and `values` must be 1-d of one length, got {tt.shape} and {vv.shape}")
    keep = np.isfinite(vv)
    tt, vv = tt[keep], vv[keep]
    n = len(tt)
    nan = math.nan
    if n < MIN_POINTS:
        return DecayFit(False, nan, nan, nan, nan, nan, n, f"fewer than {MIN_POINTS} finite samples")
    span = float(tt[-1] - tt[0])
    dt = float(np.min(np.diff(tt))) if n > 1 else 1.0
    if span <= 0 or dt <= 0:
        raise ConfigError("`t` must be strictly increasing")
    if np.all(vv == vv[0]):  # decided here, not by the sign of a fitted amplitude that rounding sets
        return DecayFit(False, nan, nan, 0.0, float(vv[0]), 0.0, n, "the trajectory is flat, it does not decay")
    lo, hi = 1.0 / (NO_DECAY_TAU_FACTOR * span * 10), 30.0 / dt
    rate = _minimise(tt, vv, floor, lo, hi)
    rss, amp, c = _solve(tt, vv, rate, floor)
    tss = float(((vv - vv.mean()) ** 2).sum())
    r2 = 1.0 - rss / tss if tss > 0 else 0.0
    tau, err = 1.0 / rate, _tau_error(tt, vv, rate, amp, floor, rss)
    fit = DecayFit(True, tau, err, amp, c, r2, n)
    if amp <= 0:
        return DecayFit(False, tau, err, amp, c, r2, n, "the trajectory rises, it does not decay")
    if tau > NO_DECAY_TAU_FACTOR * span:
        return DecayFit(False, tau, err, amp, c, r2, n, f"decay time over {NO_DECAY_TAU_FACTOR:g}x the span")
    if tau <= dt / 20:
        return DecayFit(False, tau, err, amp, c, r2, n, "decays faster than the sampling resolves")
    if not err <= MAX_REL_ERROR * tau:
        return DecayFit(False, tau, err, amp, c, r2, n, "decay time uncertainty exceeds the decay time")
    return fit
