"""Seconds per epoch of the MLP with no NIN, in-NINR and full-NINR, interleaved in one process.

Usage: python benchmarks/nin_epoch_time.py [--repeats 3] [--batch-size 64] [--model mlp]

Each repeat trains one epoch of each variant in turn (same seed), so machine noise hits all variants alike;
the table shows the median seconds per epoch and the ratio to the plain model, measured in this run.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from ninr.data import load_dataset
from ninr.train import MethodSpec, TrainConfig, train

VARIANTS = {
    "none": (),
    "in-ninr": (MethodSpec("in-ninr", {"sigma": 1.0}),),
    "full-ninr": (MethodSpec("full-ninr", {"sigma": 1.0}),),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="mlp")
    args = parser.parse_args()
    data = load_dataset("fashion-mnist")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    accs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, methods in VARIANTS.items():
            cfg = TrainConfig(model=args.model, methods=methods, epochs=1, batch_size=args.batch_size)
            result = train(cfg, data=data)
            times[name].append(result.final["epoch_time_s"])
            accs[name].append(result.final["test_acc"])
    base = statistics.median(times["none"])
    print(f"model {args.model}, batch {args.batch_size}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'variant':<10} {'median s/epoch':>15} {'ratio':>7} {'test_acc':>9}   all s/epoch")
    for name in VARIANTS:
        med = statistics.median(times[name])
        spread = " ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:<10} {med:>15.2f} {med / base:>7.3f} {accs[name][-1]:>9.4f}   {spread}")


if __name__ == "__main__":
    main()
