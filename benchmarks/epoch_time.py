"""Per-model epoch time of the MLP on Fashion-MNIST: a typical DataLoader loop vs ninr single vs ninr stacked.

Usage: python benchmarks/epoch_time.py [--quick] [--repeats 3] [--threads N] [--force-bf16]

Variants (all plain SGD, lr 0.05, the 784-256-256-256-10 MLP, 60,000 training images):
- ``reference``: the loop a typical research script has (DataLoader over a TensorDataset, shuffle=True,
  nn.Sequential, torch.optim.SGD, ``loss.item()`` each step), kept here for comparison;
- ``ninr single``: ``ninr.train.train`` (in-memory tensors, a seeded permutation per epoch);
- ``ninr stacked K``: ``ninr.train.train_stacked`` with K seeds at once;
- ``dropout``: ninr single and stacked K=8 with the ``dropout`` method (rate 0.5), whose stacked form draws
  each run's masks from its own generator.
fp32 and (where the CPU has native bf16, or with --force-bf16) bf16 autocast. Seconds are per model
and per epoch: with --quick a fixed number of steps is timed and scaled to a full epoch.

Goals (printed PASS/MISS with the median over rounds of each round's ratio, measured side by side):
stacked K=8 at batch 64 against the reference loop, >= 2x in fp32 and >= 3x in bf16 (both against the
reference's fp32 time); stacked K=8 dropout runs faster per model than dropout runs alone (> 1x).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from bench_common import (
    append_results,
    check_goal,
    interleaved,
    machine_info,
    median,
    paired_ratio,
    print_table,
    small_test_split,
)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ninr import perf
from ninr.data import load_dataset
from ninr.data.base import Dataset
from ninr.train import MethodSpec, TrainConfig, train, train_stacked


@dataclass(frozen=True)
class Case:
    kind: str  # "reference", "single", "stacked"
    batch: int
    k: int = 1
    precision: str = "fp32"
    method: str = "none"

    @property
    def name(self) -> str:
        what = {"reference": "reference DataLoader", "single": "ninr single"}.get(self.kind, f"ninr stacked K={self.k}")
        return f"{what}{'' if self.method == 'none' else ' ' + self.method} b{self.batch} {self.precision}"


QUICK_STEPS = {"reference": 100, "single": 100, "stacked": 40}
"""Steps timed per variant with --quick (K=32 at batch 512 gets a quarter: its steps are 32x larger)."""


def quick_steps(case: Case) -> int:
    """Steps timed for ``case`` with --quick."""
    steps = QUICK_STEPS[case.kind]
    return steps // 4 if case.k >= 32 and case.batch >= 512 else steps


def reference_loop(data: Dataset, batch: int, steps: int, precision: str) -> float:
    """A typical research training loop; returns seconds for ``steps`` SGD steps."""
    torch.manual_seed(0)
    mean, std = data.x_train.mean(), data.x_train.std()
    x = ((data.x_train - mean) / std).flatten(1)
    loader = DataLoader(TensorDataset(x, data.y_train), batch_size=batch, shuffle=True)
    layers: list[nn.Module] = []
    for fan_in, fan_out in ((784, 256), (256, 256), (256, 256)):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    running = 0.0
    start = time.perf_counter()
    for i, (xb, yb) in enumerate(loader):
        if i == steps:
            break
        opt.zero_grad()
        with perf.autocast(precision):
            loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        running += loss.item()
    return time.perf_counter() - start


def per_model_epoch(case: Case, data: Dataset, steps: int) -> float:
    """Seconds per model per epoch of ``case``, from ``steps`` timed steps."""
    per_epoch = -(-len(data.x_train) // case.batch)
    scale = per_epoch / steps
    if case.kind == "reference":
        return reference_loop(data, case.batch, steps, case.precision) * scale
    methods = () if case.method == "none" else (MethodSpec(case.method),)
    base = TrainConfig(epochs=1, max_steps=steps, batch_size=case.batch, precision=case.precision, methods=methods)
    if case.kind == "single":
        return train(base, data=data).final["epoch_time_s"] * scale
    results = train_stacked([base.replace(seed=s) for s in range(case.k)], data=data)
    return results[0].final["epoch_time_s"] * scale  # already amortised per model


def cases(with_bf16: bool) -> list[Case]:
    out = [
        Case("reference", 64),
        Case("single", 64),
        Case("stacked", 64, 8),
        Case("stacked", 64, 32),
        Case("reference", 512),
        Case("stacked", 512, 32),
    ]
    if with_bf16:
        out += [Case(c.kind, c.batch, c.k, "bf16") for c in out if c.kind != "reference" or c.batch == 64]
    return [*out, Case("single", 64, method="dropout"), Case("stacked", 64, 8, method="dropout")]


GOALS = (
    # (label, case, baseline case, goal): the case's speed-up over the baseline, per model
    (
        "(a) stacked K=8 b64 fp32 vs reference DataLoader fp32",
        "ninr stacked K=8 b64 fp32",
        "reference DataLoader b64 fp32",
        2.0,
    ),
    (
        "(b) stacked K=8 b64 bf16 vs reference DataLoader fp32",
        "ninr stacked K=8 b64 bf16",
        "reference DataLoader b64 fp32",
        3.0,
    ),
    (
        "(d) stacked K=8 dropout vs dropout alone, b64 fp32",
        "ninr stacked K=8 dropout b64 fp32",
        "ninr single dropout b64 fp32",
        1.0,
    ),
)


def check_goals(times: dict[str, list[float]]) -> None:
    """PASS/MISS for each goal whose two variants ran (median over rounds of the per-round ratio)."""
    for label, case, base, goal in GOALS:
        if case in times and base in times:
            speedup, _, _ = paired_ratio(times[base], times[case])
            check_goal(label, speedup, goal, at_least=True)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time a fixed number of steps, scaled to an epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: the idle cores, by load average)"
    )
    parser.add_argument("--force-bf16", action="store_true", help="run bf16 even without native support (slow)")
    parser.add_argument(
        "--variants", nargs="+", default=None, help="only the variants whose name contains one of these (e.g. K=8)"
    )
    args = parser.parse_args(argv)
    perf.configure_threads(1, args.threads, load_aware=True)
    if args.force_bf16:
        import os

        os.environ[perf.EMULATED_BF16_ENV] = "1"
    with_bf16 = perf.bf16_support("cpu") or args.force_bf16
    data = small_test_split(load_dataset("fashion-mnist"), 1000)
    info = machine_info()
    todo = [c for c in cases(with_bf16) if not args.variants or any(v in c.name for v in args.variants)]

    def runner(case: Case) -> float:
        steps = quick_steps(case) if args.quick else -(-len(data.x_train) // case.batch)
        return per_model_epoch(case, data, steps)

    times = interleaved({c.name: (lambda c=c: runner(c)) for c in todo}, args.repeats, warmup=args.quick)
    info_after = machine_info()["loadavg"]
    rows = []
    for c in todo:
        ref = median(times.get(f"reference DataLoader b{c.batch} {c.precision}", []))
        ref32 = median(times.get(f"reference DataLoader b{c.batch} fp32", []))
        med = median(times[c.name])
        rows.append(
            {
                "case": c.name,
                "kind": c.kind,
                "batch": c.batch,
                "k": c.k,
                "precision": c.precision,
                "s_per_model_epoch": med,
                "all": times[c.name],
                "speedup_vs_reference_fp32": ref32 / med,
                "speedup_vs_reference_same_precision": ref / med if ref == ref else float("nan"),
            }
        )
    title = (
        f"per-model epoch time, MLP 784-256-256-256-10, Fashion-MNIST 60k, threads {info['threads']}, "
        f"{'quick (steps scaled to an epoch)' if args.quick else 'full epochs'}, load {info['loadavg']}->{info_after}"
    )
    columns = ["variant", "s/model-epoch", "x vs ref fp32 (same batch)", "runs"]
    table = [
        (r["case"], r["s_per_model_epoch"], r["speedup_vs_reference_fp32"], " ".join(f"{t:.2f}" for t in r["all"]))
        for r in rows
    ]
    print_table(title, columns, table)
    check_goals(times)
    if not with_bf16:
        cpu = perf.cpu_capability()
        print(f"bf16 rows skipped: this CPU ({cpu}) has no native bf16 (--force-bf16 runs it emulated)")
    append_results("epoch_time", rows, {**info, "loadavg_after": info_after}, vars(args))
    return rows


if __name__ == "__main__":
    main()
