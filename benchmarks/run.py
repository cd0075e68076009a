"""``make bench``: run every benchmark suite and append the results to bench-results/bench.jsonl.

Usage: python benchmarks/run.py [--quick | --full] [--threads N] [--only epoch_time nin_overhead ...] [--force-bf16]
       [--goals-only]

Quick is the default (``make bench`` runs this script with no arguments and should finish in minutes):
a fixed number of steps scaled to an epoch, fewer repeats. ``--full`` times whole epochs.

Suites of this directory run in this process, one after the other; the standalone scripts
(nin_epoch_time.py, methods_epoch.py, robustness_suite.py), when present, run as subprocesses, with
--quick passed to those that accept it (else --repeats 1 where they have it). Each prints its own
table of ratios measured side by side. The speed goals (epoch_time: stacked against the reference loop in fp32
and bf16, stacked dropout against dropout alone; nin_overhead: in-/full-NINR at batch 64; precision: bf16
accuracy and the CNN's bf16 epoch) are printed PASS/MISS beside their measured ratios as they are measured,
and again in a summary at the end. ``--goals-only`` runs only the variants those goals need.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import bench_common
import certify
import conv_layout
import data_load
import epoch_time
import gflops
import nin_op
import nin_overhead
import precision

from ninr import perf

HERE = Path(__file__).resolve().parent
SUITES = {
    "epoch_time": epoch_time.main,
    "nin_overhead": nin_overhead.main,
    "nin_op": nin_op.main,
    "conv_layout": conv_layout.main,
    "gflops": gflops.main,
    "precision": precision.main,
    "data_load": data_load.main,
    "certify": certify.main,
}
OTHERS = ("nin_epoch_time.py", "methods_epoch.py", "robustness_suite.py")
"""Standalone scripts with their own command lines, run as subprocesses when present."""
GOAL_ARGS = {
    "epoch_time": ["--variants", "reference DataLoader b64 fp32", "K=8 b64", "dropout"],
    "nin_overhead": ["--batches", "64"],
}
"""With --goals-only: the variants each suite's goals compare."""
QUICK_ARGS = {"robustness_suite.py": ["--limit", "1000"]}
"""Their quick settings, for scripts without --quick."""


def run_other(script: Path, quick: bool, threads: int) -> int:
    """Run a standalone script with the same thread policy (through the environment)."""
    helptext = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
    extra: list[str] = []
    if quick and "--quick" in helptext:
        extra = ["--quick"]
    elif quick and script.name in QUICK_ARGS:
        extra = QUICK_ARGS[script.name]
    elif quick and "--repeats" in helptext:
        extra = ["--repeats", "1"]  # no --quick: the least it offers
    cmd = [sys.executable, str(script), *extra]
    print(f"\n== {script.name} ({' '.join(cmd[2:]) or 'default options'}, {threads} thread(s)) ==", flush=True)
    return subprocess.run(cmd, env={**os.environ, **perf.thread_env(threads)}).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="(default) fewer steps, scaled to an epoch; fewer repeats")
    mode.add_argument("--full", action="store_true", help="whole epochs, more repeats")
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: the idle cores, by load average)"
    )
    parser.add_argument("--only", nargs="+", choices=[*SUITES, "others"], default=None)
    parser.add_argument("--force-bf16", action="store_true", help="run bf16 rows even without native bf16")
    parser.add_argument("--goals-only", action="store_true", help="only the variants the speed goals compare")
    args = parser.parse_args()
    args.quick = not args.full
    started = time.perf_counter()
    threads = args.threads or perf.threads_per_worker(1, perf.idle_cores())
    print(f"machine: {bench_common.machine_info()}", flush=True)
    common = ["--quick"] if args.quick else []
    common += ["--threads", str(args.threads)] if args.threads else []
    for name, suite in SUITES.items():
        if args.only and name not in args.only:
            continue
        argv = [a for a in common if name != "data_load" or a == "--quick"]
        if name in ("nin_op", "conv_layout") and not args.threads:
            argv += ["--threads", "1"]  # their clock is the thread's CPU time, exact only with one thread
        if args.force_bf16 and name in ("epoch_time", "precision"):
            argv.append("--force-bf16")
        if args.quick and name in ("epoch_time", "gflops"):
            argv += ["--repeats", "2"]
        if args.goals_only and name in GOAL_ARGS:
            argv += GOAL_ARGS[name]
        suite(argv)
    failed = []
    if not args.only or "others" in args.only:
        for script in OTHERS:
            path = HERE / script
            if path.exists() and run_other(path, args.quick, threads) != 0:
                failed.append(script)
    if bench_common.GOALS:
        print("\n== goals ==")
        for g in bench_common.GOALS:
            print(
                f"{g['verdict']}  {g['goal']}: {g['value']:.3f} (goal {'>=' if g['at_least'] else '<='} {g['target']})"
            )
    print(f"\nresults appended to {bench_common.RESULTS_FILE} ({time.perf_counter() - started:.0f}s)")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
