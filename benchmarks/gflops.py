"""Achieved GFLOP/s of stacked MLP training against the batched-matmul peak measured in the same run.

Usage: python benchmarks/gflops.py [--quick] [--repeats 3] [--threads N]

The peak is the best of a few ``torch.bmm`` shapes (the MLP's own layer shapes at the stack sizes
timed, and a large square one), fp32 (and bf16 where the CPU has it natively). Training FLOP count
forward and backward: 1.605 MFLOP per example (96.3 GFLOP per 60k-image epoch; the first layer's
input needs no gradient). Peak and training are interleaved, so load hits both alike.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_common import (
    MLP_TRAIN_FLOP,
    append_results,
    interleaved,
    machine_info,
    median,
    print_table,
    small_test_split,
)
from epoch_time import Case, per_model_epoch, quick_steps

from ninr import perf
from ninr.data import load_dataset

STACKS = ((8, 64), (32, 512))
"""(K, batch) of the stacked runs timed."""


def bmm_gflops(k: int, m: int, n: int, p: int, dtype: torch.dtype, repeats: int = 9) -> float:
    """GFLOP/s of ``bmm((k, m, n), (k, n, p))``: the median of ``repeats`` calls after a warm-up call.

    The median, not the best: on a shared machine a best-of catches moments when no one else runs,
    which the training time (a median over many steps) never sees.
    """
    a, b = torch.randn(k, m, n, dtype=dtype), torch.randn(k, n, p, dtype=dtype)
    torch.bmm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.bmm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * k * m * n * p / median(times) / 1e9


def peak(dtype: torch.dtype) -> float:
    shapes = [(k, b, 784, 256) for k, b in STACKS] + [(k, b, 256, 256) for k, b in STACKS] + [(32, 512, 512, 512)]
    return max(bmm_gflops(*s, dtype=dtype) for s in shapes)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    perf.configure_threads(1, args.threads, load_aware=True)
    data = small_test_split(load_dataset("fashion-mnist"), 1000)
    info = machine_info()
    n = len(data.x_train)
    precisions = ["fp32", "bf16"] if perf.bf16_support("cpu") else ["fp32"]
    variants = {}
    for precision in precisions:
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        variants[f"bmm peak {precision}"] = lambda d=dtype: 1.0 / peak(d)  # a time-like value: inverted below
        for k, batch in STACKS:
            case = Case("stacked", batch, k, precision)
            steps = quick_steps(case) if args.quick else -(-n // batch)
            variants[case.name] = lambda c=case, s=steps: per_model_epoch(c, data, s)
    times = interleaved(variants, args.repeats, warmup=args.quick)
    after = machine_info()["loadavg"]
    rows = []
    for precision in precisions:
        top = 1.0 / median(times[f"bmm peak {precision}"])
        rows.append({"case": f"bmm peak {precision}", "gflops": top, "fraction_of_peak": 1.0, "precision": precision})
        for k, batch in STACKS:
            name = Case("stacked", batch, k, precision).name
            seconds = median(times[name])
            achieved = MLP_TRAIN_FLOP * n / seconds / 1e9
            rows.append(
                {
                    "case": f"training {name}",
                    "gflops": achieved,
                    "fraction_of_peak": achieved / top,
                    "s_per_model_epoch": seconds,
                    "precision": precision,
                    "k": k,
                    "batch": batch,
                }
            )
    title = f"achieved GFLOP/s vs batched-matmul peak, threads {info['threads']}, load {info['loadavg']}->{after}"
    table = [(r["case"], r["gflops"], f"{100 * r['fraction_of_peak']:.0f}%") for r in rows]
    print_table(title, ["what", "GFLOP/s", "of peak"], table)
    append_results("gflops", rows, {**info, "loadavg_after": after}, vars(args))
    return rows


if __name__ == "__main__":
    main()
