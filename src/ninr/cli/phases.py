"""``ninr phases``: the phase-diagram experiment from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def register(subparsers: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``phases`` to the ``ninr`` parser; returns its handler."""
    from ninr.cli.args import nonneg_int, pos_float, pos_int

    p = subparsers.add_parser("phases", help="sweep sigma and map the phases of NIN dynamics (decay times, plot)")
    p.add_argument("--model", choices=["linear", "mlp"], default="linear", help="linear regression or the MLP")
    p.add_argument("--sigmas", type=pos_float, nargs="+", default=None, help="noise scales (default: a log grid)")
    p.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument(
        "--noise",
        choices=["redrawn", "fixed"],
        nargs="+",
        default=["redrawn", "fixed"],
        help="NIN noise redrawn every step and/or fixed per example (default: both)",
    )
    p.add_argument("--epochs", type=pos_int, default=2, help="MLP epochs (default: 2)")
    p.add_argument("--steps", type=pos_int, default=None, help="linear model steps (default: 300)")
    p.add_argument("--lr", type=pos_float, default=None, help="learning rate (default: 0.05 MLP, 0.01 linear)")
    p.add_argument("--batch-size", type=pos_int, default=None, help="MLP: 64; linear: full batch (GD)")
    p.add_argument(
        "--threads",
        type=pos_int,
        default=1,
        help="torch CPU threads (default 1: these small models run fastest on one)",
    )
    p.add_argument("--out", default=None, help="output directory (default: results/phases-MODEL)")
    p.add_argument("--quiet", action="store_true", help="no per-run lines")
    return {"phases": cmd_phases}


def cmd_phases(args: argparse.Namespace) -> int:
    import torch

    from ninr.dynamics.experiment import SweepConfig, run_linear, run_mlp
    from ninr.dynamics.report import plot_phases, table_markdown, write_jsonl

    torch.set_num_threads(args.threads)
    config = SweepConfig(
        model=args.model,
        sigmas=tuple(args.sigmas or ()),
        seeds=tuple(args.seeds),
        noise=tuple(args.noise),
        lr=args.lr,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
    )
    out = Path(args.out or f"results/phases-{args.model}")
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.perf_counter()
    if args.model == "linear":
        records, trajectories = run_linear(config, progress)
        theory = _linear_theory(config)
    else:
        from ninr.data import load_dataset

        records, trajectories = run_mlp(config, load_dataset("fashion-mnist"), progress)
        theory = None
    wall = time.perf_counter() - started
    write_jsonl(out / "records.jsonl", records)
    write_jsonl(out / "trajectories.jsonl", trajectories)
    table = table_markdown(records)
    (out / "table.md").write_text(table, encoding="utf-8")
    plot = plot_phases(records, out / "phases.png", theory=theory)
    print(table)
    if theory:
        print(theory["summary"])
    print(_ranges_text(records))
    print(f"{len(records)} run(s) in {wall:.1f}s; records, table and plot written to {out} ({plot.name})")
    return 0


def _linear_theory(config: Any) -> dict[str, Any]:
    from ninr.dynamics.experiment import LINEAR_DEFAULTS
    from ninr.dynamics.theory.linear import control_parameter, decay_time, phase_boundaries

    eta = config.learning_rate
    steps = config.steps or int(LINEAR_DEFAULTS["steps"])
    batch = config.batch_size or int(LINEAR_DEFAULTS["n_train"])
    grid = config.grid
    sigmas = np.geomspace(min(grid) / 1.5, max(grid) * 1.5, 300)
    tau = [decay_time(control_parameter(eta, float(s)), batch) for s in sigmas]
    bounds = phase_boundaries(steps, batch)
    edges = bounds.as_sigma(eta)
    cuts = [sigmas[0], edges["decoupled_decay"], edges["decay_oscillating"], edges["oscillating_divergent"], sigmas[-1]]
    regions = [
        (name, lo, hi)
        for name, lo, hi in zip(("decoupled", "decay", "oscillating", "divergent"), cuts[:-1], cuts[1:], strict=True)
        if hi > lo
    ]
    summary = (
        f"predicted boundaries in k (horizon {steps}, batch {batch}): decoupled|decay "
        f"{bounds.decoupled_decay:.4g}, decay|oscillating {bounds.decay_oscillating:.4g}, "
        f"oscillating|divergent {bounds.oscillating_divergent:.4g}; in sigma (eta={eta:g}): "
        + ", ".join(f"{v:.4g}" for v in edges.values())
    )
    return {
        "sigma": sigmas.tolist(),
        "tau": [t if np.isfinite(t) else np.nan for t in tau],
        "regions": regions,
        "summary": summary,
    }


def _ranges_text(records: list[dict[str, Any]]) -> str:
    from ninr.dynamics.report import phase_ranges

    lines = []
    for noise in ("redrawn", "fixed"):
        ranges = phase_ranges(records, noise)
        if ranges:
            lines.append(
                f"measured phases ({noise} noise), sigma ranges: "
                + "; ".join(f"{p} {lo:.3g}-{hi:.3g}" for p, lo, hi in ranges)
            )
    return "\n".join(lines)
