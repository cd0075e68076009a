"""Run hooks shipped with ninr: ``phase``, the phase classifier's verdict on each NINR run.

``hooks = ["phase"]`` in a study section records the norm of all noise injection weights (the
root of the sum of squares over every node, so in-NINR and full-NINR read alike) every
``PHASE_EVERY`` SGD steps, from before the first step to the end, and adds to the run's final
record what :func:`ninr.probes.classify_phase` makes of it: ``phase`` (decoupled, decay, catapult or
divergent), ``phase_reason``, ``niw_peak_ratio`` and ``niw_final_ratio``. A run without NIWs (None,
L2, Dropout, CDT) has no NIN phase: it gets no ``phase`` field, and the table shows ``n/a``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ninr.experiments.run import RUN_HOOKS, RunHook
from ninr.probes.niw import NIWProbe
from ninr.probes.phases import classify_phase

if TYPE_CHECKING:
    from ninr.experiments.sweep import RunSpec
    from ninr.train.run import TrainResult

PHASE_EVERY = 5
"""SGD steps between NIW samples: fine enough to resolve a catapult spike of a few tens of steps,
and a few hundred samples over the shortest (quick) runs."""


class PhaseHook(NIWProbe, RunHook):
    """Samples the total NIW norm during training and classifies the run's phase at the end."""

    def __init__(self, spec: RunSpec, every: int = PHASE_EVERY) -> None:
        NIWProbe.__init__(self, every)
        self.spec = spec

    def norms(self) -> list[float]:
        """The total NIW norm at each sample (empty when the model has no NIWs)."""
        out = []
        for row in self.rows:
            parts = [v for k, v in row.items() if k.startswith("niw_norm/")]
            if parts:
                out.append(math.sqrt(sum(v * v for v in parts)))
        return out

    def summary(self, result: TrainResult) -> dict[str, Any]:
        norms = self.norms()
        if len(norms) < 2 or norms[0] <= 0:
            return {}
        verdict = classify_phase(norms, status=result.status)
        return {
            "phase": verdict.phase,
            "phase_reason": verdict.reason,
            "niw_peak_ratio": verdict.peak_ratio,
            "niw_final_ratio": verdict.final_ratio,
        }


RUN_HOOKS.add("phase", PhaseHook, doc="The phase classifier's verdict (decay, catapult, ...) on each NINR run.")
