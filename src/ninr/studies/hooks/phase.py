"""Run hook ``phase``: the phase classifier's verdict on each NINR run, from the nodes' dynamics.

``hooks = ["phase"]`` in a grid section attaches a :class:`~ninr.dynamics.observe.NodeObserver` to every
run: each node's ``k(t) = eta lambda_max`` of the NIW block of the noisy loss every ``every`` steps on a
seeded probe batch of the run's training data, its NIW's projection on the top eigenvector and the top mode's
energy every step. The final record gets :func:`ninr.dynamics.phases.classify_nodes`' verdict: ``phase``
(decoupled, decay, catapult or divergent), ``phase_reason``, ``phase_node`` (the node that decided it),
``phase_nodes`` (every node's phase), and the deciding node's ``k_max``, ``k_final``, ``k_sum``,
``energy_rise`` and ``rho``. The measurements become rows of their own (``kind = "curvature"``: step, node,
``k``, ``lambda``, the full noise energy, the projection), which the report draws as ``k(t)`` with the lines
``k = 2`` and ``k = 4``. A run without NIWs (None, L2, Dropout, CDT) has no NIN phase and no such rows.

Settings, ``[<part>.options.phase]`` (they join the run ids): ``every`` (steps between measurements,
default ``PHASE_EVERY``), ``probe`` (examples in the probe batch, default ``PHASE_PROBE``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ninr.data.base import Dataset, load_dataset
from ninr.dynamics.observe import NodeObserver
from ninr.dynamics.phases import classify_nodes
from ninr.errors import ConfigError, check_positive_int, did_you_mean, fail
from ninr.rng import make_generator
from ninr.studies.hook import RUN_HOOKS, RunHook
from ninr.studies.records import Records
from ninr.studies.spec import RunSpec
from ninr.train.callbacks import FitState
from ninr.train.run import TrainResult

PHASE_EVERY = 50
"""Steps between curvature measurements in a table run. A measurement of a node costs a few Hessian-vector
products on the probe batch (power iteration from the previous eigenvector, about 5), each a few forward
passes of the probe batch: cheap for the MLP, about a second for the CNN's conv1 node at 256 examples on one
CPU thread (docs/dynamics.md section 5). Phase studies measure more often (``ninr.dynamics.observe.OBSERVE_EVERY``)."""

PHASE_PROBE = 256
"""Examples in the hook's probe batch: a relative standard error of about ``sqrt(2 / 256) = 0.09`` per
measurement of ``k`` (the classifier's tolerance scales with it)."""

SETTING_KEYS = ("every", "probe")


@dataclass(frozen=True)
class PhaseSettings:
    """How often and on how many examples the hook measures the curvature."""

    every: int = PHASE_EVERY
    probe: int = PHASE_PROBE

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PhaseSettings:
        raw = options.get("phase", {})
        if not isinstance(raw, Mapping):
            raise fail("options.phase", "a table", raw)
        for key in raw:
            if key not in SETTING_KEYS:
                allowed = ", ".join(SETTING_KEYS)
                raise ConfigError(f"unknown key {key!r}{did_you_mean(key, SETTING_KEYS)} (allowed: {allowed})")
        every = check_positive_int("every", raw.get("every", PHASE_EVERY))
        return cls(every, check_positive_int("probe", raw.get("probe", PHASE_PROBE)))


def probe_batch(data: Dataset, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of the training set (its own stream: the run's batches are not touched)."""
    gen = make_generator(seed, "phase-hook-probe")
    idx = torch.randperm(len(data.x_train), generator=gen)[:size]
    return data.x_train[idx], data.y_train[idx]


class PhaseHook(RunHook):
    """Observes each node's dynamics during training and classifies the run's phase at the end."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.settings = PhaseSettings.from_options(spec.options.hook_options)
        self.observer: NodeObserver | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        PhaseSettings.from_options(options)

    def on_train_start(self, state: FitState) -> None:
        config = self.spec.options.train
        data = load_dataset(config.dataset, **dict(config.dataset_kwargs))
        x, y = probe_batch(data, self.settings.probe, self.spec.seed)
        device = next(state.model.parameters()).device
        self.observer = NodeObserver(x.to(device), y.to(device), every=self.settings.every, seed=self.spec.seed)
        self.observer.on_train_start(state)

    def on_step_end(self, state: FitState) -> None:
        if self.observer is not None:
            self.observer.on_step_end(state)

    def summary(self, result: TrainResult) -> dict[str, Any]:
        series = self.observer.series() if self.observer is not None else {}
        if not series:
            return {}
        verdict = classify_nodes(series, status=result.status)
        r = verdict.result
        return {
            "phase": verdict.phase,
            "phase_reason": f"{verdict.node}: {r.reason}",
            "phase_node": verdict.node,
            "phase_nodes": verdict.nodes,
            "k_max": r.k_max,
            "k_final": r.k_final,
            "k_sum": r.k_sum,
            "energy_rise": r.energy_rise,
            "rho": r.rho,
        }

    def records(self, result: TrainResult, data: Dataset) -> Records:
        rows = self.observer.k_records() if self.observer is not None else []
        return [{"kind": "curvature", **row} for row in rows]


RUN_HOOKS.add("phase", PhaseHook, doc="The phase of each NINR run from its nodes' k(t) (the phase classifier).")
