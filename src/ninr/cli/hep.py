"""``ninr hep generate`` and ``ninr hep train``: the photon study from the command line.

``ninr hep generate --config configs/hep-quick.toml --out DIR`` writes ``DIR/events.h5`` and prints the
generation throughput; ``ninr hep train --config configs/hep-quick.toml --out DIR`` reuses those events
(or generates them) and runs the ``hep`` study part over every method x seed: the store ``DIR/hep`` (a
second call keeps finished runs), run directories in ``DIR/runs`` and the report in ``DIR/report``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from ninr.cli.args import Handler, check_out_path, nonneg_int, pos_int
from ninr.errors import ConfigError, check_device, did_you_mean
from ninr.hep.datasets import load_or_generate, read_events, write_events
from ninr.hep.generate import generate
from ninr.hep.studyconfig import StudyConfig, load_study_config
from ninr.perf import num_threads
from ninr.report.builder import build_report, write_report
from ninr.studies.executors import Executor
from ninr.studies.parts.hep import study_specs
from ninr.studies.session import run_part, single_info
from ninr.studies.store import ResultStore
from ninr.studies.tasks import stacking


def register(subparsers: Any) -> dict[str, Handler]:
    """Add the ``hep`` command and its subcommands; return the handler."""
    p = subparsers.add_parser("hep", help="prompt-photon study: Pythia 8 events, fast calorimeter, ResNet18")
    sub = p.add_subparsers(dest="hep_command", required=True)
    g = sub.add_parser("generate", help="generate photon candidates with Pythia 8 into an HDF5 file")
    _common(g)
    g.add_argument("--signal-events", type=nonneg_int, default=None, help="override [generation] n_signal_events")
    g.add_argument(
        "--background-events", type=nonneg_int, default=None, help="override [generation] n_background_events"
    )
    t = sub.add_parser("train", help="train every method x seed on simulation, test on simulation and data")
    _common(t)
    t.add_argument("--seeds", type=nonneg_int, nargs="+", default=None, help="override [study] seeds")
    t.add_argument("--methods", nargs="+", default=None, metavar="LABEL", help="only these method labels")
    t.add_argument("--epochs", type=pos_int, default=None, help="override [study] epochs")
    t.add_argument("--device", default=None, help="override [study] device")
    return {"hep": _dispatch}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="study TOML file, e.g. configs/hep-quick.toml")
    p.add_argument("--out", required=True, help="output directory (events.h5 goes here unless --events)")
    p.add_argument("--events", default=None, help="events HDF5 path (default: [study] events or OUT/events.h5)")
    p.add_argument("--workers", type=pos_int, default=None, help="generation processes (default: [study] workers)")
    p.add_argument("--overwrite", action="store_true", help="regenerate events even if the file exists")
    p.add_argument(
        "--threads",
        type=pos_int,
        default=None,
        help="torch intra-op threads (default: torch's choice); 1 is much faster on a busy shared machine",
    )


def _dispatch(args: argparse.Namespace) -> int:
    handler = {"generate": cmd_generate, "train": cmd_train}[args.hep_command]
    if args.threads is None:
        return handler(args)
    with num_threads(args.threads):  # for this command only: an in-process caller keeps its thread count
        return handler(args)


def _config(args: argparse.Namespace) -> StudyConfig:
    over: dict[str, Any] = {}
    if args.events is not None:
        over["events"] = args.events
    if args.workers is not None:
        over["workers"] = args.workers
    for name in ("seeds", "epochs", "device"):
        value = getattr(args, name, None)
        if value is not None:
            over[name] = tuple(value) if name == "seeds" else value
    config = load_study_config(args.config, **over)
    if getattr(args, "methods", None):
        labels = [m.label for m in config.methods]
        for label in args.methods:
            if label not in labels:
                raise ConfigError(
                    f"`--methods` must name methods of the config {labels}, got {label!r}{did_you_mean(label, labels)}"
                )
        config = dataclasses.replace(config, methods=tuple(m for m in config.methods if m.label in args.methods))
    check_out_path("--out", args.out, directory=True)
    return config


def cmd_generate(args: argparse.Namespace) -> int:
    """``ninr hep generate``: events into ``OUT/events.h5`` (or ``--events``), reused when they match."""
    config = _config(args)
    gen = config.generation
    if args.signal_events is not None or args.background_events is not None:
        gen = dataclasses.replace(
            gen,
            n_signal_events=gen.n_signal_events if args.signal_events is None else args.signal_events,
            n_background_events=gen.n_background_events if args.background_events is None else args.background_events,
        )
    path = Path(config.events) if config.events else Path(args.out) / "events.h5"
    if path.exists() and not args.overwrite:
        candidates, _, meta = read_events(path, expected=gen)
        print(
            f"{path}: already holds {len(candidates)} candidates generated with this config; nothing to do "
            f"(generated at {meta.get('events_per_s', float('nan')):.1f} events/s)"
        )
        return 0

    def progress(result: Any, done: int, total: int) -> None:
        print(
            f"  job {done}/{total}: {result.process}, {result.n_events} events, {len(result.candidates)} "
            f"candidates, {result.seconds:.1f}s",
            file=sys.stderr,
        )

    candidates, stats = generate(gen, workers=config.workers, progress=progress)
    write_events(path, candidates, gen, {**stats.__dict__, "events_per_s": stats.events_per_s})
    prompt = int(candidates.label.sum())
    print(stats.summary())
    print(f"{len(candidates)} candidates ({prompt} prompt, {len(candidates) - prompt} non-prompt) written to {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``ninr hep train``: the study as a one-part study: store ``OUT/hep`` (finished runs are kept), the
    report in ``OUT/report``, the events in ``OUT/events.h5`` unless ``--events`` or the study file names one."""
    config = _config(args)
    check_device("device", config.device, available=True)  # the study file's; a given --device is checked already
    out = Path(args.out)
    events = config.events or str(out / "events.h5")
    config = dataclasses.replace(config, events=events)
    if args.overwrite and config.root is None:
        load_or_generate(events, config.generation, workers=config.workers, overwrite=True)
    specs = study_specs(config, "hep", artifacts=str(out))
    store = ResultStore(out / "hep")
    info = single_info("hep", specs, {"study": str(args.config)}, f"ninr hep train --config {args.config}")
    started = time.perf_counter()
    run_part(specs, store, Executor(), info, resume=True, stack=stacking("hep", None))
    report = build_report(out)
    write_report(report, out / "report")
    for section in report.sections:
        for table in section.body.tables[:1]:
            print(table.to_markdown())
    print(f"study finished in {time.perf_counter() - started:.1f}s; store {store.root}, report in {out / 'report'}")
    return 0
