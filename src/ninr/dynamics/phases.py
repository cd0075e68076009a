"""The phase of a noise injection node, read from its dynamics: decoupled, decay, catapult, divergent.

What a node's NIW does at a step is set by ``k = eta lambda``, where ``lambda`` is the top eigenvalue of the
NIW block of the Hessian of the *noisy* loss (``sigma^2`` times the curvature the node sees, docs/dynamics.md):
along the top eigenvector the NIW is multiplied by ``1 - k`` per step on average. The NIW block is not the
whole story: the node is coupled to the weights downstream of it, and in the two-layer toy the phase is set by
the coupled ``eta sigma^2 (|v|^2 + |theta|^2)`` while the NIW block alone gives ``eta sigma^2 |v|^2`` (a catapult
at coupled ``k = 3`` has an NIW-block ``k`` of 1.5 when the weights share the norm equally). So the classifier
reads instability where it shows: in the top mode's own growth. Per node it reads the series a run records
(:class:`NodeSeries`: ``k(t)``, the NIW's projection on the top eigenvector ``a(t)``, the top mode's noise energy
``E(t)``) and applies:

* **divergent**: a non-finite value, a run stopped as diverged, ``k`` still above 2 at the end (beyond the
  estimate's error), or the top mode still growing at the last sample;
* **catapult**: the run ended stable after either (a) a stretch where the top mode grew as an unstable step
  makes it grow (sign flips with growing size: sliding windows of ``AR_WINDOW`` samples whose fitted AR(1)
  coefficient is significantly below -1, :func:`growth_stretches`) gaining at least ``ENERGY_RISE`` in energy,
  or (b) ``k`` crossing above 2 beyond its error and coming back below it while the energy rose at least
  ``ENERGY_RISE`` (:func:`crossing_rise`): growth, then decay, the catapult mechanism of Lewkowycz et al. 2020,
  where the growth itself drives the curvature down. (a) is needed because ``k`` of the NIW block alone can stay
  below 2 through a catapult that the coupled curvature drives;
* **decoupled**: otherwise, when the accumulated ``sum_t k(t)`` stays below ``K_DECOUPLED``: the NIW's mean
  changes by less than ``DECOUPLED_MAX_CHANGE`` over the run (``prod (1 - k_t) ~ exp(-sum k_t)``);
* **decay**: the rest; ``rho``, the AR(1) coefficient of ``a(t)`` over the run, estimates the per-step factor
  ``1 - k`` and flags *oscillating* decay (``rho < 0``, ``1 < k < 2``).

Energy alone does not tell growth: a small NIW that a random walk lifts to its stationary level gains orders of
magnitude in energy, and a stationary one's energy ratio between two samples is a ratio of chi-squares. The
fitted coefficient does: there it stays within ``(-1, 1)`` (``1 - k``), and the t-test bounds the chance it
reads below -1 by ``FALSE_ALARM`` per run.

Every threshold is a named constant set before the data it judges: from theory (``K_STABLE``, ``K_DECOUPLED``,
``K_SIGMAS``, ``ENERGY_RISE``: the toy's growth rule), or a stated error budget (``FALSE_ALARM``); ``AR_WINDOW``
was chosen among 6, 8 and 10 on a calibration set of labelled trajectories (seed 1). The error rates on
validation sets of other seeds: :mod:`ninr.dynamics.validation`, ``ninr phases --validate``, docs/dynamics.md
section 5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ninr.errors import ConfigError

Series = Sequence[float] | np.ndarray
"""A trajectory: a list of numbers or a 1-d array."""

PHASES = ("decoupled", "decay", "catapult", "divergent")

K_STABLE = 2.0
"""Gradient descent on a quadratic of curvature ``lambda`` multiplies the error along its eigenvector by
``1 - eta lambda`` per step: stable while ``|1 - k| < 1``, i.e. ``k < 2``."""

DECOUPLED_MAX_CHANGE = 0.2
"""A node whose NIW's mean changes by less than 20% over the run is *decoupled*: at small sigma a network's
NIWs wander by a random walk of that order, so a smaller change cannot be told from no dynamics."""

K_DECOUPLED = -math.log(1.0 - DECOUPLED_MAX_CHANGE)
"""``sum_t k_t`` below which the mean factor ``prod (1 - k_t) ~ exp(-sum k_t)`` stays above
``1 - DECOUPLED_MAX_CHANGE``: 0.223."""

K_SIGMAS = 3.0
"""A measured ``k`` counts as above 2 only when it exceeds ``2 (1 + K_SIGMAS x rel_error)``, where
``rel_error`` is the relative standard error of one measurement (:attr:`NodeSeries.k_rel_error`): a stable
node's measurements then cross 2 by chance in about 0.1% of samples (a one-sided 3-sigma excursion)."""

AR_WINDOW = 8
"""Samples per sliding window of the growth test: 7 steps, 5 degrees of freedom for the AR(1) fit with an
intercept. A catapult's growth lasts about ``ln(peak / start) / ln|1 - k|`` steps: 8-20 in the two-layer toy for
``2.3 < k < 3.7`` from a hundredth of the peak, so a window must be short to hold growth alone."""

FALSE_ALARM = 0.02
"""The chance that a stable run (``|rho| < 1``, Gaussian innovations) shows one window of significant growth:
each window's test runs at ``FALSE_ALARM / m`` for the run's ``m = samples / AR_WINDOW`` disjoint windows
(Bonferroni). It is the false-catapult rate the classifier is allowed, set before any data was seen."""

ENERGY_RISE = 4.0
"""A catapult's top mode gains at least this factor in energy over its stretch of growth, then the run ends
stable: the two-layer toy's own rule (``max |phi| >= 2 |phi_0|``, ``GROWTH_FACTOR``) in energy."""


def student_t_cdf(t: float, dof: int) -> float:
    """The CDF of Student's t with an integer number of degrees of freedom (Abramowitz and Stegun 26.7.3-4).

    Example:
        >>> round(student_t_cdf(2.5706, 5), 4)
        0.975
    """
    if dof < 1:
        raise ConfigError(f"`dof` must be an integer >= 1, got {dof}")
    theta = math.atan(t / math.sqrt(dof))
    s, c = math.sin(theta), math.cos(theta)
    if dof % 2:
        term = total = c if dof > 1 else 0.0
        for j in range(1, (dof - 3) // 2 + 1):
            term *= c * c * (2 * j) / (2 * j + 1)
            total += term
        a = 2.0 / math.pi * (theta + s * total)
    else:
        term = total = 1.0
        for j in range(1, (dof - 2) // 2 + 1):
            term *= c * c * (2 * j - 1) / (2 * j)
            total += term
        a = s * total
    return 0.5 + 0.5 * a


def student_t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile (``1/2 <= p < 1``) of Student's t by bisection on :func:`student_t_cdf`.

    Example:
        >>> round(student_t_quantile(0.975, 5), 3)
        2.571
    """
    if not 0.5 <= p < 1.0:
        raise ConfigError(f"`p` must lie in [0.5, 1), got {p}")
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, dof) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if student_t_cdf(mid, dof) < p else (lo, mid)
    return hi


@dataclass(frozen=True)
class NodeSeries:
    """What the classifier reads of one node along a run.

    Attributes:
        steps: The SGD steps at which ``a``, ``energy`` and ``loss`` were sampled (increasing).
        a: The NIW's projection on the top eigenvector of its Hessian block.
        energy: The top mode's noise energy ``1/2 lambda a^2`` (only its ratios are read).
        k_steps: The steps at which ``k`` was measured (increasing; each value holds until the next).
        k: ``eta lambda_max`` of the NIW block of the noisy loss's Hessian.
        loss: The training loss at ``steps``, or ``None``.
        k_rel_error: The relative standard error of one ``k`` measurement (0: exact).
    """

    steps: np.ndarray
    a: np.ndarray
    energy: np.ndarray
    k_steps: np.ndarray
    k: np.ndarray
    loss: np.ndarray | None = None
    k_rel_error: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "a", "energy", "k_steps", "k"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.loss is not None:
            object.__setattr__(self, "loss", np.asarray(self.loss, dtype=np.float64))
        n, m = len(self.steps), len(self.k_steps)
        if n < 2 or len(self.a) != n or len(self.energy) != n or (self.loss is not None and len(self.loss) != n):
            raise ConfigError(f"`steps`, `a`, `energy` and `loss` must be series of one length >= 2, got {n} steps")
        if m < 1 or len(self.k) != m:
            raise ConfigError(f"`k_steps` and `k` must be series of one length >= 1, got {m} and {len(self.k)}")
        if self.k_rel_error < 0 or not math.isfinite(self.k_rel_error):
            raise ConfigError(f"`k_rel_error` must be a finite number >= 0, got {self.k_rel_error}")

    def finite(self) -> bool:
        """Whether every recorded value is finite."""
        arrays = [self.a, self.energy, self.k] + ([self.loss] if self.loss is not None else [])
        return all(bool(np.all(np.isfinite(x))) for x in arrays)

    def k_sum(self) -> float:
        """``sum_t k_t`` over the run's steps, each measurement held until the next."""
        start, end = float(self.steps[0]), float(self.steps[-1])
        edges = np.clip(np.append(self.k_steps, end), start, end)
        edges[0] = start
        return float(np.sum(self.k * np.diff(edges)))


@dataclass(frozen=True)
class PhaseResult:
    """A node's phase, with the numbers that decided it."""

    phase: str
    reason: str
    k_max: float
    k_final: float
    k_sum: float
    energy_rise: float  # peak / start energy of the first unstable episode (1 when there was none)
    rho: float  # AR(1) coefficient of a(t): the per-step factor 1 - k
    oscillating: bool

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def ar1(a: Series) -> float:
    """The AR(1) coefficient ``sum a_{t+1} a_t / sum a_t^2`` (NaN for a series that is all zero)."""
    x = np.asarray(a, dtype=np.float64)
    den = float(x[:-1] @ x[:-1])
    return float(x[1:] @ x[:-1]) / den if den > 0 else math.nan


def ar1_fit(a: Series) -> tuple[float, float]:
    """The least-squares fit ``a_{t+1} = c + rho a_t``: ``(rho, its standard error)``. The intercept takes the
    gradient's steady pull (``a`` drifting at a constant rate is not growth); ``(nan, inf)`` when ``a`` is flat."""
    x = np.asarray(a, dtype=np.float64)
    x0, x1 = x[:-1] - x[:-1].mean(), x[1:] - x[1:].mean()
    den = float(x0 @ x0)
    dof = len(x0) - 2
    if den <= 0 or dof < 1:
        return math.nan, math.inf
    rho = float(x0 @ x1) / den
    resid = x1 - rho * x0
    return rho, math.sqrt(float(resid @ resid) / dof / den)


def growth_stretches(series: NodeSeries) -> list[tuple[int, int]]:
    """Index ranges ``(first, last)`` where the top mode grew as an unstable gradient step makes it grow: the
    union of sliding windows of :data:`AR_WINDOW` samples whose fitted ``rho`` (:func:`ar1_fit`) lies
    significantly below -1 (a one-sided t-test at ``FALSE_ALARM / m``, ``m`` the run's disjoint windows).

    Only oscillating growth counts: along a direction of positive curvature an unstable step multiplies the NIW
    by ``1 - k < -1``, flipping its sign every step; an NIW that grows without flipping is pushed by the
    gradient, not by the instability.
    """
    n = len(series.steps)
    size = min(AR_WINDOW, n)
    if size < 5:
        return []
    level = 1.0 - FALSE_ALARM / max(n // AR_WINDOW, 1)
    q = student_t_quantile(level, size - 3)
    out: list[tuple[int, int]] = []
    for i in range(n - size + 1):
        rho, se = ar1_fit(series.a[i : i + size])
        if rho < -1.0 - q * se:
            first, last = i, i + size - 1
            if out and first <= out[-1][1]:
                out[-1] = (out[-1][0], last)
            else:
                out.append((first, last))
    return out


def classify(series: NodeSeries, *, status: str | None = None) -> PhaseResult:
    """The phase of one node (see the module docstring for the rules).

    Example:
        >>> steps = np.arange(50)
        >>> s = NodeSeries(steps, 0.5**steps, 0.25**steps, np.array([0]), np.array([0.5]))
        >>> classify(s).phase
        'decay'
    """
    k = series.k
    finite = series.finite()
    k_max = float(np.max(k)) if finite else math.inf
    k_final, k_sum = float(k[-1]), series.k_sum() if finite else math.inf
    rho = ar1(series.a) if finite else math.nan

    def result(phase: str, reason: str, rise: float = 1.0) -> PhaseResult:
        return PhaseResult(phase, reason, k_max, k_final, k_sum, rise, rho, bool(rho < 0))

    if status == "diverged" or not finite:
        return result("divergent", "non-finite values or a run stopped as diverged")
    limit = K_STABLE * (1.0 + K_SIGMAS * series.k_rel_error)
    if k_final > limit:
        return result("divergent", f"k was {k_final:.3g} > {K_STABLE:g} at the end (max {k_max:.3g})")
    stretches = growth_stretches(series)
    energy = series.energy
    rises = [_rise(energy[a : b + 1]) for a, b in stretches]
    rise = max(rises, default=1.0)
    if stretches and stretches[-1][1] >= len(series.steps) - 1:
        return result("divergent", f"the top mode was still growing at the end ({rises[-1]:.3g}x)", rise)
    if rise >= ENERGY_RISE:
        reason = f"the top mode grew {rise:.3g}x (k max {k_max:.3g}), then decayed: k ends at {k_final:.3g}"
        return result("catapult", reason, rise)
    crossed = crossing_rise(series)
    if crossed >= ENERGY_RISE:
        reason = f"k crossed 2 (max {k_max:.3g}) and came back below it while the energy rose {crossed:.3g}x"
        return result("catapult", reason, crossed)
    if k_sum < K_DECOUPLED:
        return result("decoupled", f"sum of k over the run {k_sum:.3g} < {K_DECOUPLED:.3g}", rise)
    return result("decay", f"the top mode did not grow (k max {k_max:.3g}), rho {rho:.3g}", rise)


def crossing_rise(series: NodeSeries) -> float:
    """The energy's rise over a crossing of the stability limit: from the measurement before ``k`` first exceeds
    2 beyond its error (``2 (1 + K_SIGMAS rel_error)``) to the first one back below 2, peak over start (1 when
    ``k`` never crossed or never came back)."""
    above = np.nonzero(series.k > K_STABLE * (1.0 + K_SIGMAS * series.k_rel_error))[0]
    if not len(above):
        return 1.0
    first = int(above[0])
    back = np.nonzero(series.k[first:] < K_STABLE)[0]
    if not len(back):
        return 1.0
    t0, t1 = series.k_steps[max(first - 1, 0)], series.k_steps[first + int(back[0])]
    inside = (series.steps >= t0) & (series.steps <= t1)
    return _rise(series.energy[inside]) if inside.any() else 1.0


def _rise(energy: np.ndarray) -> float:
    """Peak over start of an energy stretch (``inf`` from a zero start)."""
    e0 = float(energy[0])
    return float(energy.max()) / e0 if e0 > 0 else math.inf


PHASE_PRECEDENCE = ("divergent", "catapult", "decay", "decoupled")
"""How a run with several nodes (full-NINR) gets one phase: the first entry in this order that any node is in.
A network diverges if one node does; a node's catapult is the event the catapult phase names, whatever the
quieter nodes do; and a run decays if any node does."""


@dataclass(frozen=True)
class NodesPhase:
    """The phase of a run with several nodes: the deciding node's result, and every node's phase."""

    result: PhaseResult
    node: str
    nodes: dict[str, str]

    @property
    def phase(self) -> str:
        return self.result.phase

    def as_dict(self) -> dict[str, object]:
        return {**self.result.as_dict(), "node": self.node, "nodes": dict(self.nodes)}


def classify_nodes(series: Mapping[str, NodeSeries], *, status: str | None = None) -> NodesPhase:
    """The phase of a run from each node's series: the node first in :data:`PHASE_PRECEDENCE` decides (among
    equals, the one with the largest ``k``). Node by node: the nodes' curvatures differ by orders of magnitude
    (in the 3-layer MLP the output node's is ~250x the input node's)."""
    if not series:
        raise ConfigError("`series` must hold at least one node's series, got none")
    results = {name: classify(s, status=status) for name, s in series.items()}
    rank = {p: i for i, p in enumerate(PHASE_PRECEDENCE)}
    node = min(results, key=lambda n: (rank[results[n].phase], -results[n].k_max))
    return NodesPhase(results[node], node, {n: r.phase for n, r in results.items()})
