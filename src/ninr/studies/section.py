"""Field parsers shared by the parts' typed sections: seeds and method lists.

A section field names its parser in its metadata (:func:`ninr.schema.parse` calls it with the value and
the key's place in the file), e.g. ``seeds: tuple[int, ...] = field(metadata=SEEDS)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ninr.errors import ConfigError, check_nonneg_int, did_you_mean, fail
from ninr.train.config import MethodSpec


def parse_seeds(value: Any, where: str = "seeds") -> tuple[int, ...]:
    """``seeds = 3`` means ``(0, 1, 2)``; a list is taken as is (integers >= 0, no repeats)."""
    rule = "an integer >= 1 or a non-empty list of integers >= 0"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise fail(where, rule, value)
        return tuple(range(value))
    if not isinstance(value, list | tuple) or not value:
        raise fail(where, rule, value)
    seeds = tuple(check_nonneg_int(where, s) for s in value)
    if len(set(seeds)) != len(seeds):
        raise fail(where, "a list without repeats", list(seeds))
    return seeds


def parse_methods(value: Any, where: str = "methods") -> tuple[MethodSpec, ...]:
    """``["in-ninr"]`` or ``[{name = "in-ninr", params = {sigma = 1.0}}]``; ``"none"`` entries are dropped."""
    if not isinstance(value, list | tuple):
        raise fail(where, "a list of method names or {name, params} tables", value)
    specs = []
    for item in value:
        if isinstance(item, MethodSpec):
            specs.append(item)
            continue
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise fail(where, "a list of method names or {name, params} tables", value)
        for key in item:
            if key not in ("name", "params"):
                raise ConfigError(
                    f"{where}: unknown key {key!r}{did_you_mean(str(key), ('name', 'params'))} (allowed: name, params)"
                )
        name, params = item.get("name"), item.get("params", {})
        if not isinstance(name, str) or not name.strip():
            raise fail(f"{where}.name", "a non-empty string", name)
        if not isinstance(params, Mapping):
            raise fail(f"{where}.params", "a table", params)
        if name != "none":
            specs.append(MethodSpec(name, dict(params)))
    return tuple(specs)


SEEDS: Mapping[str, Any] = {"parse": parse_seeds}
"""Field metadata of a section's ``seeds``."""

METHODS: Mapping[str, Any] = {"parse": parse_methods}
"""Field metadata of a method list."""
