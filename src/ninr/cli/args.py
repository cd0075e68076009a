"""Argument types shared by the subcommands: errors read "must be RULE, got VALUE" (exit code 2)."""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ninr.errors import ConfigError, check_device


def arg_type(rule: str, ok: Callable[[Any], bool], cast: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """An argparse ``type=``: parse with ``cast`` and check ``ok``; errors read "must be RULE, got VALUE"."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


nonneg_float = arg_type("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)
pos_float = arg_type("a finite number > 0", lambda v: math.isfinite(v) and v > 0)
unit_float = arg_type("a number in [0, 1)", lambda v: 0 <= v < 1)
pos_int = arg_type("an integer >= 1", lambda v: v >= 1, int)
nonneg_int = arg_type("an integer >= 0", lambda v: v >= 0, int)


def key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def refuse_non_empty(name: str, path: Path, way_out: str) -> None:
    """Refuse an output directory ``path`` (the argument ``name``) that already holds something; the message names
    a few of its entries and ``way_out`` (how to write there anyway)."""
    held = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if held:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise ConfigError(
            f"`{name}` must be a new or empty directory, got {str(path)!r}, which holds {shown}; {way_out}"
        )


def check_out_path(name: str, path: str | Path, *, directory: bool = False) -> Path:
    """An output path this process can write, checked before anything runs.

    It must not lie under a file, and the directory it is written in (itself if it is an existing directory,
    else its nearest existing parent) must be writable: checked with ``os.access`` and then by creating and
    deleting a file there, since ``os.access`` says yes to root on a read-only file system. With
    ``directory``, the path must not be an existing file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        if directory:
            raise ConfigError(f"`{name}` must be a directory, got {str(path)!r}, which is a file")
        base = path.parent
    else:
        base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ConfigError(
            f"`{name}` must be a path that does not lie under a file, got {str(path)!r}, under the file {str(base)!r}"
        )
    why = "" if os.access(base, os.W_OK | os.X_OK) else "no write permission"
    if not why:
        try:
            fd, probe = tempfile.mkstemp(prefix=".ninr-write-probe-", dir=base)
        except OSError as exc:
            why = exc.strerror or str(exc)
        else:
            os.close(fd)
            os.unlink(probe)
    if why:
        where = "" if base == path else f" in {str(base)!r}"
        raise ConfigError(f"`{name}` must be a path in a writable directory, got {str(path)!r} ({why}{where})")
    return path


def check_parsed(args: argparse.Namespace) -> None:
    """Checks of the arguments several subcommands share, done once after parsing and before any handler runs:
    ``--device`` must be a device this machine has, ``--out`` a path that can be written."""
    if getattr(args, "device", None) is not None:
        check_device("--device", args.device, available=True)
    if getattr(args, "out", None) is not None:
        check_out_path("--out", args.out)


Handler = Callable[[argparse.Namespace], int]
"""A subcommand's handler: parsed arguments in, exit code out."""
