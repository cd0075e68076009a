"""Probe callbacks: read a training run at a cadence, never change it.

Every probe only reads the model (in eval mode with all noise off, or with noise drawn from the
probe's own generator and replayed), restores every module's mode, and draws nothing from the run's
streams: attaching probes leaves the trajectory bit for bit unchanged (tested). Each probe appends
one dict per measurement to its ``rows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ninr.curvature.hessian import HessianOperator, LossFn, get_loss, hutchinson_trace, top_eigenvalue
from ninr.curvature.replay import replaying
from ninr.errors import check_nonneg_int, check_positive_int
from ninr.nn.attach import niws
from ninr.rng import make_generator
from ninr.train.callbacks import Callback, FitState


class _Every(Callback):
    """Runs :meth:`measure` at step 0 (before training) and every ``every`` steps after."""

    def __init__(self, every: int) -> None:
        self.every = check_positive_int("every", every)
        self.rows: list[dict[str, Any]] = []

    def on_train_start(self, state: FitState) -> None:
        self.rows.append({"step": state.step, **self.measure(state)})

    def on_step_end(self, state: FitState) -> None:
        if state.step % self.every == 0:
            self.rows.append({"step": state.step, **self.measure(state)})

    def measure(self, state: FitState) -> dict[str, Any]:
        raise NotImplementedError

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one recorded quantity."""
        pairs = [(r["step"], r[key]) for r in self.rows if key in r]
        return [p[0] for p in pairs], [p[1] for p in pairs]


class NIWProbe(_Every):
    """The norm of every node's NIW (``niw_norm/<layer>``), and the value of one-unit NIWs (``niw/<layer>``)."""

    def __init__(self, every: int = 1) -> None:
        super().__init__(every)
        self._model: torch.nn.Module | None = None
        self._niws: dict[str, torch.nn.Parameter] = {}

    @torch.no_grad()
    def measure(self, state: FitState) -> dict[str, Any]:
        if state.model is not self._model:  # the module walk once per model, not at every sample
            self._model, self._niws = state.model, niws(state.model)
        if not self._niws:
            return {}
        ws = list(self._niws.values())
        norms = torch.stack([torch.linalg.vector_norm(w) for w in ws]).tolist()  # one host transfer
        row: dict[str, Any] = {}
        for (name, w), norm in zip(self._niws.items(), norms, strict=True):
            row[f"niw_norm/{name}"] = norm
            if w.numel() == 1:
                row[f"niw/{name}"] = float(w.reshape(()))
        return row


class LossProbe(_Every):
    """Loss (and accuracy for classification) on fixed batches, noise off: ``<split>_loss`` per split."""

    def __init__(
        self,
        splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
        *,
        every: int = 50,
        loss: str | LossFn = "cross_entropy",
        batch_size: int = 2000,
    ) -> None:
        super().__init__(every)
        self.splits = splits
        self.loss_name = loss
        self.loss_fn = get_loss(loss)
        self.batch_size = check_positive_int("batch_size", batch_size)

    @torch.no_grad()
    def measure(self, state: FitState) -> dict[str, Any]:
        row: dict[str, Any] = {}
        with replaying(state.model, None) as model:
            for split, (x, y) in self.splits.items():
                total, correct = 0.0, 0
                for start in range(0, len(x), self.batch_size):
                    out = model(x[start : start + self.batch_size])
                    target = y[start : start + self.batch_size]
                    total += float(self.loss_fn(out.float(), target)) * len(target)
                    if self.loss_name == "cross_entropy":
                        correct += int((out.argmax(dim=1) == target).sum())
                row[f"{split}_loss"] = total / max(len(x), 1)
                if self.loss_name == "cross_entropy":
                    row[f"{split}_acc"] = correct / max(len(x), 1)
        return row


class CurvatureProbe(_Every):
    """Top Hessian eigenvalue (and optionally the Hutchinson trace) on a fixed probe batch.

    The NIN noise is drawn from the probe's own generator (seeded by ``seed``) and frozen during the
    products. ``params``: ``"niw"`` (the NIW block, default), ``"all"`` or names / globs.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        every: int = 200,
        params: str | Sequence[str] = "niw",
        loss: str | LossFn = "cross_entropy",
        method: str = "lanczos",
        iters: int = 20,
        trace_samples: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(every)
        self.x, self.y = x, y
        self.params, self.loss, self.method, self.iters = params, loss, method, iters
        self.trace_samples = check_nonneg_int("trace_samples", trace_samples)
        self.seed = seed

    def measure(self, state: FitState) -> dict[str, Any]:
        gen = make_generator(self.seed, "curvature-probe", state.step, device=self.x.device)
        op = HessianOperator.for_model(
            state.model, self.x, self.y, params=self.params, loss=self.loss, noise="frozen", generator=gen
        )
        cpu_gen = make_generator(self.seed, "curvature-probe-vectors", state.step)
        row: dict[str, Any] = {
            "top_eig": top_eigenvalue(op, method=self.method, iters=self.iters, generator=cpu_gen).value
        }
        if self.trace_samples:
            tr = hutchinson_trace(op, samples=self.trace_samples, generator=cpu_gen)
            row["trace"], row["trace_err"] = tr.value, tr.stderr
        return row


def merge_rows(*probes: _Every) -> list[dict[str, Any]]:
    """One row per step with every probe's measurements at that step."""
    by_step: dict[int, dict[str, Any]] = {}
    for probe in probes:
        for row in probe.rows:
            by_step.setdefault(row["step"], {"step": row["step"]}).update(row)
    return [by_step[s] for s in sorted(by_step)]


def finite_or_nan(value: float) -> float:
    """``value`` if finite else NaN (JSON-safe records)."""
    return value if math.isfinite(value) else math.nan
