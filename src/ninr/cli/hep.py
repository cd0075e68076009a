"""``ninr hep generate`` and ``ninr hep train``: the photon study from the command line.

``ninr hep generate --config configs/hep-quick.toml --out DIR`` writes ``DIR/events.h5`` and prints the
generation throughput; ``ninr hep train --config configs/hep-quick.toml --out DIR`` reuses those events
(or generates them), trains every method x seed and writes ``records.jsonl``, ``table.md`` and
``roc.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the ``hep`` command and its subcommands; return the handler."""
    p = subparsers.add_parser("hep", help="prompt-photon study: Pythia 8 events, fast calorimeter, ResNet18")
    sub = p.add_subparsers(dest="hep_command", required=True)
    g = sub.add_parser("generate", help="generate photon candidates with Pythia 8 into an HDF5 file")
    _common(g)
    g.add_argument("--signal-events", type=int, default=None, help="override [generation] n_signal_events")
    g.add_argument("--background-events", type=int, default=None, help="override [generation] n_background_events")
    t = sub.add_parser("train", help="train every method x seed on simulation, test on simulation and data")
    _common(t)
    t.add_argument("--seeds", type=int, nargs="+", default=None, help="override [study] seeds")
    t.add_argument("--methods", nargs="+", default=None, metavar="LABEL", help="only these method labels")
    t.add_argument("--epochs", type=int, default=None, help="override [study] epochs")
    t.add_argument("--device", default=None, help="override [study] device")
    return {"hep": _dispatch}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="study TOML file, e.g. configs/hep-quick.toml")
    p.add_argument("--out", required=True, help="output directory (events.h5 goes here unless --events)")
    p.add_argument("--events", default=None, help="events HDF5 path (default: [study] events or OUT/events.h5)")
    p.add_argument("--workers", type=int, default=None, help="generation processes (default: [study] workers)")
    p.add_argument("--overwrite", action="store_true", help="regenerate events even if the file exists")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice); 1 is much faster on a busy shared machine",
    )


def _dispatch(args: argparse.Namespace) -> int:
    if args.threads is not None:
        import torch

        from ninr.errors import check_positive_int

        torch.set_num_threads(check_positive_int("threads", args.threads))  # an entry point may set global state
    return {"generate": cmd_generate, "train": cmd_train}[args.hep_command](args)


def _config(args: argparse.Namespace) -> Any:
    from ninr.hep.study import load_study_config

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
        from ninr.errors import ConfigError, did_you_mean

        labels = [m.label for m in config.methods]
        for label in args.methods:
            if label not in labels:
                raise ConfigError(
                    f"`--methods` must name methods of the config {labels}, got {label!r}{did_you_mean(label, labels)}"
                )
        config = dataclasses.replace(config, methods=tuple(m for m in config.methods if m.label in args.methods))
    return config


def cmd_generate(args: argparse.Namespace) -> int:
    from ninr.hep.datasets import write_events
    from ninr.hep.generate import generate

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
        from ninr.hep.datasets import read_events

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
    from ninr.hep.report import markdown_table
    from ninr.hep.study import run_hep_study

    config = _config(args)
    started = time.perf_counter()
    records = run_hep_study(
        config, out_dir=args.out, overwrite_events=args.overwrite, progress=lambda m: print(m, file=sys.stderr)
    )
    print(markdown_table(records, config.signal_efficiencies))
    print(f"study finished in {time.perf_counter() - started:.1f}s; records, table.md and roc.png in {args.out}")
    return 0
