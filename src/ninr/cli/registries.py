"""``ninr list`` (every registry, or one) and ``ninr data fetch``."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import ninr.data
import ninr.functional
import ninr.hep
import ninr.methods
import ninr.models
import ninr.report
import ninr.robustness
import ninr.studies
from ninr.cli.args import Handler
from ninr.data import load_fashion_mnist_raw, locate_fashion_mnist
from ninr.errors import ConfigError, did_you_mean
from ninr.registry import load_plugins, registries

LOADED = (ninr.data, ninr.functional, ninr.hep, ninr.methods, ninr.models, ninr.report, ninr.robustness, ninr.studies)
"""Packages whose import registers components (``ninr list`` shows what they registered)."""


def register(sub: Any) -> dict[str, Handler]:
    """Add ``list`` and ``data``; return their handlers."""
    p_list = sub.add_parser(
        "list",
        help="list the registries (models, methods, distributions, ...)",
        description="List what can be named on the command line and in experiment files: every registry (models, "
        "methods, distributions, corruptions, attacks, data sets, study parts, run hooks, report sections), "
        "installed plugins included, with a one-line summary of each entry and, for methods, their parameters "
        "(the keys of `ninr train --param KEY=VALUE`) with their defaults.",
    )
    p_list.add_argument("kind", nargs="?", default=None, help="only this registry, e.g. methods")
    p_data = sub.add_parser(
        "data",
        help="data set management",
        description="Data set management: `ninr data fetch` makes Fashion-MNIST available.",
    )
    data_sub = p_data.add_subparsers(dest="data_command", required=True)
    p_fetch = data_sub.add_parser(
        "fetch",
        help="make Fashion-MNIST available (verify checksums, cache)",
        description="Find Fashion-MNIST (--data-dir or NINR_DATA_DIR alone when given; else the Debian package "
        "directory, then the user cache) or download it into the cache, and verify every file's sha256.",
    )
    p_fetch.add_argument("--data-dir", default=None)
    p_fetch.add_argument("--no-download", action="store_true")
    return {"list": cmd_list, "data": cmd_data}


def cmd_list(args: argparse.Namespace) -> int:
    """``ninr list [KIND]`` (installed plugins included)."""
    load_plugins()
    regs = registries()
    kind_arg = args.kind[:-1] if args.kind and args.kind.endswith("s") and args.kind[:-1] in regs else args.kind
    kinds = [kind_arg] if kind_arg else sorted(regs)
    for kind in kinds:
        if kind not in regs:
            raise ConfigError(f"`kind` must be one of {sorted(regs)}, got {kind!r}{did_you_mean(kind, regs)}")
        print(f"{kind}s:")
        for name, doc in regs[kind].describe().items():
            print(f"  {name:<20} {doc}")
            keys = parameters(regs[kind].get(name))
            if keys:
                print(f"  {'':<20}   parameters: {keys}")
    return 0


def parameters(obj: object) -> str:
    """``"sigma=1.0, distribution='gaussian'"``: the constructor fields of a registered dataclass (a method) with
    their defaults; empty for anything else."""
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        return ""
    shown = []
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            shown.append(f"{f.name}={f.default!r}")
        elif f.default_factory is not dataclasses.MISSING:
            shown.append(f"{f.name}={f.default_factory()!r}")
        else:
            shown.append(f.name)
    return ", ".join(shown)


def cmd_data(args: argparse.Namespace) -> int:
    """``ninr data fetch``."""
    where = locate_fashion_mnist(args.data_dir, download=not args.no_download)
    x_train, _, x_test, _ = load_fashion_mnist_raw(where, download=False)
    print(f"Fashion-MNIST verified in {where}: {len(x_train)} train, {len(x_test)} test images")
    return 0
