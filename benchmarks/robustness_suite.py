"""Wall time of the robustness suite on one MLP: every corruption at 5 severities, FGSM and PGD-10 at 4 epsilons.

Target: under 2 minutes on the 10,000 Fashion-MNIST test images on a 2-core CPU. Prints the
time of every part, the total, and the machine's load (other processes slow every number down).

    .venv/bin/python benchmarks/robustness_suite.py                  # trains a 1-epoch MLP first
    .venv/bin/python benchmarks/robustness_suite.py --run-dir runs/r-none
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch

from ninr.data import load_dataset
from ninr.robustness import CORRUPTIONS, AttackSpec, Suite, evaluate
from ninr.robustness.suites import LINF_EPSILONS
from ninr.train import TrainConfig, load_run, train

TARGET_S = 120.0


def _model(args: argparse.Namespace) -> tuple[torch.nn.Module, str]:
    if args.run_dir:
        model, config = load_run(args.run_dir)
        return model, config.dataset
    started = time.perf_counter()
    result = train(TrainConfig(dataset="fashion-mnist", epochs=1, seed=0))
    print(f"trained the MLP for 1 epoch in {time.perf_counter() - started:.1f}s "
          f"(test acc {result.final['test_acc']:.4f})")  # fmt: skip
    return result.model.eval(), "fashion-mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=None, help="evaluate this run instead of training a fresh MLP")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--attack-batch-size", type=int, default=500)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, dataset = _model(args)
    data = load_dataset(dataset)
    x, y = data.x_test[: args.limit], data.y_test[: args.limit]
    suite = Suite(
        corruptions=tuple(CORRUPTIONS.names()),
        attacks=(AttackSpec("fgsm"), AttackSpec("pgd", budget=10)),
        epsilons=LINF_EPSILONS,
    )
    marks: list[tuple[str, float]] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    records = evaluate(
        model,
        (x, y),
        suite,
        batch_size=args.batch_size,
        attack_batch_size=args.attack_batch_size,
        progress=lambda part: marks.append((part, time.perf_counter())),
    )
    total = time.perf_counter() - started
    marks.append(("end", time.perf_counter()))
    print(f"\n{len(x)} test images, {torch.get_num_threads()} torch threads, load average {load_before:.1f} "
          f"before / {os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'part':<18}{'seconds':>9}")
    corruption_s = 0.0
    for (part, t0), (_, t1) in itertools.pairwise(marks):
        print(f"{part:<18}{t1 - t0:>9.2f}")
        corruption_s += (t1 - t0) if part in CORRUPTIONS else 0.0
    print(f"{'corruptions (all)':<18}{corruption_s:>9.2f}")
    print(f"{'total':<18}{total:>9.2f}   ({len(records)} records; target {TARGET_S:.0f}s: "
          f"{'met' if total < TARGET_S else 'MISSED'}, ratio {total / TARGET_S:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
