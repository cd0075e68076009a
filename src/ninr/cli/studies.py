"""``ninr sweep``, ``ninr reproduce`` and ``ninr report``.

* ``ninr sweep CONFIG.toml``: run every part of an experiment file into ``--out`` (one store per part).
* ``ninr reproduce --preset quick``: the same for ``configs/<preset>.toml``, then build the report.
* ``ninr report DIR``: rebuild ``report.md`` / ``report.html`` from finished runs alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ninr.cli.args import Handler, check_out_path, pos_int
from ninr.report.builder import build_report, export_records, write_report
from ninr.studies.executors import make_executor
from ninr.studies.migrate import migrate
from ninr.studies.part import PARTS, ordered
from ninr.studies.preset import Preset, find_preset, load_preset
from ninr.studies.session import StudySummary, run_study
from ninr.studies.tasks import stacking


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only", action="append", default=None, metavar="PART", help="run only this part (repeatable), e.g. table"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=pos_int, default=None, metavar="N", help="a local process pool of N workers")
    where.add_argument(
        "--dask-local",
        type=pos_int,
        default=None,
        metavar="N",
        help="start a Dask LocalCluster of N worker processes",
    )
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="run on an existing Dask cluster")
    p.add_argument("--resume", action="store_true", help="keep finished runs in --out and run only the missing ones")
    p.add_argument(
        "--no-stack",
        action="store_true",
        help="train every run on its own (default: runs that share an architecture train as one stack)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines (for logs)")
    p.add_argument("--out", default=None, help="results directory (default: results/<preset name>)")


def register(subparsers: Any) -> dict[str, Handler]:
    """Add the experiment subcommands; return their handlers."""
    p_sweep = subparsers.add_parser("sweep", help="run an experiment file's grid of runs into a results store")
    p_sweep.add_argument("config", help="experiment file (TOML), e.g. configs/tiny.toml")
    _add_run_args(p_sweep)
    p_repro = subparsers.add_parser(
        "reproduce", help="regenerate the poster's results end to end, then build the report"
    )
    p_repro.add_argument(
        "--preset", default="quick", help="a preset in configs/ (quick, paper) or a .toml path; default: quick"
    )
    p_repro.add_argument("--config-dir", default=None, help="look for presets here first")
    _add_run_args(p_repro)
    p_report = subparsers.add_parser(
        "report", help="rebuild report.md and report.html from finished runs (no training)"
    )
    p_report.add_argument("store", help="a results directory (holding one store per part) or one store")
    p_report.add_argument("--out", default=None, help="report directory (default: STORE/report)")
    p_store = subparsers.add_parser("store", help="results store maintenance")
    store_sub = p_store.add_subparsers(dest="store_command", required=True)
    p_migrate = store_sub.add_parser(
        "migrate", help="give runs stored under the earlier run-id scheme their current ids (nothing retrains)"
    )
    p_migrate.add_argument("store", help="a results directory (holding one store per part) or one store")
    p_migrate.add_argument("--dry-run", action="store_true", help="say what would be renamed, change nothing")
    return {"sweep": cmd_sweep, "reproduce": cmd_reproduce, "report": cmd_report, "store": cmd_store}


def expand_all(preset: Preset) -> None:
    """Expand every part of ``preset`` (and check its ``stack`` setting): a bad file fails before anything runs."""
    for part in preset.parts():
        section = preset.section(part)
        stacking(part, section)
        PARTS.get(part).expand(section, preset.name)


def _run_parts(preset: Preset, args: argparse.Namespace) -> tuple[Path, list[StudySummary]]:
    preset = preset.select(args.only)
    expand_all(preset)  # every part's grid resolves before anything trains or a cluster starts
    out = check_out_path("--out", args.out or Path("results") / preset.name, directory=True)
    summaries = []
    with make_executor(workers=args.workers, dask_local=args.dask_local, scheduler=args.scheduler) as executor:
        for part in ordered(preset.parts()):
            summary = run_study(
                preset, part, out, executor, resume=args.resume, quiet=args.quiet, stack=not args.no_stack
            )
            summary.store.export_csv(summary.store.root / "records.csv", summary.store.read_study()["run_ids"])
            summaries.append(summary)
            print(summary.line(), file=sys.stderr)
    return out, summaries


def _interrupted(out: str) -> int:
    print(
        f"interrupted; finished runs are kept in {out}: run the same command with --resume to continue", file=sys.stderr
    )
    return 130


def cmd_sweep(args: argparse.Namespace) -> int:
    """``ninr sweep CONFIG.toml``."""
    preset = load_preset(args.config)
    try:
        _run_parts(preset, args)
    except KeyboardInterrupt:
        return _interrupted(args.out or f"results/{preset.name}")
    return 0


def write_reports(root: Path, out: Path, *, echo: bool = True) -> dict[str, Path]:
    """Build the report of the stores under ``root`` into ``out``; print the claims sheet (its verdict counts and
    its table) and each section's first table."""
    report = build_report(root)
    paths = write_report(report, out)
    export_records(root, out)
    if echo and report.claims is not None and report.claims.tables:
        sheet = report.claims
        counts = "\n".join(sheet.notes[:-1])  # the verdict counts (after a note on unfinished parts); not the rule text
        print(f"\n{sheet.title}\n\n{counts}\n\n{sheet.tables[0].to_markdown()}\n")
    for section in report.sections if echo else []:
        for table in section.body.tables[:1]:
            print(f"\n{table.title} ({section.body.part})\n\n{table.to_markdown()}\n")
        print(f"{section.body.part}: wall time {section.wall_time_s:.1f} s", file=sys.stderr)
    return paths


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``ninr reproduce --preset NAME``: run the parts, then write the report to ``<out>/report``."""
    preset = load_preset(find_preset(args.preset, args.config_dir))
    started = time.perf_counter()
    try:
        out, _ = _run_parts(preset, args)
    except KeyboardInterrupt:
        return _interrupted(args.out or f"results/{preset.name}")
    paths = write_reports(out, out / "report")
    print(
        f"report: {paths['html']} and {paths['markdown']} ({time.perf_counter() - started:.1f}s in all)",
        file=sys.stderr,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``ninr report DIR``: rebuild the report from the stores under DIR."""
    root = Path(args.store)
    paths = write_reports(root, Path(args.out) if args.out else root / "report")
    print(f"report: {paths['html']} and {paths['markdown']}", file=sys.stderr)
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    """``ninr store migrate DIR``."""
    for migration in migrate(args.store, dry_run=args.dry_run):
        print(("(dry run) " if args.dry_run else "") + migration.line())
    return 0
