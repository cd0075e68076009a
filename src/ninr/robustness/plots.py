"""Robustness curves from records: accuracy against severity, noise std or epsilon, one line per method.

Pure functions of records (rebuildable offline from finished runs). Each line is the mean over the
records' seeds with a band of one standard deviation; clean accuracy is drawn at level 0. Needs
matplotlib, the ``plot`` extra: ``pip install 'ninr[plot]'``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ninr.errors import NinrError

AXES = {"severity": "severity", "intensity": "noise std", "epsilon": "epsilon"}
FORMATS = ("png", "pdf")


class MissingDependencyError(NinrError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def _figure(**kwargs: Any) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching the import
        raise MissingDependencyError("plotting needs matplotlib: pip install 'ninr[plot]'") from exc
    return Figure(**kwargs)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def curve_points(
    records: Iterable[Mapping[str, Any]], condition: str, axis: str, *, by: str = "method", noise: str = "off"
) -> dict[str, list[tuple[float, float, float, int]]]:
    """Per group (``record[by]``): sorted ``(level, mean, std, seeds)`` of ``condition``'s accuracy.

    Clean accuracy of the same group enters at level 0.
    """
    cells: dict[str, dict[float, list[float]]] = {}
    for r in records:
        if r.get("metric", "accuracy") != "accuracy" or r.get("noise", "off") != noise:
            continue
        if r["condition"] == condition and r.get(axis) is not None:
            level = float(r[axis])
        elif r["condition"] == "clean":
            level = 0.0
        else:
            continue
        cells.setdefault(str(r.get(by, "model")), {}).setdefault(level, []).append(float(r["value"]))
    out = {}
    for group, levels in cells.items():
        if len(levels) > 1 or 0.0 not in levels:  # a group with clean accuracy only has no curve
            out[group] = [(lv, *_mean_std(vals), len(vals)) for lv, vals in sorted(levels.items())]
    return out


def plot_curves(
    records: Sequence[Mapping[str, Any]],
    *,
    axis: str = "severity",
    conditions: Sequence[str] | None = None,
    by: str = "method",
    noise: str = "off",
    title: str | None = None,
    path: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
) -> Any:
    """One panel per condition, one line per ``by`` group, mean +- one std over seeds.

    Args:
        records: robustness records (from :func:`ninr.robustness.evaluate.evaluate`, possibly many runs).
        axis: ``"severity"``, ``"intensity"`` (noise std) or ``"epsilon"``.
        conditions: the conditions to draw (default: every one with records on ``axis``, in order).
        by: the record field whose values become lines (default ``"method"``).
        noise: the noise mode to draw (``"off"`` or ``"on"``).
        title: figure title.
        path: if given, save there with each suffix in ``formats``.

    Returns:
        The matplotlib ``Figure``.
    """
    if axis not in AXES:
        raise NinrError(f"`axis` must be one of {list(AXES)}, got {axis!r}")
    if conditions is None:
        conditions = list(dict.fromkeys(r["condition"] for r in records if r.get(axis) is not None))
    cols = min(4, max(len(conditions), 1))
    rows = max(math.ceil(len(conditions) / cols), 1)
    fig = _figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, condition in zip(axes.flat, conditions, strict=False):
        for group, points in curve_points(records, condition, axis, by=by, noise=noise).items():
            xs, means, stds = [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
            line = ax.plot(xs, means, marker="o", markersize=3, label=group)[0]
            lo = [m - s for m, s in zip(means, stds, strict=True)]
            hi = [m + s for m, s in zip(means, stds, strict=True)]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(condition, fontsize=9)
        ax.set_xlabel(AXES[axis], fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(conditions) :]:
        ax.set_visible(False)
    if conditions:
        axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    if path is not None:
        save(fig, path, formats)
    return fig


def save(fig: Any, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; returns the files written."""
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = base.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=150)
        written.append(target)
    return written


def plot_all(
    records: Sequence[Mapping[str, Any]], out_dir: str | Path, *, by: str = "method", noise: str = "off"
) -> list[Path]:
    """Every figure the records support: one per corruption family (severity), noise std, attacks.

    Files are named ``robustness-<family>``, ``robustness-noise-std`` and ``robustness-attacks``.
    """
    out = Path(out_dir)
    written: list[Path] = []
    families: dict[str, list[str]] = {}
    for r in records:
        if r.get("severity") is not None:
            names = families.setdefault(str(r["family"]), [])
            if r["condition"] not in names:
                names.append(r["condition"])
    for family, conditions in families.items():
        fig = plot_curves(records, axis="severity", conditions=conditions, by=by, noise=noise, title=family)
        written += save(fig, out / f"robustness-{family}")
    for axis, name in (("intensity", "noise-std"), ("epsilon", "attacks")):
        if any(r.get(axis) is not None for r in records):
            written += save(plot_curves(records, axis=axis, by=by, noise=noise), out / f"robustness-{name}")
    return written
