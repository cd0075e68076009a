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

import numpy as np

from ninr.cli.args import Handler, check_out_path, nonneg_int, pos_int
from ninr.errors import ConfigError, check_device, did_you_mean
from ninr.hep.datasets import check_events_file, generate_sharded, load_or_generate, read_events, write_events
from ninr.hep.events import ORIGIN_NAMES, Candidates
from ninr.hep.generate import generate
from ninr.hep.gun import GunConfig
from ninr.hep.shards import ShardStore, shards_dir
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
    """``ninr hep generate``: events into ``OUT/events.h5`` (or ``--events``), reused when they match.

    Pythia events grow a shard store beside the events file (``OUT/events.shards``, :mod:`ninr.hep.shards`):
    a larger ``--signal-events`` / ``--background-events`` than last time keeps the finished shards and
    adds new ones, a killed run resumes from its finished jobs, and a config that differs from the store's
    in anything but the targets is refused (exit 2) naming the setting.
    """
    config = _config(args)
    gen = config.generation
    if args.signal_events is not None or args.background_events is not None:
        gen = dataclasses.replace(
            gen,
            n_signal_events=gen.n_signal_events if args.signal_events is None else args.signal_events,
            n_background_events=gen.n_background_events if args.background_events is None else args.background_events,
        )
    path = Path(config.events) if config.events else Path(args.out) / "events.h5"
    if isinstance(gen, GunConfig):
        return _generate_gun(path, gen, args)
    if not args.overwrite:
        ShardStore(shards_dir(path)).check(gen)
        if check_events_file(path, gen):
            candidates, _, meta = read_events(path, expected=gen)
            print(f"{path}: already holds the events of this config; nothing to do ({_class_line(candidates, meta)})")
            return 0

    def progress(result: Any, done: int, total: int) -> None:
        print(
            f"  job {done}/{total}: {result.process}, {result.n_events} events, {len(result.candidates)} "
            f"candidates ({int(result.candidates.label.sum())} prompt), {result.seconds:.1f}s",
            file=sys.stderr,
        )

    started = time.perf_counter()
    candidates, meta = generate_sharded(path, gen, workers=config.workers, overwrite=args.overwrite, progress=progress)
    wall = time.perf_counter() - started
    now = meta["generated_now"]
    made = sum(now["events"].values())
    print(
        f"shards: {meta['reused_shards']} reused, {meta['generated_shards']} generated in {meta['wall_s']:.1f}s "
        f"with {meta['workers']} worker(s) ({made} events, {made / meta['wall_s'] if made else float('nan'):.1f} "
        f"events/s; Pythia {meta['pythia_version']})"
    )
    if made:
        cands = sum(now["candidates"].values())
        prompt = sum(now["prompt"].values())
        print(
            f"generated now, after selection: {prompt} prompt ({prompt / meta['wall_s']:.2f}/s), "
            f"{cands - prompt} non-prompt ({(cands - prompt) / meta['wall_s']:.2f}/s)"
        )
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in meta["stage_s"].items())
    print(f"job time by stage over the data set's shards: {stages}")
    print(f"{path}: {_class_line(candidates, meta)}; written in {wall:.1f}s with its shards")
    return 0


def _class_line(candidates: Candidates, meta: dict[str, Any]) -> str:
    """Candidates per class after selection, and the events they came from when the file says."""
    prompt = int(candidates.label.sum())
    events = meta.get("events") or {}
    per = ", ".join(f"{p} {n}" for p, n in events.items())
    made = f"from {sum(events.values())} events ({per}): " if events else ""
    origins = np.bincount(candidates.origin[candidates.label == 0].astype(np.int64), minlength=len(ORIGIN_NAMES))
    by_origin = ", ".join(f"{ORIGIN_NAMES[k]} {n}" for k, n in enumerate(origins) if n)
    return f"{made}{len(candidates)} candidates, {prompt} prompt and {len(candidates) - prompt} non-prompt" + (
        f" ({by_origin})" if by_origin else ""
    )


def _generate_gun(path: Path, gen: GunConfig, args: argparse.Namespace) -> int:
    """The particle gun: one file, no shards (it makes about a million candidates a second)."""
    if path.exists() and not args.overwrite:
        candidates, _, _ = read_events(path, expected=gen)
        print(f"{path}: already holds {len(candidates)} candidates generated with this config; nothing to do")
        return 0
    candidates, stats = generate(gen)
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
