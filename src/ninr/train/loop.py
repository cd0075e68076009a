"""The SGD fit loop over in-memory tensors.

Batches are drawn by a seeded permutation of the training set held in memory (no DataLoader
workers); the loop calls the methods' hooks and the callbacks, evaluates after each epoch, and ends
early, recorded as ``diverged``, when the training loss stops being finite.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ninr.data.base import Dataset
from ninr.methods.base import Method, StepContext
from ninr.nn.attach import niws
from ninr.perf import autocast, check_precision
from ninr.rng import make_generator
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


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    config: TrainConfig,
    methods: Sequence[Method] = (),
    callbacks: Sequence[Callback] = (),
) -> FitState:
    """Train ``model`` in place; returns the final state with one record per epoch."""
    n = len(data.x_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    state = FitState(model, optimizer, config.epochs, steps_per_epoch)
    check_precision(config.precision, data.x_train.device)
    order_gen = make_generator(config.seed, "data-order", device=data.x_train.device)
    method_gens = [make_generator(config.seed, "method", m.name, device=data.x_train.device) for m in methods]
    for cb in callbacks:
        cb.on_train_start(state)
    for epoch in range(config.epochs):
        state.epoch = epoch
        start = time.perf_counter()
        train_loss, train_acc, seen = _run_epoch(state, data, config, methods, method_gens, order_gen, callbacks)
        record = _epoch_record(state, data, config, train_loss, train_acc, seen, time.perf_counter() - start)
        state.records.append(record)
        for cb in callbacks:
            cb.on_epoch_end(state, record)
        if state.status != "running":
            break
    if state.status == "running":
        state.status = "completed"
    for cb in callbacks:
        cb.on_train_end(state)
    return state


def _run_epoch(
    state: FitState,
    data: Dataset,
    config: TrainConfig,
    methods: Sequence[Method],
    method_gens: Sequence[torch.Generator],
    order_gen: torch.Generator,
    callbacks: Sequence[Callback],
) -> tuple[float, float, int]:
    """One pass over a fresh permutation; returns the mean training loss and accuracy, and examples seen."""
    model, optimizer = state.model, state.optimizer
    model.train()
    x_all, y_all = data.x_train, data.y_train
    perm = torch.randperm(len(x_all), generator=order_gen, device=x_all.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=x_all.device)
    correct = torch.zeros((), dtype=torch.int64, device=x_all.device)
    seen = 0
    for idx in perm.split(config.batch_size):
        if config.max_steps is not None and state.step >= config.max_steps:
            state.status = "stopped"
            break
        x, y = x_all[idx], y_all[idx]
        for method, gen in zip(methods, method_gens, strict=True):
            x, y = method.transform_batch(x, y, StepContext(state.step, state.epoch, gen))
        with autocast(config.precision, x.device):  # a no-op in fp32, the default
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            state.status = "diverged"
            state.loss = loss.detach()
            break
        objective = loss
        for method in methods:
            extra = method.penalty(model)
            if extra is not None:
                objective = objective + extra
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        for method, gen in zip(methods, method_gens, strict=True):
            method.on_grad_computed(model, StepContext(state.step, state.epoch, gen))
        optimizer.step()
        state.step += 1
        state.loss = loss.detach()
        loss_sum += state.loss.double() * len(y)
        correct += (logits.detach().argmax(dim=1) == y).sum()
        seen += len(y)
        for cb in callbacks:
            cb.on_step_end(state)
    if seen == 0:
        return math.nan, math.nan, 0
    return loss_sum.item() / seen, correct.item() / seen, seen


def _epoch_record(
    state: FitState,
    data: Dataset,
    config: TrainConfig,
    train_loss: float,
    train_acc: float,
    seen: int,
    seconds: float,
) -> dict[str, Any]:
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
