"""bf16 against fp32: test accuracy after the same epochs, stacked MLP runs (same seeds, same data order),
and one CNN epoch timed in each precision.

Usage: python benchmarks/precision.py [--quick] [--epochs 6] [--runs 4] [--threads N] [--force-bf16] [--no-cnn]

Target: bf16 runs end within 0.3 percentage points of fp32 test accuracy (goal printed PASS/MISS for the
MLP seeds' mean). The CNN (``ninr.train.train``, one by one, channels-last, as the CPU trains it): seconds
per epoch in fp32 and bf16 (the training steps only; --quick times a fixed number of steps, scaled to an
epoch), their ratio per round, and the test accuracy of each after the same steps (one seed: indicative).
Skipped (and said so) on a device without native bf16 unless --force-bf16 (emulated bf16 is ~30x slower
than fp32 on an AVX2 CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench_common import append_results, check_goal, machine_info, paired_ratio, print_table

from ninr import perf
from ninr.data import load_dataset
from ninr.data.base import Dataset
from ninr.train import TrainConfig, train, train_stacked

ACC_GOAL_PP = 0.3
CNN_QUICK_STEPS = 150


def cnn_epoch(data: Dataset, precision: str, steps: int) -> tuple[float, float]:
    """(training seconds scaled to one epoch, test accuracy) of the CNN after ``steps`` steps of batch 64."""
    per_epoch = -(-len(data.x_train) // 64)
    result = train(TrainConfig(model="cnn", epochs=1, max_steps=steps, precision=precision, seed=0), data=data)
    return result.final["epoch_time_s"] * per_epoch / min(steps, per_epoch), result.final["test_acc"]


def cnn_rows(data: Dataset, steps: int, rounds: int) -> list[dict]:
    """The CNN in fp32 and bf16, interleaved over ``rounds`` after a short warm-up of each."""
    for precision in ("fp32", "bf16"):
        cnn_epoch(data, precision, 5)
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    accs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for precision in ("fp32", "bf16"):
            t, acc = cnn_epoch(data, precision, steps)
            seconds[precision].append(t)
            accs[precision].append(acc)
    speedup, q1, q3 = paired_ratio(seconds["fp32"], seconds["bf16"])
    gap = 100 * (accs["bf16"][-1] - accs["fp32"][-1])
    return [
        {
            "case": f"cnn {precision}",
            "precision": precision,
            "s_per_epoch": statistics.median(seconds[precision]),
            "all": seconds[precision],
            "test_acc": accs[precision][-1],
            "steps": steps,
            "bf16_speedup": speedup,
            "bf16_speedup_q1": q1,
            "bf16_speedup_q3": q3,
            "gap_pp_bf16_minus_fp32": gap,
        }
        for precision in ("fp32", "bf16")
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, 2 runs")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--force-bf16", action="store_true")
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN epoch")
    parser.add_argument("--no-mlp", action="store_true", help="skip the MLP accuracy runs")
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
    if not args.no_mlp:
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
        print(f"bf16 - fp32: {gap:+.2f} percentage points (target: within {ACC_GOAL_PP})")
        check_goal(
            f"(b) MLP bf16 accuracy, |bf16 - fp32| over {runs} seeds", abs(gap), ACC_GOAL_PP, at_least=False, unit="pp"
        )
    if not args.no_cnn:
        steps = CNN_QUICK_STEPS if args.quick else -(-len(data.x_train) // 64)
        rounds = 2 if args.quick else 1
        cnn = cnn_rows(data, steps, rounds)
        after = machine_info()["loadavg"]
        title = (
            f"CNN one epoch fp32 vs bf16 (batch 64, {steps} steps timed, scaled to an epoch; {rounds} round(s)), "
            f"threads {info['threads']}, load {info['loadavg']}->{after}"
        )
        table = [(r["case"], r["s_per_epoch"], r["test_acc"], " ".join(f"{t:.2f}" for t in r["all"])) for r in cnn]
        print_table(title, ["precision", "s/epoch", f"test_acc after {steps} steps", "runs"], table)
        first = cnn[0]
        print(
            f"CNN bf16 speed-up {first['bf16_speedup']:.2f}x (per-round {first['bf16_speedup_q1']:.2f}.."
            f"{first['bf16_speedup_q3']:.2f}); test accuracy bf16 - fp32: {first['gap_pp_bf16_minus_fp32']:+.2f} pp "
            "(one seed: indicative)"
        )
        check_goal("(b) CNN bf16 epoch vs fp32 epoch (speed-up)", first["bf16_speedup"], 1.0, at_least=True)
        rows += cnn
    after = machine_info()["loadavg"]
    append_results("precision", rows, {**info, "loadavg_after": after}, vars(args))
    return rows


if __name__ == "__main__":
    main()
