"""Typed options from TOML tables: a frozen dataclass per table, filled with checked values.

:func:`parse` turns a mapping (a TOML table, a dict from the command line) into an instance of a dataclass,
checking each key against the fields (an unknown key gets a did-you-mean naming its table) and each value
against the field's type (a wrong type gets "`table.key` must be RULE, got VALUE"). Supported field types:
``bool``, ``int``, ``float`` (an integer is taken), ``str``, ``X | None``, ``Literal[...]``, ``tuple[X, ...]``
(from a list), ``Mapping[str, Any]`` / ``dict`` (kept as a dict), nested dataclasses, and ``Any``. A field may
name its own parser in its metadata: ``field(metadata={"parse": fn})`` with ``fn(value, where) -> value``.
Value rules beyond the type live in the dataclass's ``__post_init__``; its errors are prefixed with the table.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Sweep:
    ...     sigmas: tuple[float, ...] = (1.0,)
    ...     steps: int = 10
    >>> parse(Sweep, {"sigmas": [1, 2.5]}, "[phases.options.linear]")
    Sweep(sigmas=(1.0, 2.5), steps=10)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from ninr.errors import ConfigError, did_you_mean, fail

T = TypeVar("T")


def parse(cls: type[T], data: Any, where: str) -> T:
    """An instance of dataclass ``cls`` from ``data`` (see the module docstring); ``where`` names the table."""
    if not isinstance(data, Mapping):
        raise fail(where, "a table", data)
    # fields set by the class itself (``init=False``) are not keys of the table
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown key {key!r}{did_you_mean(str(key), fields)} (allowed: {', '.join(fields)})"
            )
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            custom = f.metadata.get("parse")
            key = f"{where}.{name}"
            values[name] = custom(data[name], key) if custom else convert(hints[name], data[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: `{name}` is required")
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against type ``tp`` (and converted: lists to tuples, integers to floats)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return convert(option, value, where)
            except ConfigError as exc:
                errors.append(exc)
        own = (f"`{where}` must be", f"`{table_name(where)}` must be")
        if len(errors) == 1 and not str(errors[0]).startswith(own):
            # ``X | None`` given a value of X's kind that fails inside (a nested key, an item of a list, a rule of
            # a nested table): that error is the precise one; a value of another kind gets "X or absent" below
            raise errors[0]
        raise fail(where, " or ".join(_describe(o) for o in args), value)
    if origin is typing.Literal:
        # equal and of the same type: True == 1 and 1.0 == 1 in Python, yet neither is the literal 1
        for option in args:
            if value == option and type(value) is type(option):
                return option
        raise fail(where, f"one of {list(args)}", value)
    if origin is tuple or tp is tuple:
        if not isinstance(value, list | tuple):
            raise fail(where, _describe(tp), value)
        if (len(args) == 2 and args[1] is Ellipsis) or not args:
            item = args[0] if args else Any
            return tuple(convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):  # a fixed-length tuple[X, Y]
            raise fail(where, _describe(tp), value)
        return tuple(convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise fail(where, "a table", value)
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return parse(tp, value, table_name(where))
    return _scalar(tp, value, where)


def table_name(where: str) -> str:
    """A nested table's name in TOML's spelling: ``[phases].options`` -> ``[phases.options]``."""
    if where.startswith("[") and not where.startswith("[[") and "]." in where and "[" not in where[1:]:
        head, _, tail = where[1:].partition("].")
        return f"[{head}.{tail}]"
    return where


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(where, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(where, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(where, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail(where, "a string", value)
        return value
    raise ConfigError(f"{where}: no parser for a field of type {tp!r}")


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "absent"
    if origin is tuple or tp is tuple:
        if not args:
            return "a list"
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(_describe(args[0]))}"
        return f"a list of {len(args)} items ({', '.join(_describe(a) for a in args)})"
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if dataclasses.is_dataclass(tp) or tp in (dict, Mapping) or origin in (dict, Mapping):
        return "a table"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(description: str) -> str:
    """``"an integer"`` -> ``"integers"``, ``"a number"`` -> ``"numbers"``; others kept whole (``"one of [...]"``)."""
    for article in ("an ", "a "):
        if description.startswith(article) and " " not in description[len(article) :]:
            return description[len(article) :] + "s"
    return f"items ({description})"


def to_dict(options: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) options dataclass: tuples become lists."""
    return _plain(dataclasses.asdict(options))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
