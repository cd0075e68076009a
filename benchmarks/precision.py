"""bf16 against fp32: test accuracy after the same epochs, stacked MLP runs (same seeds, same data order).

Usage: python benchmarks/precision.py [--quick] [--epochs 6] [--runs 4] [--threads N] [--force-bf16]

Target: bf16 runs end within 0.3 percentage points of fp32 test accuracy. Skipped (and said so) on a
device without native bf16 unless --force-bf16 (emulated bf16 is ~30x slower than fp32 on an AVX2 CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench_common import append_results, machine_info, print_table

from ninr import perf
from ninr.data import load_dataset
from ninr.train import TrainConfig, train_stacked


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, 2 runs")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--force-bf16", action="store_true")
    args = parser.parse_args(argv)
    perf.configure_threads(1, args.threads, load_aware=True)
    if not perf.bf16_support("cpu") and not args.force_bf16:
        print(f"\n== bf16 vs fp32 accuracy: skipped, this CPU ({perf.cpu_capability()}) has no native bf16 ==")
        return []
    os.environ[perf.EMULATED_BF16_ENV] = "1" if args.force_bf16 else os.environ.get(perf.EMULATED_BF16_ENV, "")
    epochs, runs = (1, 2) if args.quick else (args.epochs, args.runs)
    data = load_dataset("fashion-mnist")
    info = machine_info()
    rows = []
    for precision in ("fp32", "bf16"):
        configs = [TrainConfig(epochs=epochs, seed=s, precision=precision) for s in range(runs)]
        accs = [r.final["test_acc"] for r in train_stacked(configs, data=data)]
        rows.append({"case": f"stacked K={runs} {precision}", "precision": precision, "test_acc": accs})
    gap = 100 * (statistics.mean(rows[1]["test_acc"]) - statistics.mean(rows[0]["test_acc"]))
    for r in rows:
        r["mean_test_acc"] = statistics.mean(r["test_acc"])
        r["gap_pp_bf16_minus_fp32"] = gap
    after = machine_info()["loadavg"]
    title = f"bf16 vs fp32 test accuracy after {epochs} epoch(s), {runs} seeds, load {info['loadavg']}->{after}"
    table = [(r["case"], r["mean_test_acc"], " ".join(f"{a:.4f}" for a in r["test_acc"])) for r in rows]
    print_table(title, ["runs", "mean test_acc", "per seed"], table)
    print(f"bf16 - fp32: {gap:+.2f} percentage points (target: within 0.3)")
    append_results("precision", rows, {**info, "loadavg_after": after}, vars(args))
    return rows


if __name__ == "__main__":
    main()
