"""Where the implicit regulariser's small-sigma expansion holds on the Fashion-MNIST MLP; the nodes' curvatures.

Usage:
    python benchmarks/implicit_regulariser.py table [--examples 1000] [--sigmas ...] [--points 1024]
        [--check-points 512] [--validate N] [--nodes fc1 out] [--activations relu tanh] [--out FILE.json]
        [--threads 1]
    python benchmarks/implicit_regulariser.py curvature [--seeds 0 1]
    python benchmarks/implicit_regulariser.py noise-scale [--seeds 0 1 2 3]

``table``: for the 784-256-256-256-10 MLP with ReLU and with Tanh (same weights, activation swapped), at
initialisation (seed 0, the runs' input standardisation) and after one epoch of plain SGD (lr 0.05, batch 64, seed
0, the library's training loop), a node on each of ``--nodes`` (default fc1 and the output layer;
``niw_init="layer"``, seed 0), each alone: ``(E L - L) / (1/2 sigma^2 Q)`` on the first ``--examples`` test images,
in float64, ``E L`` by the ``--points``-point composite rule per example (``ninr.dynamics.implicit``) and ``Q`` by
autograd. Then the largest change over the sigma grid from a ``--check-points`` rule, relative to the excess.
``--validate N`` compares Gauss-Hermite and composite rules with the adaptive Gauss-Kronrod rule (``rtol`` 1e-6) on
the first N examples at sigma 0.3, 3, 32 and 370: the quadrature error of each rule. ``--out`` writes every row as
JSON.

``curvature``: ``lambda_max(H_NI)`` at initialisation per node of full-NINR on the MLP and the CNN
(``ninr.methods.calibrate.nin_curvature``, the run's model init and its seeded 1000-example probe batch,
``ninr.train.setup.calibration_probe``), per seed.

``noise-scale``: the additive conv nodes' per-pixel NIW scale under ``niw_init="layer"`` and the noise-to-signal
ratio after the layer, per unit of sigma, against the MLP's fc1 node (CNN and MLP at init, seeds given, on
1000 standardised training images).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from bench_common import machine_info
from torch import nn

from ninr.curvature.replay import replaying
from ninr.data import load_dataset
from ninr.data.base import Dataset
from ninr.dynamics.implicit import NoiseLine, excess_loss, expansion_map
from ninr.methods.calibrate import nin_curvature
from ninr.models.layers import channel_stats
from ninr.nn import attach_nins, nin_nodes
from ninr.nn.nin import layer_fan_in
from ninr.train import TrainConfig, build_setup, fit
from ninr.train.backends.single import SingleBackend
from ninr.train.setup import calibration_probe

SIGMAS = (0.1, 0.3, 1.0, 3.0, 10.0, 24.0, 32.0, 100.0, 370.0)
"""0.1 .. 370, with the comparison table's NINR sigmas (configs/quick.toml): in-NINR 32 / 370, full-NINR 10 / 24."""

VALIDATE_SIGMAS = (0.3, 3.0, 32.0, 370.0)
VALIDATE_RULES = (("gauss", 256), ("gauss", 1024), ("composite", 256), ("composite", 1024), ("composite", 4096))
VALIDATE_RTOL = 1e-6
NODES = ("fc1", "out")


def mlp(data: Dataset, activation: str, trained: bool, stats: tuple, nodes: Sequence[str] = NODES) -> nn.Module:
    """The MLP at init (seed 0) or after one epoch of SGD, with ``activation``; nodes on ``nodes``, NIWs seeded."""
    config = TrainConfig(model="mlp", seed=0, epochs=1, lr=0.05, batch_size=64)
    model, _ = build_setup(config, data.input_shape, data.num_classes, [], stats)
    if activation == "tanh":
        for name, module in list(model.named_children()):
            if isinstance(module, nn.ReLU):
                setattr(model, name, nn.Tanh())
    if trained:
        fit(SingleBackend(model, lr=config.lr, momentum=config.momentum), data, [config], [[]])
    attach_nins(model, list(nodes), sigma=1.0, seed=0, example_input=data.x_test[:2])
    return model.double()


def table(args: argparse.Namespace) -> None:
    data = load_dataset("fashion-mnist")
    stats = channel_stats(data.x_train)
    x, y = data.x_test[: args.examples].double(), data.y_test[: args.examples]
    ratios, checks, forms, results = [], [], [], []
    models = {}
    for activation in args.activations:
        for trained in (False, True):
            start = time.perf_counter()
            model = mlp(data, activation, trained, stats, args.nodes)
            models[(activation, trained)] = model
            for node in args.nodes:
                rows = expansion_map(
                    model, x, y, args.sigmas, layer=node, points=args.points, check_points=args.check_points
                )
                results.append(
                    {"model": f"{activation} {'1 epoch' if trained else 'init'}", "node": node, "rows": rows}
                )
                label = f"{activation} {'1 epoch' if trained else 'init'} {node}"
                ratios.append([label, *(f"{r['ratio']:.3g}" for r in rows)])
                checks.append([label, f"{max(float(r['quadrature']) for r in rows):.1e}"])
                forms.append([label, f"{rows[0]['clean']:.4f}", f"{rows[0]['Q']:.3e}", f"{rows[0]['M4']:.3e}"])
            print(f"# {activation} {'1 epoch' if trained else 'init'}: {time.perf_counter() - start:.0f} s", flush=True)
    print("\n(E L - L) / (1/2 sigma^2 Q):")
    print("| model, node | " + " | ".join(f"{s:g}" for s in args.sigmas) + " |")
    print("|---|" + "---|" * len(args.sigmas))
    for row in ratios:
        print("| " + " | ".join(row) + " |")
    print(f"\nlargest |composite {args.points} - composite {args.check_points}| / |excess| over the sigma grid:")
    for row in checks:
        print(f"  {row[0]}: {row[1]}")
    print("\nL, Q = d2L/dt2, M4 = d4L/dt4 (autograd, t = 0):")
    for row in forms:
        print(f"  {row[0]}: L {row[1]}, Q {row[2]}, M4 {row[3]}")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine_info(), "results": results}, indent=1))
    if args.validate:
        validate(models, x[: args.validate], y[: args.validate], args.nodes)


def validate(models: dict, x: torch.Tensor, y: torch.Tensor, nodes: Sequence[str]) -> None:
    """Gauss-Hermite and composite rules against the adaptive rule: relative error of the excess."""
    print(f"\nquadrature error on the first {len(x)} examples: (rule - adaptive) / adaptive")
    print(
        "| model, node, sigma | adaptive excess | its error estimate | evaluations / example | "
        + " | ".join(f"{rule} {n}" for rule, n in VALIDATE_RULES)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(VALIDATE_RULES))
    for (activation, trained), model in models.items():
        for node in nodes:
            line = NoiseLine(model, x, y, layer=node)
            for s in VALIDATE_SIGMAS:
                (ref,) = excess_loss(model, x, y, [s], rule="adaptive", rtol=VALIDATE_RTOL, line=line)
                errs = []
                for rule, n in VALIDATE_RULES:
                    (got,) = excess_loss(model, x, y, [s], rule=rule, points=n, line=line)
                    errs.append(f"{(got.excess - ref.excess) / ref.excess:+.1e}")
                label = f"{activation} {'1 epoch' if trained else 'init'} {node}, {s:g}"
                print(
                    f"| {label} | {ref.excess:.6e} | {ref.error / abs(ref.excess):.0e} | {ref.evaluations:.0f} | "
                    + " | ".join(errs)
                    + " |",
                    flush=True,
                )


def curvature(args: argparse.Namespace) -> None:
    data = load_dataset("fashion-mnist")
    stats = channel_stats(data.x_train)
    for arch in ("mlp", "cnn"):
        for seed in args.seeds:
            config = TrainConfig(model=arch, seed=seed)
            model, _ = build_setup(config, data.input_shape, data.num_classes, [], stats)
            x, y = calibration_probe(data, seed)
            found = nin_curvature(model, x, y, where="all", seed=seed)
            print(f"{arch} seed {seed}: " + ", ".join(f"{k} {v:.3g}" for k, v in found.items()), flush=True)


def noise_scale(args: argparse.Namespace) -> None:
    """Per-pixel NIW std and the noise-to-signal ratio after each node's layer, per unit of sigma."""
    data = load_dataset("fashion-mnist")
    stats = channel_stats(data.x_train)
    x = data.x_train[:1000]
    for arch in ("mlp", "cnn"):
        for seed in args.seeds:
            model, _ = build_setup(TrainConfig(model=arch, seed=seed), data.input_shape, data.num_classes, [], stats)
            attach_nins(model, "all", sigma=1.0, seed=seed, example_input=x[:2])
            parts = []
            for name, node in nin_nodes(model).items():
                if name == "out" or (arch == "mlp" and name != "fc1"):
                    continue
                signal, noise = _layer_response(model, name, x)
                std = float(node.weight.detach().std())
                # the same draw at the layer's own fan-in, U(+-1/sqrt(fan_in)): noise scales with the NIW
                fan_in_std = 1 / math.sqrt(3 * layer_fan_in(dict(model.named_modules())[name]))
                parts.append(
                    f"{name}: NIW std {std:.4f}, noise/signal {noise / signal:.4f} (at the fan-in scale: "
                    f"{fan_in_std:.4f}, {noise / signal * fan_in_std / std:.4f})"
                )
            print(f"{arch} seed {seed}: " + "; ".join(parts), flush=True)


@torch.no_grad()
def _layer_response(model: nn.Module, name: str, x: torch.Tensor) -> tuple[float, float]:
    """RMS of the layer's output with noise off (minus its bias) and of its change at eps = 1."""
    layer = dict(model.named_modules())[name]
    got: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, a, out: got.append(out))
    try:
        with replaying(model, None):
            model(x)
        with replaying(model, {name: torch.ones(len(x))}):
            model(x)
    finally:
        handle.remove()
    clean, noisy = got
    bias = layer.bias.view(1, -1, *[1] * (clean.dim() - 2))
    return float((clean - bias).pow(2).mean().sqrt()), float((noisy - clean).pow(2).mean().sqrt())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("table")
    p.add_argument("--examples", type=int, default=1000)
    p.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--check-points", type=int, default=512)
    p.add_argument("--validate", type=int, default=0)
    p.add_argument("--nodes", nargs="+", default=list(NODES), help="layers of the MLP to put a node on, one at a time")
    p.add_argument("--activations", nargs="+", default=["relu", "tanh"], choices=["relu", "tanh"])
    p.add_argument("--out", default="")
    for name in ("curvature", "noise-scale"):
        q = sub.add_parser(name)
        q.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    for q in sub.choices.values():
        q.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info()
    print(
        f"# {info['cpu']} ({info['capability']}), {info['threads']} thread(s), torch {info['torch']}, "
        f"commit {info['git']}, load {info['loadavg']}"
    )
    start = time.perf_counter()
    {"table": table, "curvature": curvature, "noise-scale": noise_scale}[args.command](args)
    print(f"# {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
