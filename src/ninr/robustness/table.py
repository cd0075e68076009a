"""Plain-text tables of robustness records (a pure function of the records): accuracy, certification, calibration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# (record field holding the level, title of the section, format of the level in the header)
_AXES = (
    ("severity", "corruption (severity)", "{:g}"),
    ("intensity", "noise (std)", "{:g}"),
    ("epsilon", "attack (epsilon)", "{:g}"),
)
CALIBRATION = ("ece", "nll", "brier")
CERTIFY_EXTRA = (("abstain-rate", "abstain"), ("average-radius", "ACR"))


def _level_axis(record: Mapping[str, Any]) -> str | None:
    for axis, _, _ in _AXES:
        if record.get(axis) is not None:
            return axis
    return None


def _level(record: Mapping[str, Any]) -> str:
    axis = _level_axis(record)
    return "-" if axis is None else f"{axis} {record[axis]:g}"


def _certify_section(rows: list[Mapping[str, Any]], digits: int) -> list[str]:
    """Certified accuracy per (sigma, noise mode) against the L2 radius, then abstain rate and average radius."""
    radii = sorted({r["epsilon"] for r in rows if r["metric"] == "certified-accuracy"})
    keys: dict[tuple[float, str], dict[Any, float]] = {}
    for r in rows:
        cell = r["epsilon"] if r["metric"] == "certified-accuracy" else r["metric"]
        keys.setdefault((float(r["intensity"]), str(r["noise"])), {})[cell] = r["value"]
    col = max(digits + 4, *(len(f"{v:g}") + 1 for v in radii)) if radii else digits + 4
    title = "certified (L2 radius)"
    head = f"{title:<{len(title) + 2}}{'noise':<7}" + "".join(f"{v:>{col}g}" for v in radii)
    head += "".join(f"{name:>{col}}" for _, name in CERTIFY_EXTRA)
    out = ["", head]
    for (sigma, mode), values in keys.items():
        cells = [values.get(v) for v in radii] + [values.get(m) for m, _ in CERTIFY_EXTRA]
        text = "".join(f"{c:>{col}.{digits}f}" if c is not None else f"{'-':>{col}}" for c in cells)
        out.append(f"{'sigma ' + format(sigma, 'g'):<{len(title) + 2}}{mode:<7}{text}")
    return out


def _calibration_section(rows: list[Mapping[str, Any]], digits: int) -> list[str]:
    """ECE, NLL and Brier score per condition, level and noise mode."""
    keys: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in rows:
        keys.setdefault((str(r["condition"]), _level(r), str(r["noise"])), {})[r["metric"]] = r["value"]
    width = max(len("calibration"), *(len(c) for c, _, _ in keys)) + 2
    lw = max(len("level"), *(len(lv) for _, lv, _ in keys)) + 2
    col = digits + 5
    out = ["", f"{'calibration':<{width}}{'level':<{lw}}{'noise':<7}" + "".join(f"{m:>{col}}" for m in CALIBRATION)]
    for (condition, level, mode), values in keys.items():
        cells = "".join(f"{values[m]:>{col}.{digits}f}" if m in values else f"{'-':>{col}}" for m in CALIBRATION)
        out.append(f"{condition:<{width}}{level:<{lw}}{mode:<7}{cells}")
    return out


def format_table(records: Iterable[Mapping[str, Any]], *, digits: int = 4) -> str:
    """Accuracy tables: clean and shifts, then one section per level axis (rows: condition and noise mode);
    then certified accuracy against the radius (``certify`` records) and calibration (ECE, NLL, Brier)."""
    records = list(records)
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
    certified = [r for r in records if r.get("condition") == "certify" and r.get("metric") != "accuracy"]
    if certified:
        out += _certify_section(certified, digits)
    calibration = [r for r in records if r.get("metric") in CALIBRATION]
    if calibration:
        out += _calibration_section(calibration, digits)
    return "\n".join(out).lstrip("\n")
