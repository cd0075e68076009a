"""Argument types shared by the subcommands: errors read "must be RULE, got VALUE" (exit code 2)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any


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


Handler = Callable[[argparse.Namespace], int]
"""A subcommand's handler: parsed arguments in, exit code out."""
