"""Per-epoch time of every registered method relative to ``none``, and its clean test accuracy.

Trains the MLP (784-256-256-256-10, plain SGD, lr 0.05, batch 64) for one epoch on Fashion-MNIST
with each method at its default parameters, all in this one process, same seed, methods
interleaved round-robin over ``--repeats`` rounds (so slow drifts of a shared machine hit every
method alike), after a short untimed warm-up. Prints one table: method, wall seconds per epoch and
CPU seconds per epoch (process time, which the other jobs of a shared machine inflate much less
than wall time), each as the median over rounds of the training steps only (evaluation excluded),
their ratios to ``none``, and the clean test accuracy after the epoch.

    .venv/bin/python benchmarks/methods_epoch.py            # one round, every method
    .venv/bin/python benchmarks/methods_epoch.py --repeats 3 --methods none l2 dropout
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from ninr.data import load_dataset
from ninr.methods import METHODS
from ninr.train import Callback, FitState, MethodSpec, TrainConfig, train


class CpuClock(Callback):
    """Process CPU seconds from the first step to the end of the last (the evaluation pass excluded)."""

    def __init__(self) -> None:
        self.start = self.end = 0.0

    def on_train_start(self, state: FitState) -> None:
        self.start = self.end = time.process_time()

    def on_step_end(self, state: FitState) -> None:
        self.end = time.process_time()

    @property
    def seconds(self) -> float:
        return self.end - self.start


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="*", default=None, help="methods to time (default: every registered one)")
    p.add_argument("--repeats", type=int, default=1, help="round-robin rounds (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-steps", type=int, default=100, help="untimed steps of `none` first (allocator, threads)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: steadiest CPU time)")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default) or synthetic for a smoke run")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    chosen = args.methods or METHODS.names()
    names = ["none", *[n for n in chosen if n != "none"]]  # the reference first in every round
    data = load_dataset(args.dataset)
    load = os.getloadavg()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {load[0]:.1f} at start; "
        f"{len(data.x_train)} train / {len(data.x_test)} test examples, seed {args.seed}, {args.repeats} round(s)"
    )
    seconds: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    accuracy: dict[str, list[float]] = {n: [] for n in names}
    started = time.perf_counter()
    train(TrainConfig(dataset=args.dataset, epochs=1, max_steps=max(args.warmup_steps, 1), seed=args.seed), data=data)
    for _ in range(args.repeats):
        for name in names:
            methods = () if name == "none" else (MethodSpec(name),)
            config = TrainConfig(dataset=args.dataset, methods=methods, epochs=1, seed=args.seed)
            clock = CpuClock()
            record = train(config, data=data, callbacks=[clock]).final
            seconds[name].append(record["epoch_time_s"])
            cpu[name].append(clock.seconds)
            accuracy[name].append(record["test_acc"])
            line = f"  {name}: {record['epoch_time_s']:.1f}s wall, {clock.seconds:.1f}s cpu"
            print(line, file=sys.stderr, flush=True)
    base, base_cpu = statistics.median(seconds["none"]), statistics.median(cpu["none"])
    print(f"{'method':<18} {'wall s':>7} {'vs none':>8} {'cpu s':>7} {'vs none':>8} {'test_acc':>9}")
    for name in names:
        s, c = statistics.median(seconds[name]), statistics.median(cpu[name])
        acc = statistics.mean(accuracy[name])
        print(f"{name:<18} {s:>7.1f} {s / base:>7.2f}x {c:>7.1f} {c / base_cpu:>7.2f}x {acc:>9.4f}")
    print(f"# total {time.perf_counter() - started:.0f}s, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
