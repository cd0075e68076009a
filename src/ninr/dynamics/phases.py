"""Phase classification of a run from its trajectories: decoupled, decay, catapult, divergent.

The thresholds are named constants; each comes with the reason for its value. ``norms`` is the NIW
norm sampled along the run (its first entry is the value at initialisation); ``losses`` optionally the
training loss at the same or other steps.
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

DECOUPLED_MAX_CHANGE = 0.2
"""A run is *decoupled* when its NIW norm ends within 20% of where it started (a decay time of more
than ~4.5 horizons). At small sigma the NIWs of a network still wander by a random walk of this order
over a few epochs, so a smaller change cannot be told apart from no dynamics at all."""

CATAPULT_MIN_GROWTH = 1.5
"""The NIW norm must reach 1.5x its initial value to count as growth: well above the +-20% wandering of
a decoupled run, so noise alone never triggers it."""

CATAPULT_MAX_RETURN = 0.5
"""After growing, a *catapult* brings the norm back to at most half its peak by the end of the run;
growth that does not come back down by that much is counted as *divergent* (over this horizon)."""

DECAY_FLOOR_DROP = 0.4
"""A run whose NIW norm fell by at least 40% (its moving mean over ``PEAK_WINDOW`` samples at 0.6x the
initial norm or below) and ended within ``DECOUPLED_MAX_CHANGE`` of the start is in *decay*, not
decoupled: it decayed, then sat at the floor its random walk keeps it on, and over a long run that
floor can rise back near the start. Measured: in-NINR at sigma 32 (MLP, lr 0.05, batch 64) falls to
0.36-0.46x within the first epoch and climbs back to 0.87-0.97x over 20 (5 seeds, paper protocol). Twice
the decoupled wander, so a random walk alone does not reach it."""

DIVERGENCE_LOSS_FACTOR = 10.0
"""A finite training loss that ends 10x above its initial value is divergent: an SGD run that learns
(or even stalls) never does that, while a run whose NIWs blow up does."""

FINAL_WINDOW = 0.1
"""The *final* value is the mean of the last 10% of samples (at least one), to average out the random
walk of the NIWs around their floor."""

PEAK_WINDOW = 5
"""The *peak* is the largest moving mean over 5 consecutive samples (fewer in shorter trajectories), so
one noisy sample is not a peak but a catapult is. The phase hook samples every SGD step, so that is 5
steps, while a catapult's rise and fall lasts tens of steps (the top mode grows by ``|1 - k|`` per step
and falls as the curvature relaxes). A window of 10% of the run smooths the catapults of 400-step runs
away: the output node of a full-NINR MLP at sigma 24 rises to 2.9x in 5 steps and falls back to 1.0x,
and reads as a 2.0x peak."""

PLATEAU_MAX_RISE = 1.2
"""A node that grew past ``CATAPULT_MIN_GROWTH`` and did not come back has *stopped growing* (a plateau)
when its final value (the mean of the last ``FINAL_WINDOW``) is at most 1.2x its mean over the second
half of the run. An exponential that grows 1.62x over the second half reaches that ratio, and any faster
growth exceeds it; a random walk's ``sqrt(t)`` gives 1.13. Such a node is
still labelled divergent (over this horizon) but flagged ``drift``: bounded, not a blow-up. Measured: in
full-NINR on the CNN at sigma 24, fc1's node is kicked to ~2x in the first 20 steps, while the output
node catapults, and then sits at 1.5-2.3x for 20 epochs (18,760 steps, seeds 0 and 1)."""

PHASE_PRECEDENCE = ("divergent", "catapult", "decay", "drift", "decoupled")
"""How a run with several nodes (full-NINR) gets one phase: the first entry in this order that any node
is in. A network diverges if one node does; a node's catapult is the event the catapult phase names,
whatever the quieter nodes do; and a run decays if any node does. ``drift`` is a node labelled
divergent only because its norm ended more than ``DECOUPLED_MAX_CHANGE`` up without reaching
``CATAPULT_MIN_GROWTH``, or because it grew past it and then stopped growing without coming back
(``PLATEAU_MAX_RISE``; ``PhaseResult.drift``): alone, it makes the run divergent, but beside a node
that decays or catapults it is the weaker evidence (a CNN's fc1 node at sigma 10, with little curvature,
random-walks up ~30% in 80 steps while its output node decays; at sigma 24 it is kicked to ~2x while
the output node catapults and stays there, bounded, for 20 epochs)."""

OSCILLATION_MIN_FLIPS = 0.5
"""A signed trajectory *oscillates* when its sign flips in at least half of the steps while it is
still above 1e-3 of its initial magnitude (below that the additive random walk sets the sign)."""

_OSC_FLOOR = 1e-3


@dataclass(frozen=True)
class PhaseResult:
    """A run's phase, with the numbers that decided it."""

    phase: str
    reason: str
    peak_ratio: float  # max norm / initial norm
    final_ratio: float  # final norm / initial norm
    oscillating: bool | None = None  # only when a signed trajectory was given
    drift: bool = False  # divergent only by drifting up below the growth threshold, or by a plateau above it

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _final(values: np.ndarray) -> float:
    n = max(1, math.ceil(FINAL_WINDOW * len(values)))
    return float(np.mean(values[-n:]))


def oscillates(signed: Series) -> bool:
    """Whether a signed scalar trajectory (e.g. a one-unit NIW) flips sign in most steps."""
    v = np.asarray(signed, dtype=np.float64)
    if len(v) < 3 or v[0] == 0:
        return False
    alive = np.abs(v) >= _OSC_FLOOR * abs(v[0])
    stop = int(np.argmin(alive)) if not alive.all() else len(v)
    seg = v[: max(stop, 2)]
    flips = np.signbit(seg[1:]) != np.signbit(seg[:-1])
    return bool(flips.mean() >= OSCILLATION_MIN_FLIPS) if len(flips) >= 2 else False


def classify_phase(
    norms: Series,
    losses: Series | None = None,
    *,
    status: str | None = None,
    signed: Series | None = None,
) -> PhaseResult:
    """Label a run ``decoupled``, ``decay``, ``catapult`` or ``divergent``.

    Rules, in order: a non-finite value, ``status == "diverged"`` or a final loss above
    ``DIVERGENCE_LOSS_FACTOR`` x the initial loss is divergent; a peak of at least ``CATAPULT_MIN_GROWTH``
    x the initial norm is a catapult if the norm comes back to ``CATAPULT_MAX_RETURN`` x the peak, else
    divergent (still up, or growing, at the end of the horizon; flagged ``drift`` when it stopped growing,
    ``PLATEAU_MAX_RISE``); so is a final norm more than
    ``DECOUPLED_MAX_CHANGE`` above the initial one; a final norm within ``DECOUPLED_MAX_CHANGE`` of the
    initial one is decoupled, unless the norm fell to ``1 - DECAY_FLOOR_DROP`` of it on the way (a decay
    to a floor); the rest is decay. The peak is a moving mean over ``PEAK_WINDOW``
    samples, the final value the mean of the last ``FINAL_WINDOW`` of them, so a single spike of a
    noisy trajectory is not a peak, and an exponential still growing at the end has its peak at the end.

    Example:
        >>> classify_phase([1.0, 0.5, 0.25, 0.125, 0.06]).phase
        'decay'
    """
    v = np.asarray(norms, dtype=np.float64)
    if v.ndim != 1 or len(v) < 2:
        raise ConfigError(f"`norms` must be a 1-d trajectory of at least 2 samples, got shape {v.shape}")
    osc = None if signed is None else oscillates(signed)
    if not np.all(np.isfinite(v)) or status == "diverged":
        return PhaseResult("divergent", "non-finite NIW norm or diverged run", math.inf, math.inf, osc)
    v0 = float(v[0])
    if v0 <= 0:
        raise ConfigError(f"`norms[0]` must be > 0 (a run whose NIWs start at zero has no phase), got {v0}")
    w = min(PEAK_WINDOW, len(v))
    smooth = np.convolve(v, np.ones(w) / w, mode="valid")  # one noisy sample is not a peak
    peak, final = float(smooth.max()) / v0, _final(v) / v0
    trough = float(smooth.min()) / v0
    # A peak whose window reaches into the final window has not been seen coming back: still rising.
    rising = int(smooth.argmax()) + w > len(v) - max(1, math.ceil(FINAL_WINDOW * len(v)))
    if losses is not None:
        loss = np.asarray(losses, dtype=np.float64)
        if not np.all(np.isfinite(loss)):
            return PhaseResult("divergent", "non-finite loss", peak, final, osc)
        if len(loss) >= 2 and _final(loss) > DIVERGENCE_LOSS_FACTOR * float(loss[0]) > 0:
            return PhaseResult("divergent", f"loss grew over {DIVERGENCE_LOSS_FACTOR:g}x", peak, final, osc)
    if peak >= CATAPULT_MIN_GROWTH:
        if final <= CATAPULT_MAX_RETURN * peak and not rising:
            return PhaseResult(
                "catapult", f"grew {peak:.3g}x, then fell to {final / peak:.2g} of the peak", peak, final, osc
            )
        second_half = float(np.mean(v[len(v) // 2 :])) / v0
        if final <= PLATEAU_MAX_RISE * second_half:
            reason = f"grew {peak:.3g}x, did not come back, and stopped growing (a plateau at {final:.3g}x)"
            return PhaseResult("divergent", reason, peak, final, osc, drift=True)
        return PhaseResult("divergent", f"grew {peak:.3g}x and did not come back", peak, final, osc)
    if final > 1.0 + DECOUPLED_MAX_CHANGE:
        reason = f"grew to {final:.3g}x and was still up at the end"
        return PhaseResult("divergent", reason, peak, final, osc, drift=True)
    if final >= 1.0 - DECOUPLED_MAX_CHANGE:
        if trough <= 1.0 - DECAY_FLOOR_DROP:
            reason = f"fell to {trough:.3g}x, then sat at a floor ({final:.3g}x at the end)"
            return PhaseResult("decay", reason, peak, final, osc)
        return PhaseResult("decoupled", f"final norm {final:.3g}x the initial one", peak, final, osc)
    return PhaseResult("decay", f"final norm {final:.3g}x the initial one", peak, final, osc)


@dataclass(frozen=True)
class NodesPhase:
    """The phase of a run with one NIW trajectory per node: the deciding node's result, and every node's."""

    result: PhaseResult
    node: str  # the node whose phase is the run's
    nodes: dict[str, str]  # every node's phase

    @property
    def phase(self) -> str:
        return self.result.phase

    def as_dict(self) -> dict[str, object]:
        return {**self.result.as_dict(), "node": self.node, "nodes": dict(self.nodes)}


def classify_nodes(
    norms: Mapping[str, Series], losses: Series | None = None, *, status: str | None = None
) -> NodesPhase:
    """The phase of a run from each node's NIW norm trajectory (full-NINR has one node per layer).

    Each node is classified on its own with :func:`classify_phase`; the run's phase is that of the node
    first in :data:`PHASE_PRECEDENCE` (a drifting node counts as ``drift``; among equals, the node with
    the largest peak decides).
    Node by node, not on the total norm: the nodes' curvatures differ by orders of magnitude (in the
    3-layer MLP the output node's is ~250x the input node's), so a total norm dominated by the large,
    quiet input-layer node hides an output node that catapults.

    Example:
        >>> classify_nodes({"fc1": [1.0, 0.99, 0.98], "out": [1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 1.0, 1.0]}).phase
        'catapult'
    """
    if not norms:
        raise ConfigError("`norms` must hold at least one node's trajectory, got none")
    results = {name: classify_phase(v, losses, status=status) for name, v in norms.items()}
    rank = {p: i for i, p in enumerate(PHASE_PRECEDENCE)}

    def order(name: str) -> tuple[int, float]:
        r = results[name]
        return rank["drift" if r.drift else r.phase], -r.peak_ratio

    node = min(results, key=order)
    return NodesPhase(results[node], node, {n: r.phase for n, r in results.items()})
