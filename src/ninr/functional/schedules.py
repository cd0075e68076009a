"""Schedules for any noise scale: pure functions of the training step.

A schedule gives the *factor* that multiplies a base noise scale (a standard deviation) at step
``t`` (0-based SGD steps): ``scale_t = base * factor(t)``. All factors start at 1 at ``t = 0``.

| name | factor(t) | parameters |
|---|---|---|
| ``constant`` | 1 | |
| ``linear`` | 1 - (1 - final) min(t, T) / T | ``decay_steps`` T, ``final`` |
| ``cosine`` | final + (1 - final) (1 + cos(pi min(t, T) / T)) / 2 | ``decay_steps`` T, ``final`` |
| ``anneal`` | (1 + t)^(-gamma / 2) | ``gamma`` (0.55 in Neelakantan et al. 2015) |

``anneal`` is the annealing of Neelakantan et al. (2015), "Adding Gradient Noise Improves Learning
for Very Deep Networks": their noise *variance* is eta / (1 + t)^gamma, so its standard deviation
is sqrt(eta) (1 + t)^(-gamma/2). With ``base = sqrt(eta)`` the schedule reproduces it exactly.
``linear`` and ``cosine`` follow optax's ``linear_schedule`` / ``cosine_decay_schedule``: they
reach ``final`` after ``decay_steps`` steps and stay there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from ninr.errors import check_nonneg, check_nonneg_int, check_positive_int, fail
from ninr.registry import Registry

NEELAKANTAN_GAMMA = 0.55
"""gamma of Neelakantan et al. (2015), section 2: variance eta / (1 + t)^0.55."""


class ScheduleFn(Protocol):
    """``factor(step, *, decay_steps, final, gamma) -> float``; each schedule reads what it needs."""

    def __call__(self, step: int, *, decay_steps: int | None, final: float, gamma: float) -> float: ...


SCHEDULES: Registry[ScheduleFn] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(step: int, *, decay_steps: int | None = None, final: float = 0.0, gamma: float = 0.0) -> float:
    """Factor 1 at every step."""
    return 1.0


def _progress(step: int, decay_steps: int | None) -> float:
    if decay_steps is None:
        raise fail("decay_steps", "an integer >= 1 for a decaying schedule", None)
    return min(step, decay_steps) / decay_steps


@SCHEDULES.register("linear")
def linear(step: int, *, decay_steps: int | None = None, final: float = 0.0, gamma: float = 0.0) -> float:
    """Linear decay from 1 to ``final`` over ``decay_steps`` steps, then constant."""
    return 1.0 - (1.0 - final) * _progress(step, decay_steps)


@SCHEDULES.register("cosine")
def cosine(step: int, *, decay_steps: int | None = None, final: float = 0.0, gamma: float = 0.0) -> float:
    """Half-cosine decay from 1 to ``final`` over ``decay_steps`` steps, then constant."""
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * _progress(step, decay_steps)))


@SCHEDULES.register("anneal")
def anneal(step: int, *, decay_steps: int | None = None, final: float = 0.0, gamma: float = NEELAKANTAN_GAMMA) -> float:
    """Neelakantan et al. (2015) annealing of a standard deviation: (1 + step)^(-gamma/2)."""
    return float((1.0 + step) ** (-gamma / 2.0))


@dataclass(frozen=True)
class Schedule:
    """A validated schedule: ``Schedule("cosine", decay_steps=1000)(step) -> factor``.

    Args:
        name: a name in :data:`SCHEDULES` (``ninr list schedules``).
        decay_steps: steps until ``final`` is reached (``linear`` and ``cosine`` need it).
        final: the factor after ``decay_steps`` (``linear``, ``cosine``), in [0, 1].
        gamma: exponent of ``anneal`` (variance decays as (1 + t)^-gamma).

    Example:
        >>> Schedule("linear", decay_steps=10)(5)
        0.5
    """

    name: str = "constant"
    decay_steps: int | None = None
    final: float = 0.0
    gamma: float = NEELAKANTAN_GAMMA

    def __post_init__(self) -> None:
        SCHEDULES.get(self.name)
        if self.decay_steps is not None or self.name in ("linear", "cosine"):
            if self.decay_steps is None:
                raise fail("decay_steps", f"an integer >= 1 for schedule {self.name!r}", None)
            check_positive_int("decay_steps", self.decay_steps)
        if check_nonneg("final", self.final) > 1:
            raise fail("final", "a number in [0, 1]", self.final)
        check_nonneg("gamma", self.gamma)

    def __call__(self, step: int) -> float:
        """The factor at ``step`` (an integer >= 0)."""
        check_nonneg_int("step", step)
        fn = SCHEDULES.get(self.name)
        return fn(step, decay_steps=self.decay_steps, final=self.final, gamma=self.gamma)


def scheduled_scale(base: float, step: int, schedule: Schedule) -> float:
    """``base * schedule(step)``: the noise standard deviation at ``step``."""
    return base * schedule(step)
