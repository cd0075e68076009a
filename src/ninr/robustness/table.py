"""Plain-text tables of robustness records (a pure function of the records)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# (record field holding the level, title of the section, format of the level in the header)
_AXES = (
    ("severity", "corruption (severity)", "{:g}"),
    ("intensity", "noise (std)", "{:g}"),
    ("epsilon", "attack (epsilon)", "{:g}"),
)


def _level_axis(record: Mapping[str, Any]) -> str | None:
    for axis, _, _ in _AXES:
        if record.get(axis) is not None:
            return axis
    return None


def format_table(records: Iterable[Mapping[str, Any]], *, digits: int = 4) -> str:
    """Accuracy tables: clean and shifts, then one section per level axis (rows: condition and noise mode)."""
    rows = [r for r in records if r.get("metric", "accuracy") == "accuracy"]
    out: list[str] = []
    single = [r for r in rows if _level_axis(r) is None]
    if single:
        width = max(len("condition"), *(len(str(r["condition"])) for r in single)) + 2
        out.append(f"{'condition':<{width}}{'noise':<7}{'accuracy':>10}")
        for r in single:
            out.append(f"{r['condition']!s:<{width}}{r['noise']:<7}{r['value']:>10.{digits}f}")
    for axis, title, fmt in _AXES:
        part = [r for r in rows if _level_axis(r) == axis]
        if not part:
            continue
        levels = sorted({r[axis] for r in part})
        keys: dict[tuple[str, str], dict[Any, float]] = {}
        for r in part:
            keys.setdefault((str(r["condition"]), str(r["noise"])), {})[r[axis]] = r["value"]
        width = max(len(title), *(len(c) for c, _ in keys)) + 2
        col = max(digits + 4, *(len(fmt.format(v)) + 1 for v in levels))
        out.append("")
        out.append(f"{title:<{width}}{'noise':<7}" + "".join(f"{fmt.format(v):>{col}}" for v in levels))
        for (condition, mode), values in keys.items():
            cells = "".join(f"{values[v]:>{col}.{digits}f}" if v in values else f"{'-':>{col}}" for v in levels)
            out.append(f"{condition:<{width}}{mode:<7}{cells}")
    return "\n".join(out)
