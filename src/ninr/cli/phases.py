"""``ninr phases``: the phase diagram of NIN dynamics, a one-part study of the ``phases`` part.

The flags build the part's section (:class:`ninr.studies.parts.phases.PhasesSection`); the runs go into the
store ``OUT/phases`` (``--resume`` keeps finished runs) and the report into ``OUT/report``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ninr.cli.args import Handler, check_out_path, nonneg_int, pos_float, pos_int, refuse_non_empty
from ninr.cli.studies import write_reports
from ninr.dynamics.theory.linear import theory_curve
from ninr.dynamics.validation import CALIBRATION_SEED, VALIDATION_SEED, validation_report
from ninr.errors import ConfigError
from ninr.perf import num_threads
from ninr.report.phases import linear2_note, linear2_theory, panel_name, phase_ranges, runs_table
from ninr.studies.executors import make_executor
from ninr.studies.part import PARTS
from ninr.studies.records import final_records
from ninr.studies.session import run_part, single_info
from ninr.studies.store import ResultStore
from ninr.studies.tasks import stacking


def register(subparsers: Any) -> dict[str, Handler]:
    """Add ``phases`` to the ``ninr`` parser; returns its handler."""
    p = subparsers.add_parser("phases", help="sweep sigma and map the phases of NIN dynamics (decay times, plot)")
    p.add_argument("--model", choices=["linear", "linear2", "mlp"], default="linear",
                   help="linear regression, the two-layer linear toy (linear2) or the MLP")  # fmt: skip
    p.add_argument("--sigmas", type=pos_float, nargs="+", default=None, help="noise scales (default: a log grid)")
    p.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument(
        "--noise",
        choices=["redrawn", "fixed"],
        nargs="+",
        default=["redrawn", "fixed"],
        help="NIN noise redrawn every step and/or fixed per example (default: both)",
    )
    p.add_argument("--where", choices=["input", "all"], default=None,
                   help="MLP: where the nodes go: input (in-NINR, on fc1; the default) or all (full-NINR)")  # fmt: skip
    p.add_argument("--epochs", type=pos_int, default=None, help="MLP epochs (default: 2)")
    p.add_argument("--steps", type=pos_int, default=None, help="linear and linear2 steps (default: 300)")
    p.add_argument("--phi0", type=float, default=None, help="linear2: initial v . theta (default: 0.01)")
    p.add_argument("--norm-sq", type=pos_float, default=None, help="linear2: initial |v|^2 + |theta|^2 (default: 1)")
    p.add_argument("--boundary-seeds", type=nonneg_int, default=None,
                   help="linear2: seeds of the measured boundaries (default: 5; 0: not measured)")  # fmt: skip
    p.add_argument("--lr", type=pos_float, default=None, help="learning rate (default: 0.05 MLP, 0.01 linear models)")
    p.add_argument("--batch-size", type=pos_int, default=None, help="MLP: 64; linear, linear2: full batch (GD)")
    p.add_argument(
        "--threads",
        type=pos_int,
        default=1,
        help="torch CPU threads of this process (default 1; each run computes on one thread)",
    )
    p.add_argument("--workers", type=pos_int, default=None, metavar="N", help="a local process pool of N workers")
    p.add_argument("--resume", action="store_true", help="keep finished runs in --out and run only the missing ones")
    p.add_argument("--out", default=None, help="results directory (default: results/phases-MODEL)")
    p.add_argument("--quiet", action="store_true", help="no per-run lines")
    validate = "instead of a sweep: the phase classifier's error rates on N labelled trajectories"
    p.add_argument("--validate", type=pos_int, default=None, metavar="N", help=validate)
    seeds = f"default {VALIDATION_SEED}; {CALIBRATION_SEED} is the calibration set"
    p.add_argument(
        "--validate-seed", type=nonneg_int, default=VALIDATION_SEED, help=f"seed of the --validate set ({seeds})"
    )
    return {"phases": cmd_phases}


def sweep_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``[phases.options.MODEL]`` table the flags describe (flags left out keep the part's defaults)."""
    only = (("steps", ("linear", "linear2")), ("epochs", ("mlp",)), ("phi0", ("linear2",)), ("norm_sq", ("linear2",)),
            ("boundary_seeds", ("linear2",)), ("where", ("mlp",)))  # fmt: skip
    for flag, models in only:
        if getattr(args, flag, None) is not None and args.model not in models:
            name = f"--{flag.replace('_', '-')}"
            raise ConfigError(f"`{name}` applies to --model {' or '.join(models)} only, got --model {args.model}")
    sweep: dict[str, Any] = {"noise": list(args.noise)}
    if args.sigmas:
        sweep["sigmas"] = list(args.sigmas)
    if args.lr is not None:
        sweep["lr"] = args.lr
    if args.batch_size is not None:
        sweep["batch_size"] = args.batch_size
    if args.steps is not None:
        sweep["steps"] = args.steps
    if args.epochs is not None:
        sweep["epochs"] = args.epochs
    for flag in ("phi0", "norm_sq", "boundary_seeds", "where"):
        if getattr(args, flag, None) is not None:
            sweep[flag] = getattr(args, flag)
    return sweep


def cmd_phases(args: argparse.Namespace) -> int:
    """``ninr phases``: sweep, store, report; print the runs table, the theory's boundaries and the ranges.

    ``--threads`` holds for this command only (restored afterwards), so calling it in-process leaves the caller's
    thread count alone."""
    with num_threads(args.threads):
        if args.validate is not None:
            print(validation_report(args.validate, seed=args.validate_seed))
            return 0
        return _phases(args)


def _refuse_other_results(out: Path, store: ResultStore, run_ids: set[str]) -> None:
    """Without ``--resume``, ``--out`` must be new or empty: a sweep never writes over other results silently.

    A store already holding runs of this very sweep is left to :func:`ninr.studies.session.run_part`, whose
    refusal says how many of them it holds."""
    if not store.run_ids() & run_ids:
        way_out = "choose another --out (--resume adds this sweep's runs to its store and rewrites its report)"
        refuse_non_empty("--out", out, way_out)


def _phases(args: argparse.Namespace) -> int:
    part = PARTS.get("phases")
    raw = {"seeds": list(args.seeds), "options": {args.model: sweep_options(args)}}
    section = part.parse_section(raw)
    name = panel_name(args.model, args.where or "input")
    specs = part.expand(section, f"phases-{name}")
    out = check_out_path("--out", args.out or f"results/phases-{name}", directory=True)
    store = ResultStore(out / "phases")
    if not args.resume:
        _refuse_other_results(out, store, {s.run_id for s in specs})
    where = f" --where {args.where}" if args.where else ""
    info = single_info("phases", specs, raw, f"ninr phases --model {args.model}{where}")
    with make_executor(workers=args.workers) as executor:
        summary = run_part(
            specs, store, executor, info, resume=args.resume, quiet=args.quiet, stack=stacking("phases", section)
        )
    paths = write_reports(out, out / "report", echo=False)
    finals = final_records(store.records(info["run_ids"]))
    print(runs_table(finals, name).to_markdown())
    linear = [r for r in finals if r["model"] == "linear"]
    if linear:
        r = linear[0]
        sigmas = sorted({float(x["sigma"]) for x in linear})
        batch = int(r.get("batch_size") or r["n_train"])
        print(theory_curve(float(r["lr"]), int(r["steps"]), batch, sigmas)["summary"])
    theory2 = linear2_theory(finals)
    if theory2 is not None:
        print(linear2_note(finals, theory2))
    for noise in ("redrawn", "fixed"):
        ranges = phase_ranges(finals, noise)
        if ranges:
            text = "; ".join(f"{p} {lo:.3g}-{hi:.3g}" for p, lo, hi in ranges)
            print(f"measured phases ({noise} noise), sigma ranges: {text}")
    print(f"{summary.line()}; report: {paths['markdown']}", file=sys.stderr)
    return 0
