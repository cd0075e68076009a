"""The fit loop of K stacked runs: :func:`ninr.train.loop.fit` for K runs at once, step for step.

Every run keeps what makes it itself: its permutation of the training set (its own ``data-order``
generator), its methods' generators, its noise nodes' generators, its learning rate and momentum, and
its records (written by the same ``_epoch_record`` as a lone run, on its own model, whose parameters
are views of its slice of the stack). The summed loss of the K runs has, for each run's parameters,
exactly that run's gradient, because no op mixes slices. A run whose loss stops being finite is frozen
where a lone run would have stopped; the others go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ninr.data.base import Dataset
from ninr.errors import NinrError
from ninr.methods.base import Method, StepContext
from ninr.perf import autocast
from ninr.rng import make_generator
from ninr.train.callbacks import FitState
from ninr.train.config import TrainConfig
from ninr.train.loop import _epoch_record
from ninr.train.stacked_model import StackedNet
from ninr.train.stacked_ops import stacked_cross_entropy

EpochHook = Callable[[int, dict[str, Any]], None]
"""Called with (run index, record) after each run's epoch record exists."""


class StackedSGD:
    """Plain SGD (PyTorch's update, dampening 0, no Nesterov) with a learning rate and momentum per run.

    Every stacked tensor is contiguous with run k's values in block k, so ``view(K, -1)`` gives each
    run a row and one in-place ``addcmul_`` updates all runs.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: Sequence[float], momentum: Sequence[float]) -> None:
        self.params = list(params)
        self.k = len(lr)
        self.neg_lr = -torch.tensor(lr, dtype=self.params[0].dtype, device=self.params[0].device).view(self.k, 1)
        self.momentum = torch.tensor(momentum, dtype=self.params[0].dtype, device=self.params[0].device)
        self.momentum = self.momentum.view(self.k, 1)
        self.use_momentum = any(m != 0 for m in momentum)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One update; with ``active`` (K,) bool, runs marked False keep their parameters."""
        keep = None if active is None else active.view(self.k, 1)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            p2, g2 = p.view(self.k, -1), p.grad.view(self.k, -1)
            if self.use_momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g2.clone()
                else:
                    buf.mul_(self.momentum).add_(g2)
                g2 = buf
            if keep is None:
                p2.addcmul_(g2, self.neg_lr)
            else:
                p2.copy_(torch.where(keep, torch.addcmul(p2, g2, self.neg_lr), p2))


def fit_stacked(
    net: StackedNet,
    data: Dataset,
    configs: Sequence[TrainConfig],
    methods: Sequence[Sequence[Method]],
    on_epoch_end: EpochHook | None = None,
) -> list[FitState]:
    """Train the K runs of ``net`` in place; returns one final state (with its records) per run."""
    cfg = configs[0]
    device = data.x_train.device
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.batch_size)
    states = [
        FitState(m, torch.optim.SGD(m.parameters(), lr=c.lr, momentum=c.momentum), cfg.epochs, steps_per_epoch)
        for m, c in zip(net.models, configs, strict=True)
    ]
    loop = _Loop(net, data, configs, methods, device)
    for epoch in range(cfg.epochs):
        running = [k for k, s in enumerate(states) if s.status == "running"]
        if not running:
            break
        for s in states:
            s.epoch = epoch
        start = time.perf_counter()
        sums = loop.epoch(states, epoch)
        seconds = (time.perf_counter() - start) / len(running)  # amortised: the stack's time per run
        for k in running:
            loss, correct, seen = sums[0][k], sums[1][k], sums[2][k]
            train_loss, train_acc = (loss / seen, correct / seen) if seen else (math.nan, math.nan)
            record = _epoch_record(states[k], data, configs[k], train_loss, train_acc, seen, seconds)
            states[k].records.append(record)
            if on_epoch_end is not None:
                on_epoch_end(k, record)
    for s in states:
        if s.status == "running":
            s.status = "completed"
    return states


class _Loop:
    """The per-step work of :func:`fit_stacked`, with the state that lives across epochs."""

    def __init__(
        self,
        net: StackedNet,
        data: Dataset,
        configs: Sequence[TrainConfig],
        methods: Sequence[Sequence[Method]],
        device: torch.device,
    ) -> None:
        self.net, self.data, self.configs, self.methods = net, data, configs, methods
        self.k = net.k
        self.order_gens = [make_generator(c.seed, "data-order", device=device) for c in configs]
        self.method_gens = [
            [make_generator(c.seed, "method", m.name, device=device) for m in ms]
            for c, ms in zip(configs, methods, strict=True)
        ]
        self.transforms = any(type(m).transform_batch is not Method.transform_batch for ms in methods for m in ms)
        coefficients = [sum(float(getattr(m, "coefficient", 0.0)) for m in ms if m.name == "l2") for ms in methods]
        self.l2 = torch.tensor(coefficients, device=device) if any(coefficients) else None
        self.sgd = StackedSGD(net.parameters(), [c.lr for c in configs], [c.momentum for c in configs])
        self.precision = configs[0].precision
        self.device = device
        self.step = 0

    def epoch(self, states: list[FitState], epoch: int) -> tuple[list[float], list[int], list[int]]:
        """One pass; returns each run's summed training loss, correct count and examples seen."""
        cfg = self.configs[0]
        self.net.train(True)
        x_all, y_all = self.data.x_train, self.data.y_train
        perm = torch.stack([torch.randperm(len(x_all), generator=g, device=x_all.device) for g in self.order_gens])
        active = torch.tensor([s.status == "running" for s in states], device=self.device)
        all_active = bool(active.all())
        loss_sum = torch.zeros(self.k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.k, dtype=torch.int64, device=self.device)
        seen = torch.zeros(self.k, dtype=torch.int64, device=self.device)
        last: torch.Tensor | None = None
        for idx in perm.split(cfg.batch_size, dim=1):
            if cfg.max_steps is not None and self.step >= cfg.max_steps:
                for k in _true(active):
                    states[k].status = "stopped"
                break
            x, y = self._batch(x_all[idx], y_all[idx], epoch)
            with autocast(self.precision, self.device):
                logits = self.net(x)
                losses = stacked_cross_entropy(logits, y)
            finite = torch.isfinite(losses.detach())
            if not bool(finite[active].all()):
                for k in _true(active & ~finite):
                    states[k].status = "diverged"
                    states[k].loss = losses[k].detach()
                    states[k].step = self.step
                active = active & finite
                all_active = False
                if not bool(active.any()):
                    break
            self._update(losses, None if all_active else active)
            self.step += 1
            last = losses.detach()
            detached, hits = losses.detach().double() * y.shape[1], (logits.detach().argmax(dim=2) == y).sum(dim=1)
            if all_active:
                loss_sum += detached
                correct += hits
                seen += y.shape[1]
            else:
                loss_sum += torch.where(active, detached, 0.0)
                correct += torch.where(active, hits, 0)
                seen += active.long() * y.shape[1]
        for k in _true(active):
            states[k].step = self.step
            if last is not None:
                states[k].loss = last[k]
        return loss_sum.tolist(), correct.tolist(), seen.tolist()

    def _batch(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each run's methods transform its own slice of the batch, with its own generators."""
        if not self.transforms:
            return x, y
        xs, ys = [], []
        for k in range(self.k):
            xk, yk = x[k], y[k]
            for m, g in zip(self.methods[k], self.method_gens[k], strict=True):
                xk, yk = m.transform_batch(xk, yk, StepContext(self.step, epoch, g))
            if xk.shape != x[k].shape or yk.shape != y[k].shape:
                raise NinrError("a stacked run's transform_batch changed the batch shape")
            xs.append(xk)
            ys.append(yk)
        return torch.stack(xs), torch.stack(ys)

    def _update(self, losses: torch.Tensor, active: torch.Tensor | None) -> None:
        per_run = losses
        if self.l2 is not None:
            squares = torch.stack([w.square().sum(dim=1) for w in self.net.layer_weights()]).sum(dim=0)
            per_run = per_run + self.l2 * squares
        objective = per_run.sum() if active is None else torch.where(active, per_run, 0.0).sum()
        self.sgd.zero_grad()
        objective.backward()
        self.sgd.step(active)


def _true(mask: torch.Tensor) -> list[int]:
    return [int(i) for i in torch.nonzero(mask).flatten().tolist()]
