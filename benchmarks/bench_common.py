"""Shared pieces of the benchmark suites: machine info, interleaved timing, tables, the JSONL log.

Every suite measures its variants side by side, interleaved, in one process (variant A, B, C, then A,
B, C again, ...), so load from other jobs hits all variants alike; tables report medians and ratios
measured in the same run. Absolute seconds depend on the machine and its load; the ratios are what
the targets speak about.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ninr import perf
from ninr.data.base import Dataset

RESULTS_DIR = Path("bench-results")
RESULTS_FILE = RESULTS_DIR / "bench.jsonl"

MLP_MACS = 784 * 256 + 256 * 256 * 2 + 256 * 10
"""Multiply-adds of one forward pass of the 784-256-256-256-10 MLP (334,336)."""

MLP_TRAIN_FLOP = 2 * MLP_MACS * 3 - 2 * 784 * 256
"""FLOP of forward + backward per example: forward 2*MACs, weight grads 2*MACs, input grads 2*MACs
except for the first layer, whose input needs no gradient (1.605 MFLOP; 96.3 GFLOP per 60k epoch)."""


def loadavg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return float("nan")


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, threads, torch, bf16 support, git commit, load."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": perf.available_cores(),
        "threads": torch.get_num_threads(),
        "capability": perf.cpu_capability(),
        "bf16_native": perf.bf16_support("cpu"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git": commit,
        "loadavg": loadavg(),
    }


def interleaved(
    variants: Mapping[str, Callable[[], float]], repeats: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Run each variant once per round, ``repeats`` rounds; each call returns its own measured seconds."""
    if warmup:
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(fn())
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(times: Sequence[float], base: Sequence[float]) -> tuple[float, float, float]:
    """Median and quartiles over rounds of ``times[r] / base[r]``: each round's ratio is measured under the
    same load, so the median of ratios is steadier on a shared machine than a ratio of medians."""
    ratios = sorted(t / b for t, b in zip(times, base, strict=True))
    if not ratios:
        return float("nan"), float("nan"), float("nan")
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2]


GOALS: list[dict[str, Any]] = []
"""Every goal checked in this process (:func:`check_goal`), for ``run.py``'s summary."""


def check_goal(label: str, value: float, goal: float, *, at_least: bool, unit: str = "x") -> str:
    """Print ``label: VALUE (goal >= / <= GOAL) PASS|MISS`` and remember it; returns ``"PASS"`` or ``"MISS"``.

    ``unit`` ``"x"`` prints a ratio, ``"%"`` a fraction as a signed percentage, ``"pp"`` percentage points.
    A NaN value is a MISS.
    """
    met = value >= goal if at_least else value <= goal
    verdict = "PASS" if met else "MISS"  # NaN compares false: MISS
    shown = {"x": f"{value:.2f}x", "%": f"{100 * value:+.1f}%", "pp": f"{value:.2f} pp"}[unit]
    target = {"x": f"{goal:.2f}x", "%": f"{100 * goal:.0f}%", "pp": f"{goal:.1f} pp"}[unit]
    line = f"goal {label}: {shown} (goal {'>=' if at_least else '<='} {target}) {verdict} [load {loadavg()}]"
    print(line, flush=True)
    GOALS.append({"goal": label, "value": value, "target": goal, "at_least": at_least, "verdict": verdict})
    return verdict


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    body = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in body)) if body else len(c) for i, c in enumerate(columns)]
    print(f"\n== {title} ==")
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths, strict=True))))
    for r in body:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def append_results(suite: str, rows: list[dict[str, Any]], info: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Append one JSON line per row to ``bench-results/bench.jsonl``, with the machine info."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(RESULTS_FILE, "a", encoding="utf-8") as fh:
        for row in rows:
            line = {"suite": suite, "time": stamp, **row, "machine": dict(info), "options": dict(options)}
            fh.write(json.dumps(line, default=str) + "\n")


def small_test_split(data: Dataset, n_test: int) -> Dataset:
    """The data set with its test split cut to ``n_test`` examples (evaluation is not what is timed)."""
    return dataclasses.replace(data, x_test=data.x_test[:n_test], y_test=data.y_test[:n_test])


def steps_for(quick: bool, batch_size: int, n_train: int, quick_examples: int) -> int:
    """SGD steps to time: a whole epoch, or with ``quick`` about ``quick_examples`` examples (>= 10 steps)."""
    per_epoch = -(-n_train // batch_size)
    if not quick:
        return per_epoch
    return max(10, min(per_epoch, quick_examples // batch_size))
