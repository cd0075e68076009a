"""``ninr eval RUN_DIR``: the robustness of a trained run, a one-run study of the ``eval`` part.

Each evaluation (the run and these settings) is one run of the store ``RUN_DIR/eval``; evaluating again
with the same settings recomputes it (``--resume`` keeps it). Every evaluation's records are also written,
merged, to ``RUN_DIR/robustness.jsonl`` (``--out``), and this one's table to stdout.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ninr.cli.args import Handler, arg_type, nonneg_float, nonneg_int, pos_int
from ninr.fileio import atomic_write_bytes, json_text
from ninr.robustness.plots import plot_all
from ninr.robustness.table import format_table
from ninr.studies.executors import Executor
from ninr.studies.parts.evaluate import Evaluation, eval_spec
from ninr.studies.session import run_part, single_info
from ninr.studies.store import ResultStore
from ninr.train import rundir

RECORDS_FILE = "robustness.jsonl"
# the fields that identify a record: a new evaluation replaces the old record with the same key (the trained run's
# id is one of them, so evaluations of several runs merged into one --out file keep each run's records)
RECORD_KEY = ("trained_run_id", "condition", "severity", "intensity", "epsilon", "noise", "metric")


severity_int = arg_type("an integer in 1..5", lambda v: 1 <= v <= 5, int)


def register(subparsers: Any) -> dict[str, Handler]:
    """Add ``ninr eval`` to the ``ninr`` parser; returns its handler."""
    p = subparsers.add_parser(
        "eval",
        help="robustness of a trained run: corruptions by severity, noise curves, attacks, domain shift",
        description="Evaluate RUN_DIR's model on its data set's test split; write RUN_DIR/robustness.jsonl.",
    )
    p.add_argument("run_dir", help="a run directory written by `ninr train --out`")
    p.add_argument(
        "--suite",
        default="all",
        help="a registered suite (`ninr list suites`): clean, gaussian, noise, fmnist-c, attacks, shift, "
        "certify, certify-sigmas or all (default)",
    )
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
    p.add_argument(
        "--resume", action="store_true", help="keep an evaluation already in RUN_DIR/eval with these settings"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return {"eval": cmd_eval}


def _key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(k) for k in RECORD_KEY)


def merge_records(old: Iterable[Mapping[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``new`` plus the records of ``old`` that ``new`` does not replace (same key), old ones first."""
    fresh = {_key(r) for r in new}
    return [dict(r) for r in old if _key(r) not in fresh] + new


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Merge ``records`` into the JSONL file at ``path`` and replace it atomically."""
    old = rundir.read_jsonl(path) if path.exists() else []
    merged = merge_records(old, records)
    text = "".join(json_text(r) + "\n" for r in merged)  # strict JSON: a non-finite value is null
    atomic_write_bytes(path, text.encode())


def cmd_eval(args: argparse.Namespace) -> int:
    """``ninr eval RUN_DIR``: evaluate, store in ``RUN_DIR/eval``, merge into the records file, print the table."""
    run_dir = Path(args.run_dir)
    evaluation = Evaluation(
        suite=args.suite,
        severities=None if args.severities is None else tuple(args.severities),
        epsilons=None if args.eps is None else tuple(args.eps),
        stds=None if args.stds is None else tuple(args.stds),
        noise=args.noise,
        draws=args.draws,
        eot=args.eot,
        limit=args.limit,
        shift_datasets=tuple(args.shift_dataset),
        batch_size=args.batch_size,
        attack_batch_size=args.attack_batch_size,
        device=args.device,
    )
    spec = eval_spec(run_dir, evaluation, args.seed)
    store = ResultStore(run_dir / "eval")
    info = single_info("eval", [spec], {"hooks": []}, f"ninr eval {run_dir}")
    summary = run_part(
        [spec], store, Executor(), info, resume=args.resume, redo=not args.resume, quiet=args.quiet, stack=False
    )
    records = store.read(spec.run_id).records
    out = Path(args.out) if args.out else run_dir / RECORDS_FILE
    write_records(out, records)
    print(format_table(records))
    print(f"\n{len(records)} records in {summary.elapsed_s:.1f}s, written to {out} and {store.root}")
    if args.plot:
        written = plot_all(records, args.plot)
        print(f"{len(written)} figure file(s) in {args.plot}")
    return 0
