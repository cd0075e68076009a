"""The phase classifier's observables measured along a training run, per noise injection node.

:class:`NodeObserver` is a training callback. Every ``every`` steps (and before the first) it measures, for
each node, the top eigenvalue ``lambda`` and eigenvector ``v`` of the NIW block of the Hessian of the *noisy*
loss, on a fixed probe batch with one noise draw from its own generator (``k = eta lambda``, ``eta`` the run's
current learning rate); at every step it records the NIW's projection ``a = v . W_NI`` on the last measured
eigenvector, the top mode's noise energy ``1/2 lambda a^2`` and the training loss. At each measurement it also
records the full noise energy ``1/2 W_NI^T H W_NI`` (one more Hessian-vector product). It only reads the run:
its noise and vectors come from generators of its own, so attaching it leaves the trajectory bit for bit
unchanged (tested).

Cost: a measurement is ``iters`` Hessian-vector products on the probe batch per node; docs/dynamics.md
section 5 gives measured times. The NIW block of a dense or conv node is positive semi-definite almost
everywhere (the node enters its layer linearly, and ReLU has no curvature), so power iteration finds ``lambda``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ninr.curvature.hessian import HessianOperator, power_iteration
from ninr.dynamics.phases import NodeSeries
from ninr.errors import check_positive_int
from ninr.nn.attach import nin_nodes
from ninr.rng import make_generator
from ninr.train.callbacks import Callback, FitState

PROBE_SIZE = 1000
"""Examples in the probe batch: one noise draw's chi-square factor then moves ``lambda`` by a relative standard
error of about ``sqrt(2 / 1000) = 0.045`` (exact for the one-layer model, an estimate for a network)."""

OBSERVE_EVERY = 10
"""Steps between curvature measurements (a catapult's rise and fall lasts tens of steps)."""

POWER_ITERS = 30
"""Most power-iteration steps per measurement; each starts from the node's previous eigenvector, so a few
usually reach the tolerance."""

TOL = 1e-2
"""Relative change of the Rayleigh quotient that ends a power iteration: below the estimate's relative error
from the noise draw (``sqrt(2 / probe)``: 0.045 for 1000 examples, 0.06 for 512)."""


class NodeObserver(Callback):
    """Per node: ``k(t)`` every ``every`` steps; ``a(t)``, the top-mode energy and the loss every step.

    Args:
        x, y: the probe batch (fixed; e.g. a seeded subset of the training set).
        every: steps between curvature measurements.
        iters: power-iteration steps per measurement.
        seed: the seed of the observer's own noise draws and start vectors.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        every: int = OBSERVE_EVERY,
        iters: int = POWER_ITERS,
        seed: int = 0,
    ) -> None:
        self.x, self.y = x, y
        self.every = check_positive_int("every", every)
        self.iters = check_positive_int("iters", iters)
        self.seed = seed
        self.vectors: dict[str, torch.Tensor] = {}
        self.lam: dict[str, float] = {}
        self.rows: dict[str, list[dict[str, float]]] = {}
        self.k_rows: dict[str, list[dict[str, float]]] = {}

    def on_train_start(self, state: FitState) -> None:
        self._measure(state)
        self._sample(state, loss=math.nan)

    def on_step_end(self, state: FitState) -> None:
        if state.step % self.every == 0:
            self._measure(state)
        self._sample(state, loss=float(state.loss) if state.loss is not None else math.nan)

    def _niws(self, state: FitState) -> dict[str, torch.Tensor]:
        return {name: node.weight for name, node in nin_nodes(state.model).items()}

    def _measure(self, state: FitState) -> None:
        lr = float(state.optimizer.param_groups[0]["lr"])
        for name, weight in self._niws(state).items():
            gen = make_generator(self.seed, "observer-noise", state.step, device=self.x.device)
            param = f"{name}.nin.weight" if name else "nin.weight"
            op = HessianOperator.for_model(state.model, self.x, self.y, params=param, noise="frozen", generator=gen)
            start = make_generator(self.seed, "observer-start", name, state.step)
            previous = self.vectors.get(name)
            eig = power_iteration(op, iters=self.iters, tol=TOL, generator=start, start=previous)
            v = eig.vector if eig.vector is not None else torch.zeros(op.dim, dtype=op.dtype)
            if previous is not None and float(v @ previous) < 0:  # keep the eigenvector's sign along the run
                v = -v
            w = weight.detach().reshape(-1).to(op.dtype)
            full = 0.5 * float(w @ op.matvec(w))
            self.vectors[name], self.lam[name] = v.detach(), float(eig.value)
            row = {"step": state.step, "k": lr * eig.value, "lambda": eig.value, "energy_full": full}
            self.k_rows.setdefault(name, []).append(row)

    def _sample(self, state: FitState, *, loss: float) -> None:
        for name, weight in self._niws(state).items():
            v = self.vectors[name]
            a = float(weight.detach().reshape(-1).to(v.dtype) @ v)
            row = {"step": state.step, "a": a, "energy": 0.5 * self.lam[name] * a * a, "loss": loss}
            self.rows.setdefault(name, []).append(row)

    def series(self) -> dict[str, NodeSeries]:
        """Each node's :class:`~ninr.dynamics.phases.NodeSeries` (nodes with fewer than 2 samples left out)."""
        out = {}
        rel = math.sqrt(2.0 / len(self.y))
        for name, rows in self.rows.items():
            if len(rows) < 2:
                continue
            ks = self.k_rows[name]
            steps = np.array([r["step"] for r in rows], dtype=np.float64)
            loss = np.array([r["loss"] for r in rows])
            loss[0] = loss[1] if len(loss) > 1 else loss[0]  # no training loss before the first step
            out[name] = NodeSeries(
                steps,
                np.array([r["a"] for r in rows]),
                np.array([r["energy"] for r in rows]),
                np.array([r["step"] for r in ks], dtype=np.float64),
                np.array([r["k"] for r in ks]),
                loss,
                rel,
            )
        return out

    def k_records(self) -> list[dict[str, Any]]:
        """One tidy row per (node, measurement): step, k, lambda, the full noise energy, the top-mode projection."""
        out = []
        for name, ks in self.k_rows.items():
            a_by_step = {r["step"]: r["a"] for r in self.rows.get(name, [])}
            for r in ks:
                out.append({"node": name, **r, "a": a_by_step.get(r["step"], math.nan)})
        return out
