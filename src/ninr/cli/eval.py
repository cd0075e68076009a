"""``ninr eval RUN_DIR``: robustness of a trained run; records go next to the run, a table to stdout."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ninr.cli.args import arg_type, nonneg_float, nonneg_int, pos_int
from ninr.errors import ConfigError

RECORDS_FILE = "robustness.jsonl"
# the fields that identify a record: a new evaluation replaces the old record with the same key
RECORD_KEY = ("condition", "severity", "intensity", "epsilon", "noise", "metric")


severity_int = arg_type("an integer in 1..5", lambda v: 1 <= v <= 5, int)


def register(subparsers: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``ninr eval`` to the ``ninr`` parser; returns its handler."""
    import ninr.robustness  # noqa: F401  (registers corruptions, attacks, suites, shifts for `ninr list`)

    p = subparsers.add_parser(
        "eval",
        help="robustness of a trained run: corruptions by severity, noise curves, attacks, domain shift",
        description="Evaluate RUN_DIR's model on its data set's test split; write RUN_DIR/robustness.jsonl.",
    )
    p.add_argument("run_dir", help="a run directory written by `ninr train --out`")
    p.add_argument("--suite", default="all", help="clean, gaussian, noise, fmnist-c, attacks, shift or all (default)")
    p.add_argument("--severities", type=severity_int, nargs="+", default=None, help="corruption severities (1..5)")
    p.add_argument("--eps", type=nonneg_float, nargs="+", default=None, help="attack epsilons (L-inf)")
    p.add_argument("--stds", type=nonneg_float, nargs="+", default=None, help="noise stds of the noise curves")
    p.add_argument("--noise", choices=["auto", "off", "on", "both"], default="auto", help="model noise at test time")
    p.add_argument("--draws", type=pos_int, default=5, help="noise draws averaged for noise-on accuracy")
    p.add_argument("--eot", type=pos_int, default=None, help="EOT gradient samples when attacking with noise on")
    p.add_argument("--batch-size", type=pos_int, default=1000, help="evaluation batch size; default: 1000")
    p.add_argument("--attack-batch-size", type=pos_int, default=500, help="attack batch size; default: 500")
    p.add_argument("--limit", type=pos_int, default=None, help="only the first N test examples")
    p.add_argument("--shift-dataset", action="append", default=[], metavar="NAME", help="another data set as shift")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the evaluation's randomness; default: 0")
    p.add_argument("--device", default="cpu", help="torch device; default: cpu")
    p.add_argument("--out", default=None, help=f"records file; default: RUN_DIR/{RECORDS_FILE}")
    p.add_argument("--plot", default=None, metavar="DIR", help="also draw curves (PNG and PDF) into DIR")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return {"eval": cmd_eval}


def run_meta(run_dir: Path, config: Any) -> dict[str, Any]:
    """Fields every record of a run carries: run id, method, seed, model, data set."""
    from ninr.train import rundir

    meta_path = run_dir / rundir.CONFIG
    rid = json.loads(meta_path.read_text())["run_id"] if meta_path.exists() else None
    method = "+".join(spec.name for spec in config.methods) or "none"
    return {"run_id": rid, "method": method, "seed": config.seed, "model": config.model, "dataset": config.dataset}


def _key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(k) for k in RECORD_KEY)


def merge_records(old: Iterable[Mapping[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``new`` plus the records of ``old`` that ``new`` does not replace (same key), old ones first."""
    fresh = {_key(r) for r in new}
    return [dict(r) for r in old if _key(r) not in fresh] + new


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Merge ``records`` into the JSONL file at ``path`` and replace it atomically."""
    from ninr.train import rundir

    old = rundir.read_jsonl(path) if path.exists() else []
    merged = merge_records(old, records)
    text = "".join(json.dumps(r, default=str) + "\n" for r in merged)
    rundir.atomic_write_bytes(path, text.encode())


def cmd_eval(args: argparse.Namespace) -> int:
    from ninr.data import load_dataset
    from ninr.robustness.evaluate import evaluate
    from ninr.robustness.table import format_table
    from ninr.train import load_run, rundir

    run_dir = Path(args.run_dir)
    if not (run_dir / rundir.CHECKPOINT).is_file():
        raise ConfigError(f"`run_dir` must be a run directory holding {rundir.CHECKPOINT}, got {str(run_dir)!r}")
    model, config = load_run(run_dir, device=args.device)
    data = load_dataset(config.dataset, **dict(config.dataset_kwargs))
    x, y = data.x_test, data.y_test
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    shifts = {name: load_dataset(name) for name in args.shift_dataset}
    started = time.perf_counter()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    records = evaluate(
        model,
        (x.to(args.device), y.to(args.device)),
        args.suite,
        severities=args.severities,
        intensities=args.stds,
        epsilons=args.eps,
        shift_data=shifts,
        noise=args.noise,
        draws=args.draws,
        eot_samples=args.eot,
        batch_size=args.batch_size,
        attack_batch_size=args.attack_batch_size,
        seed=args.seed,
        meta=run_meta(run_dir, config),
        progress=progress,
    )
    out = Path(args.out) if args.out else run_dir / RECORDS_FILE
    write_records(out, records)
    print(format_table(records))
    print(f"\n{len(records)} records in {time.perf_counter() - started:.1f}s, written to {out}")
    if args.plot:
        from ninr.robustness.plots import plot_all

        written = plot_all(records, args.plot)
        print(f"{len(written)} figure file(s) in {args.plot}")
    return 0
