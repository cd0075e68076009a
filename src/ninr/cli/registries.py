"""``ninr list`` (every registry, or one) and ``ninr data fetch``."""

from __future__ import annotations

import argparse
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
    p_list = sub.add_parser("list", help="list the registries (models, methods, distributions, ...)")
    p_list.add_argument("kind", nargs="?", default=None, help="only this registry")
    p_data = sub.add_parser("data", help="data set management")
    data_sub = p_data.add_subparsers(dest="data_command", required=True)
    p_fetch = data_sub.add_parser("fetch", help="make Fashion-MNIST available (verify checksums, cache)")
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
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``ninr data fetch``."""
    where = locate_fashion_mnist(args.data_dir, download=not args.no_download)
    x_train, _, x_test, _ = load_fashion_mnist_raw(where, download=False)
    print(f"Fashion-MNIST verified in {where}: {len(x_train)} train, {len(x_test)} test images")
    return 0
