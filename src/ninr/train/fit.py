"""The training loop: SGD over in-memory tensors for K runs through a backend (K = 1 for one model).

Every per-run semantic is defined here once, whatever the backend: each run draws its batches from its own
seeded permutation of the training set (its ``data-order`` stream; no DataLoader workers), its methods
transform its batches with their own streams, a run whose loss stops being finite is recorded as
``diverged`` and frozen where it stopped while the others go on, methods add penalty gradients and then run
their gradient hooks on the run's own model, and each run's callbacks see the run's own state. After every
epoch each run is evaluated and gets one record (:func:`epoch_record`).

The backend (:mod:`ninr.train.backends`) only lays the computation out: one model, or K as one stack.

Epoch checkpoints (one run): after each epoch's callbacks, ``fit(..., checkpoint=save)`` hands ``save`` a
:func:`snapshot` of everything the rest of the run depends on (model, optimizer state, the global step, the
data-order, method and noise-module generators, torch's global RNG, the records so far), and
``fit(..., resume=snapshot)`` continues from one: on the same machine, thread count and code path the
continued run computes bit for bit what the uninterrupted run computes after that epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ninr.data.base import Dataset
from ninr.errors import NinrError
from ninr.methods.base import Method, StepContext
from ninr.nn.attach import niws
from ninr.nn.modes import NoiseModule
from ninr.perf import autocast, check_precision, resolve_precision
from ninr.rng import make_generator
from ninr.train.backends.base import Backend
from ninr.train.callbacks import Callback, FitState
from ninr.train.config import TrainConfig


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in the model's current mode."""
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        total_loss += F.cross_entropy(logits.float(), target, reduction="sum").double()
        correct += (logits.argmax(dim=1) == target).sum()
    n = max(len(x), 1)
    return total_loss.item() / n, correct.item() / n


@dataclass
class _Run:
    """What the loop keeps for one run: its config, methods, streams, callbacks and state."""

    config: TrainConfig
    methods: Sequence[Method]
    order: torch.Generator
    method_gens: list[torch.Generator]
    callbacks: list[Callback]
    state: FitState

    def ctx(self, method: int, step: int) -> StepContext:
        return StepContext(step, self.state.epoch, self.method_gens[method])


Snapshot = dict[str, Any]
"""What :func:`snapshot` returns: ``{"tensors": {...}, "info": {...}}`` (tensors and JSON-ready data apart)."""


def fit(
    backend: Backend,
    data: Dataset,
    configs: Sequence[TrainConfig],
    methods: Sequence[Sequence[Method]],
    callbacks: Sequence[Sequence[Callback]] | None = None,
    *,
    resume: Mapping[str, Any] | None = None,
    checkpoint: Callable[[Snapshot], None] | None = None,
) -> list[FitState]:
    """Train the K runs of ``backend`` in place; returns each run's final state, with one record per epoch.

    ``configs``, ``methods`` and ``callbacks`` hold one entry per run (``callbacks=None``: none). Fields shared
    by a stack (epochs, batch size, precision, ...) are read from ``configs[0]``.

    One run (K = 1) may be checkpointed and resumed: ``checkpoint`` is called with a :func:`snapshot` after each
    epoch's callbacks, and ``resume`` (such a snapshot) restores the run before ``on_train_start`` and continues
    with the epoch after it (its callbacks see ``state.epoch`` and ``state.records`` as restored).
    """
    k = backend.k
    per_run = [list(c) for c in callbacks] if callbacks is not None else [[] for _ in range(k)]
    if not len(configs) == len(methods) == len(per_run) == k:
        raise NinrError(f"fit: one config, method list and callback list per run ({k}) are needed")
    if (resume is not None or checkpoint is not None) and k != 1:
        raise NinrError(f"fit: epoch checkpoints and resuming are for one run, got a stack of {k}")
    cfg, device = configs[0], data.x_train.device
    check_precision(cfg.precision, device)
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.batch_size)
    runs = [
        _Run(
            c,
            ms,
            make_generator(c.seed, "data-order", device=device),
            [make_generator(c.seed, "method", m.name, device=device) for m in ms],
            cbs,
            FitState(model, opt, cfg.epochs, steps_per_epoch),
        )
        for c, ms, cbs, model, opt in zip(configs, methods, per_run, backend.models, backend.optimizers, strict=True)
    ]
    first = 0 if resume is None else restore(runs[0], resume)
    for run in runs:
        for cb in run.callbacks:
            cb.on_train_start(run.state)
    loop = _Epochs(backend, data, runs)
    if resume is not None:
        loop.step = int(resume["info"]["step"])
        restore_global_rng(resume, device)  # last: callbacks above must not draw from it, and the run then does
    for epoch in range(first, cfg.epochs):
        running = [r for r in runs if r.state.status == "running"]
        if not running:
            break
        for run in running:  # a finished run's state stays where it ended
            run.state.epoch = epoch
        start = time.perf_counter()
        sums = loop.epoch()
        seconds = (time.perf_counter() - start) / len(running)  # a stack's time, shared by its runs
        for run in running:
            i = runs.index(run)
            loss, correct, seen = sums[0][i], sums[1][i], sums[2][i]
            train_loss, train_acc = (loss / seen, correct / seen) if seen else (math.nan, math.nan)
            record = epoch_record(run.state, data, run.config, train_loss, train_acc, seen, seconds)
            run.state.records.append(record)
            for cb in run.callbacks:
                cb.on_epoch_end(run.state, record)
        if checkpoint is not None:
            checkpoint(snapshot(runs[0], epoch + 1, loop.step))
    for run in runs:
        if run.state.status == "running":
            run.state.status = "completed"
        for cb in run.callbacks:
            cb.on_train_end(run.state)
    return [run.state for run in runs]


def _noise_modules(model: nn.Module) -> dict[str, NoiseModule]:
    return {name: m for name, m in model.named_modules() if isinstance(m, NoiseModule)}


def snapshot(run: _Run, epochs_done: int, step: int) -> Snapshot:
    """Everything the rest of ``run`` depends on after ``epochs_done`` epochs (global step ``step``).

    ``tensors``: the model's state_dict, the optimizer's, and every generator's state: the run's data order, each
    method's stream, each noise module's per-device streams (by module name) and torch's global generator (and
    the CUDA one on a CUDA device), which code the library does not own draws from inside the run's scoped
    global seed. ``info``: the epoch and step counts, the status and the records so far.
    """
    state, device = run.state, run.order.device
    rng: dict[str, Any] = {
        "data_order": run.order.get_state(),
        "methods": [g.get_state() for g in run.method_gens],
        "noise": {
            name: {str(dev): s for dev, s in m.get_rng_state().items()}
            for name, m in _noise_modules(state.model).items()
        },
        "global": torch.get_rng_state(),
    }
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    tensors: dict[str, Any] = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "rng": rng,
        "loss": None if state.loss is None else state.loss.detach().cpu(),
    }
    info = {
        "epochs_done": epochs_done,
        "step": step,
        "state_step": state.step,
        "status": state.status,
        "records": [dict(r) for r in state.records],
    }
    return {"tensors": tensors, "info": info}


def restore(run: _Run, saved: Mapping[str, Any]) -> int:
    """Put ``run`` (just prepared, not yet trained) in the state a :func:`snapshot` describes; returns the epochs
    done. torch's global generator is restored separately (:func:`restore_global_rng`), right before training.

    Raises:
        NinrError: The snapshot's generators or noise modules do not match this run's (another setup).
    """
    tensors, info = saved["tensors"], saved["info"]
    state, rng = run.state, tensors["rng"]
    modules = _noise_modules(state.model)
    if set(rng["noise"]) - set(modules) or len(rng["methods"]) != len(run.method_gens):
        raise NinrError(
            f"the checkpoint's noise modules {sorted(rng['noise'])} and {len(rng['methods'])} method stream(s) "
            f"do not match this run's {sorted(modules)} and {len(run.method_gens)}"
        )
    state.model.load_state_dict(tensors["model"])
    state.optimizer.load_state_dict(tensors["optimizer"])
    run.order.set_state(rng["data_order"])
    for gen, s in zip(run.method_gens, rng["methods"], strict=True):
        gen.set_state(s)
    for name, states in rng["noise"].items():
        modules[name].set_rng_state({torch.device(dev): s for dev, s in states.items()})
    loss = tensors["loss"]
    state.loss = None if loss is None else loss.to(run.order.device)
    state.step, state.status = int(info["state_step"]), str(info["status"])
    state.records = [dict(r) for r in info["records"]]
    state.epoch = int(info["epochs_done"])
    return int(info["epochs_done"])


def restore_global_rng(saved: Mapping[str, Any], device: torch.device) -> None:
    """Set torch's global generator (and the CUDA one on ``device``) as a :func:`snapshot` recorded them."""
    rng = saved["tensors"]["rng"]
    torch.set_rng_state(rng["global"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)


class _Epochs:
    """The per-step work of :func:`fit`, with what lives across epochs (the global step count)."""

    def __init__(self, backend: Backend, data: Dataset, runs: list[_Run]) -> None:
        self.backend, self.data, self.runs = backend, data, runs
        self.cfg = runs[0].config
        self.device = data.x_train.device
        self.precision = resolve_precision(self.cfg.precision, self.device)  # checked in fit; "auto" resolved once
        self.transforms = [any(type(m).transform_batch is not Method.transform_batch for m in r.methods) for r in runs]
        self.penalties = [[m for m in r.methods if type(m).penalty is not Method.penalty] for r in runs]
        self.grad_hooks = any(
            type(m).add_penalty_grad is not Method.add_penalty_grad
            or type(m).on_grad_computed is not Method.on_grad_computed
            for r in runs
            for m in r.methods
        )
        self.step = 0

    def epoch(self) -> tuple[list[float], list[int], list[int]]:
        """One pass over each run's fresh permutation; returns each run's summed loss, hits and examples."""
        backend, runs, cfg = self.backend, self.runs, self.cfg
        backend.train(True)
        x_all, y_all = self.data.x_train, self.data.y_train
        perms = [torch.randperm(len(x_all), generator=r.order, device=x_all.device) for r in runs]
        active = torch.tensor([r.state.status == "running" for r in runs], device=self.device)
        live = [i for i, r in enumerate(runs) if r.state.status == "running"]
        all_active = len(live) == len(runs)
        loss_sum = torch.zeros(len(runs), dtype=torch.float64, device=self.device)
        correct = torch.zeros(len(runs), dtype=torch.int64, device=self.device)
        seen = torch.zeros(len(runs), dtype=torch.int64, device=self.device)
        last: torch.Tensor | None = None
        for idx in backend.batches(perms, cfg.batch_size):
            if cfg.max_steps is not None and self.step >= cfg.max_steps:
                for i in live:
                    runs[i].state.status = "stopped"
                break
            x, y = self._batch(x_all[idx], y_all[idx], live)
            with autocast(self.precision, x.device):  # a no-op in fp32, the default
                logits, losses = backend.forward(x, y)
            finite = torch.isfinite(losses.detach())
            if not bool(finite.all() if all_active else finite[active].all()):
                for i in live:
                    if not bool(finite[i]):
                        state = runs[i].state
                        state.status, state.loss, state.step = "diverged", losses[i].detach(), self.step
                active = active & finite
                live, all_active = [i for i in live if bool(finite[i])], False
                if not live:
                    break
            self._update(losses, None if all_active else active, live)
            self.step += 1
            last = losses.detach()
            self._step_end(live, last)
            hits, n = backend.hits(logits, y), backend.examples(y)
            if all_active:
                loss_sum += last.double() * n
                correct += hits
                seen += n
            else:
                loss_sum += torch.where(active, last.double() * n, 0.0)
                correct += torch.where(active, hits, 0)
                seen += active.long() * n
        for i in live:
            runs[i].state.step = self.step
            if last is not None:
                runs[i].state.loss = last[i]
        return loss_sum.tolist(), correct.tolist(), seen.tolist()

    def _batch(self, x: torch.Tensor, y: torch.Tensor, live: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each run's methods transform the run's own part of the batch, with their own streams."""
        if not any(self.transforms):
            return x, y
        parts = self.backend.split(x, y)
        for i, run in enumerate(self.runs):
            if not self.transforms[i]:
                continue
            xi, yi = parts[i]
            for j, m in enumerate(run.methods):
                xi, yi = m.transform_batch(xi, yi, run.ctx(j, self.step))
            parts[i] = (xi, yi)
        return self.backend.join(parts)

    def _update(self, losses: torch.Tensor, active: torch.Tensor | None, live: list[int]) -> None:
        """Backward through the active runs' losses (and penalties), gradient hooks per run, one SGD step."""
        backend = self.backend
        objective = losses.sum() if active is None else torch.where(active, losses, 0.0).sum()
        for i in live:
            for m in self.penalties[i]:
                extra = m.penalty(backend.models[i])
                if extra is not None:
                    objective = objective + extra
        backend.zero_grad()
        objective.backward()
        if self.grad_hooks:
            backend.expose_grads()
            for i in live:
                run, model = self.runs[i], backend.models[i]
                for m in run.methods:
                    m.add_penalty_grad(model)
                for j, m in enumerate(run.methods):
                    m.on_grad_computed(model, run.ctx(j, self.step))
        backend.step(active)

    def _step_end(self, live: list[int], losses: torch.Tensor) -> None:
        """Bring each live run's state up to this step and call its ``on_step_end`` callbacks."""
        for i in live:
            run = self.runs[i]
            if run.callbacks:
                run.state.step, run.state.loss = self.step, losses[i]
                for cb in run.callbacks:
                    cb.on_step_end(run.state)


def epoch_record(
    state: FitState,
    data: Dataset,
    config: TrainConfig,
    train_loss: float,
    train_acc: float,
    seen: int,
    seconds: float,
) -> dict[str, Any]:
    """A run's record of one epoch: training loss and accuracy, validation and test metrics, NIW norms, time.

    The model is evaluated in eval mode (noise off). A diverged run gets NaN test metrics; a finite loss
    whose test loss is not finite ends the run as diverged.
    """
    record: dict[str, Any] = {
        "epoch": state.epoch + 1,
        "step": state.step,
        "examples": seen,
        "train_loss": train_loss,
        "train_acc": train_acc,
    }
    model = state.model
    model.eval()
    if data.x_val is not None and data.y_val is not None and len(data.x_val):
        record["val_loss"], record["val_acc"] = evaluate(
            model, data.x_val, data.y_val, batch_size=config.eval_batch_size
        )
    if state.status == "diverged":
        record["test_loss"], record["test_acc"] = math.nan, math.nan
    else:
        record["test_loss"], record["test_acc"] = evaluate(
            model, data.x_test, data.y_test, batch_size=config.eval_batch_size
        )
        if not math.isfinite(record["test_loss"]):
            state.status = "diverged"
    for name, w in niws(model).items():
        record[f"niw_norm/{name}"] = float(w.detach().norm())
    record["epoch_time_s"] = seconds
    record["status"] = state.status if state.status != "running" else "ok"
    return record
