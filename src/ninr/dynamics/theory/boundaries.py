"""Phase boundaries of the linear model measured by simulation (bisection in k), next to the closed form.

Each boundary is the ``k`` where a simulated run's label changes, found by bisection with a majority
vote over seeds at each probe point:

- decoupled|decay: the run's final ``|a|`` (mean of the last ``FINAL_WINDOW``) is below
  ``1 - DECOUPLED_MAX_CHANGE`` of its start;
- decay|oscillating: the sign of ``a`` flips in most steps (:func:`oscillates`);
- oscillating|divergent: ``|a|`` ends above its start after ``horizon`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from ninr.dynamics.phases import DECOUPLED_MAX_CHANGE, Series
from ninr.dynamics.theory.linear import FINAL_WINDOW, PhaseBoundaries
from ninr.dynamics.theory.simulate import LinearSetup, simulate_linear

OSCILLATION_STEPS = 30
"""Steps simulated to decide whether a run oscillates (the sign pattern is clear within a few steps)."""

OSCILLATION_MIN_FLIPS = 0.5
"""A signed trajectory *oscillates* when its sign flips in at least half of the steps while it is still above
1e-3 of its initial magnitude (below that the additive random walk sets the sign)."""


def oscillates(signed: Series) -> bool:
    """Whether a signed scalar trajectory (the one-layer model's NIW) flips sign in most steps."""
    v = np.asarray(signed, dtype=np.float64)
    if len(v) < 3 or v[0] == 0:
        return False
    alive = np.abs(v) >= 1e-3 * abs(v[0])
    stop = int(np.argmin(alive)) if not alive.all() else len(v)
    seg = v[: max(stop, 2)]
    flips = np.signbit(seg[1:]) != np.signbit(seg[:-1])
    return bool(flips.mean() >= OSCILLATION_MIN_FLIPS) if len(flips) >= 2 else False


def _vote(base: LinearSetup, k: float, seeds: Sequence[int], label: Callable[[LinearSetup], bool]) -> bool:
    sigma = math.sqrt(k / base.eta)
    votes = [label(replace(base, sigma=sigma, seed=s)) for s in seeds]
    return sum(votes) * 2 > len(votes)


def _bisect_k(lo: float, hi: float, above: Callable[[float], bool], *, rel_tol: float, log: bool) -> float:
    """The ``k`` in [lo, hi] where ``above(k)`` turns True (assumed False at lo, True at hi)."""
    while hi / lo - 1 > rel_tol:
        mid = math.sqrt(lo * hi) if log else (lo + hi) / 2
        lo, hi = (lo, mid) if above(mid) else (mid, hi)
    return math.sqrt(lo * hi)


def _decays(setup: LinearSetup) -> bool:
    a = np.abs(simulate_linear(setup).niw)
    n = max(1, math.ceil(FINAL_WINDOW * len(a)))
    return float(np.mean(a[-n:])) < (1.0 - DECOUPLED_MAX_CHANGE) * float(a[0])


def _oscillates(setup: LinearSetup) -> bool:
    return oscillates(simulate_linear(replace(setup, steps=OSCILLATION_STEPS)).niw)


def _diverges(setup: LinearSetup) -> bool:
    traj = simulate_linear(setup)
    return traj.status == "diverged" or abs(traj.niw[-1]) > abs(traj.niw[0])


def measure_boundaries(
    base: LinearSetup, *, seeds: Sequence[int] = (0, 1, 2), rel_tol: float = 2e-3
) -> PhaseBoundaries:
    """The three boundaries in ``k`` measured on simulations of ``base`` (its sigma is varied).

    Example:
        >>> b = measure_boundaries(LinearSetup(sigma=1.0, eta=0.01, steps=100, n_train=128, dim=2), seeds=(0,))
        >>> 0.95 < b.decay_oscillating < 1.05
        True
    """
    low = _bisect_k(1e-6, 0.5, lambda k: _vote(base, k, seeds, _decays), rel_tol=rel_tol, log=True)
    osc = _bisect_k(0.5, 1.5, lambda k: _vote(base, k, seeds, _oscillates), rel_tol=rel_tol, log=False)
    div = _bisect_k(1.5, 4.0, lambda k: _vote(base, k, seeds, _diverges), rel_tol=rel_tol, log=False)
    return PhaseBoundaries(low, osc, div)
