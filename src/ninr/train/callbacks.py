"""Callbacks: code that watches a training run at fixed hooks.

A callback only reads the :class:`FitState`; it must not draw from the run's random streams (use
a generator of its own), so attaching one never changes the trajectory.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import torch
from torch import nn


@dataclass
class FitState:
    """The state of a run that callbacks may read."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    loss: torch.Tensor | None = None
    status: str = "running"
    records: list[dict[str, Any]] = field(default_factory=list)


class Callback:
    """Base class; every hook is a no-op."""

    def on_train_start(self, state: FitState) -> None:
        """Before the first step."""

    def on_step_end(self, state: FitState) -> None:
        """After each optimizer step (``state.loss`` holds the step's training loss)."""

    def on_epoch_end(self, state: FitState, record: dict[str, Any]) -> None:
        """After each epoch's evaluation; ``record`` is the epoch's metrics."""

    def on_train_end(self, state: FitState) -> None:
        """After the last step, also when the run diverged or stopped early."""


class EpochPrinter(Callback):
    """Prints a one-line summary per epoch, with a progress bar over steps when on a terminal."""

    def __init__(self, stream: TextIO | None = None, *, bar: bool | None = None, label: str = "") -> None:
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.label = f"{label} " if label else ""
        self._pbar: Any = None

    def _open_bar(self, state: FitState) -> None:
        from tqdm import tqdm

        self._pbar = tqdm(
            total=state.steps_per_epoch,
            desc=f"{self.label}epoch {state.epoch + 1}/{state.epochs}",
            file=self.stream,
            leave=False,
            mininterval=0.5,
        )

    def on_train_start(self, state: FitState) -> None:
        if self.bar:
            self._open_bar(state)

    def on_step_end(self, state: FitState) -> None:
        if self._pbar is not None:
            self._pbar.update(1)

    def on_epoch_end(self, state: FitState, record: dict[str, Any]) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        print(self.label + format_record(record), file=self.stream, flush=True)
        if self.bar and state.epoch + 1 < state.epochs and state.status == "running":
            state_next = FitState(**{**state.__dict__, "epoch": state.epoch + 1})
            self._open_bar(state_next)

    def on_train_end(self, state: FitState) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


class StackProgress(Callback):
    """One line per epoch for a group of runs trained together (a stack), so a long task is not silent.

    Attach the same instance to every run of the group (``train_many(configs, callbacks=[[p]] * len(configs))``).
    The line is printed once every run still training has finished the epoch (a run that diverged reports its
    last epoch, then no more): ``"FC | None | seed 0 and 19 more: epoch 1/3, 20 runs (1 diverged), 12.3s, ETA 0:25"``.
    Each line is one ``write`` of a whole line, flushed, so the lines of several worker processes sharing a
    stream interleave line by line, never inside a line.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.runs = 0
        self.diverged = 0
        self._epoch = 0
        self._reported = 0
        self._live = 0
        self._started = time.perf_counter()

    def on_train_start(self, state: FitState) -> None:
        if self.runs == 0:
            self._started = time.perf_counter()
        self.runs += 1

    def on_epoch_end(self, state: FitState, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        if epoch != self._epoch:  # the first run to finish this epoch
            self._epoch, self._reported, self._live = epoch, 0, self.runs - self.diverged
        self._reported += 1
        if record.get("status") == "diverged":
            self.diverged += 1
        if self._reported < self._live:
            return
        elapsed = time.perf_counter() - self._started
        eta = f", ETA {_clock(elapsed / epoch * (state.epochs - epoch))}" if epoch < state.epochs else ""
        diverged = f" ({self.diverged} diverged)" if self.diverged else ""
        self.stream.write(
            f"{self.label}: epoch {epoch}/{state.epochs}, {self.runs} runs{diverged}, {elapsed:.1f}s{eta}\n"
        )
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_record(record: dict[str, Any]) -> str:
    """One line: epoch, losses, accuracies, NIW norms, time."""
    parts = [f"epoch {record['epoch']:>3}"]
    for key in ("train_loss", "train_acc", "val_acc", "test_loss", "test_acc"):
        if key in record and record[key] is not None:
            parts.append(f"{key} {record[key]:.4f}")
    niw = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("niw_norm/")}
    if niw:
        parts.append("|W_NI| " + " ".join(f"{k}={v:.3g}" for k, v in niw.items()))
    parts.append(f"{record['epoch_time_s']:.2f}s")
    if record.get("status") == "diverged":
        parts.append("DIVERGED")
    return "  ".join(parts)
