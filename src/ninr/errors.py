"""Error types and argument validators with one message format.

Every validator raises :class:`ConfigError` with a message of the form
``` `sigma` must be a finite number >= 0, got -0.1 ```: the argument, the rule and the value.
The CLI turns a :class:`NinrError` into exit code 2.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch


class NinrError(Exception):
    """Base class of every error ninr raises on purpose."""


class ConfigError(NinrError, ValueError):
    """An argument or configuration value breaks a documented rule."""


class UnknownNameError(ConfigError, KeyError):
    """A name looked up in a registry does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(NinrError):
    """A data set could not be found, read or verified."""


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def fail(name: str, rule: str, value: Any) -> ConfigError:
    """Build the standard error: `` `name` must be RULE, got VALUE``."""
    return ConfigError(f"`{name}` must be {rule}, got {_fmt(value)}")


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_number(value: Any) -> Any:
    """``value`` as a Python ``int`` or ``float`` when it is a real number of any numeric type: a Python number,
    a NumPy scalar, a 0-d array or tensor (booleans are not numbers here); anything else is returned unchanged,
    for a validator to refuse with its own message."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        item = value.item()  # a 0-d NumPy array or torch tensor
        if _is_real(item):
            return item
    return value


def check_finite(name: str, value: Any) -> float:
    """A finite real number."""
    if not _is_real(value) or not math.isfinite(value):
        raise fail(name, "a finite number", value)
    return float(value)


def check_nonneg(name: str, value: Any) -> float:
    """A finite real number >= 0."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise fail(name, "a finite number >= 0", value)
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """A finite real number > 0."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise fail(name, "a finite number > 0", value)
    return float(value)


def check_positive_int(name: str, value: Any) -> int:
    """An integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(name, "an integer >= 1", value)
    return value


def check_nonneg_int(name: str, value: Any) -> int:
    """An integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(name, "an integer >= 0", value)
    return value


def check_probability(name: str, value: Any, *, closed_right: bool = False) -> float:
    """A number in [0, 1), or [0, 1] with ``closed_right``."""
    ok = _is_real(value) and math.isfinite(value) and value >= 0 and (value <= 1 if closed_right else value < 1)
    if not ok:
        raise fail(name, "a number in [0, 1]" if closed_right else "a number in [0, 1)", value)
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of a fixed set of strings; a miss gets close matches."""
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        raise ConfigError(f"`{name}` must be one of {options}, got {_fmt(value)}{did_you_mean(value, options)}")
    return value


DEVICE_RULE = "a torch device such as 'cpu', 'cuda' or 'cuda:1'"


def check_device(name: str, value: Any, *, available: bool = False) -> str:
    """A torch device string; with ``available``, also one this machine has (checked where a command starts, not
    in stored configs, which may be written on one machine and run on another)."""
    try:
        device = torch.device(value) if isinstance(value, str) and value else None
    except RuntimeError:
        device = None
    if device is None:
        raise fail(name, DEVICE_RULE, value)
    if available and device.type != "cpu":
        backend = getattr(torch, device.type, None) if device.type in ("cuda", "mps", "xpu") else None
        count = backend.device_count() if backend is not None and backend.is_available() else 0
        if backend is None:
            why = "ninr runs on cpu, cuda, mps or xpu"
        elif count == 0:
            why = f"this machine has no {device.type} device"
        elif device.index is not None and device.index >= count:
            why = f"this machine has {count} {device.type} device(s)"
        else:
            return value
        raise ConfigError(f"`{name}` must be a device this machine has, got {value!r} ({why}; 'cpu' always works)")
    return value


def did_you_mean(value: Any, options: Iterable[str]) -> str:
    """A suffix ``"; did you mean 'x'?"`` naming the closest options, or ``""``."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(options), n=3, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
