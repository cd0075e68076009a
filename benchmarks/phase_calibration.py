"""Runs calibrated for a phase, and the phase the classifier then reads from their dynamics.

Usage: python benchmarks/phase_calibration.py [--models mlp cnn] [--phases decay catapult] [--seeds 5]
       [--method in-ninr] [--steps 1400] [--every 10] [--probe 512]

For each model, phase and seed: ``TrainConfig(methods=[(method, phase=...)])`` (the sigma comes from the
calibration pilot, ``ninr.methods.calibrate``), trained ``--steps`` SGD steps on Fashion-MNIST (lr 0.05,
batch 64) with a :class:`ninr.dynamics.observe.NodeObserver`; prints the calibrated sigma, ``k`` at
initialisation and after the transient (median over the second half) of the deciding node, its maximum, the
verdict, and the count of seeds in the phase asked for. One thread per run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ninr.data import load_dataset
from ninr.dynamics.observe import NodeObserver
from ninr.dynamics.phases import classify_nodes
from ninr.rng import make_generator
from ninr.train import MethodSpec, TrainConfig, train


def probe(data, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randperm(len(data.x_train), generator=make_generator(seed, "phase-calibration-probe"))[:size]
    return data.x_train[idx], data.y_train[idx]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp"])
    parser.add_argument("--phases", nargs="+", default=["decay", "catapult"])
    parser.add_argument("--method", default="in-ninr")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1400)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--probe", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist")
    for model in args.models:
        for phase in args.phases:
            hits = 0
            for seed in range(args.seeds):
                config = TrainConfig(model=model, epochs=100, max_steps=args.steps, seed=seed,
                                     methods=(MethodSpec(args.method, {"phase": phase}),))  # fmt: skip
                observer = NodeObserver(*probe(data, args.probe, seed), every=args.every, seed=seed)
                started = time.perf_counter()
                result = train(config, data=data, callbacks=[observer])
                series = observer.series()
                verdict = classify_nodes(series, status=result.status)
                node = series[verdict.node]
                after = float(np.median(node.k[len(node.k) // 2 :]))
                cal = result.setup["calibration"]
                hits += verdict.phase == phase
                print(
                    f"{model} {args.method} {phase} seed {seed}: sigma {cal['sigma']:.4g} (curvature at init "
                    f"{cal['curvature_init']:.3g}, after the {cal['pilot_steps']}-step pilot {cal['curvature']:.3g}); "
                    f"{verdict.node} k init {node.k[0]:.3g}, after the transient {after:.3g}, "
                    f"max {verdict.result.k_max:.3g}"
                    f" -> {verdict.phase} [{verdict.nodes}] test_acc {result.final.get('test_acc', float('nan')):.4f} "
                    f"({time.perf_counter() - started:.0f}s)",
                    flush=True,
                )
            print(f"== {model} {args.method} calibrated for {phase}: {hits} of {args.seeds} seeds labelled {phase}")


if __name__ == "__main__":
    main()
