"""Robustness curves from records: accuracy against severity, noise std or epsilon, one line per method;
certified accuracy against the L2 radius; reliability diagrams.

Pure functions of records (rebuildable offline from finished runs). Each line is the mean over the
records' seeds with a band of one standard deviation; clean accuracy is drawn at level 0. A reliability
diagram pools the seeds' bins (counts added, confidences and accuracies weighted by count). Needs
matplotlib, the ``plot`` extra: ``pip install 'ninr[plot]'``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ninr.errors import NinrError

AXES = {"severity": "severity", "intensity": "noise std", "epsilon": "epsilon"}
CERTIFIED = "certified-accuracy"
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


def _group(record: Mapping[str, Any], by: str | Sequence[str]) -> str:
    fields = (by,) if isinstance(by, str) else tuple(by)
    return " | ".join(str(record.get(f, "model")) for f in fields)


def certified_points(
    records: Iterable[Mapping[str, Any]], *, by: str | Sequence[str] = "method", noise: str = "off"
) -> dict[float, dict[str, list[tuple[float, float, float, int]]]]:
    """Per smoothing sigma, per group: sorted ``(radius, mean, std, seeds)`` of certified accuracy.

    ``by`` names the record field (or fields, joined with " | ") whose values are the groups.
    """
    cells: dict[float, dict[str, dict[float, list[float]]]] = {}
    for r in records:
        if r.get("condition") != "certify" or r.get("metric") != CERTIFIED or r.get("noise", "off") != noise:
            continue
        group = cells.setdefault(float(r["intensity"]), {}).setdefault(_group(r, by), {})
        group.setdefault(float(r["epsilon"]), []).append(float(r["value"]))
    return {
        sigma: {g: [(rad, *_mean_std(v), len(v)) for rad, v in sorted(levels.items())] for g, levels in groups.items()}
        for sigma, groups in sorted(cells.items())
    }


def reliability_points(
    records: Iterable[Mapping[str, Any]],
    *,
    condition: str = "clean",
    by: str | Sequence[str] = "method",
    noise: str = "off",
) -> dict[str, dict[str, Any]]:
    """Per group: the seeds' reliability bins of ``condition`` pooled, and the ECE's mean and std over seeds.

    Returns ``{group: {"count": [...], "confidence": [...], "accuracy": [...], "ece": (mean, std, seeds)}}``
    (``None`` for empty bins); read from the ``ece`` records' ``bin_*`` fields.
    """
    pooled: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("metric") != "ece" or r.get("condition") != condition or r.get("noise", "off") != noise:
            continue
        if r.get("severity") is not None or r.get("intensity") is not None or "bin_count" not in r:
            continue
        group = pooled.setdefault(_group(r, by), {"count": None, "conf": None, "hits": None, "ece": []})
        counts = [int(c) for c in r["bin_count"]]
        conf = [c * (f or 0.0) for c, f in zip(counts, r["bin_confidence"], strict=True)]
        hits = [c * (a or 0.0) for c, a in zip(counts, r["bin_accuracy"], strict=True)]
        if group["count"] is None:
            group["count"], group["conf"], group["hits"] = counts, conf, hits
        else:
            group["count"] = [a + b for a, b in zip(group["count"], counts, strict=True)]
            group["conf"] = [a + b for a, b in zip(group["conf"], conf, strict=True)]
            group["hits"] = [a + b for a, b in zip(group["hits"], hits, strict=True)]
        group["ece"].append(float(r["value"]))
    out = {}
    for name, g in pooled.items():
        out[name] = {
            "count": g["count"],
            "confidence": [f / c if c else None for f, c in zip(g["conf"], g["count"], strict=True)],
            "accuracy": [h / c if c else None for h, c in zip(g["hits"], g["count"], strict=True)],
            "ece": (*_mean_std(g["ece"]), len(g["ece"])),
        }
    return out


def draw_reliability(ax: Any, bins: Mapping[str, Any], color: str = "C0") -> None:
    """A reliability diagram on ``ax``: accuracy per equal-width confidence bin (bars) against the diagonal."""
    n = len(bins["count"])
    width = 1.0 / n
    lefts = [i * width for i in range(n)]
    accs = [a if a is not None else 0.0 for a in bins["accuracy"]]
    ax.bar(lefts, accs, width=width, align="edge", color=color, alpha=0.7, edgecolor="black", linewidth=0.3)
    confs = [(i, f) for i, f in enumerate(bins["confidence"]) if f is not None]
    ax.plot([f for _, f in confs], [bins["accuracy"][i] for i, _ in confs], "k.", markersize=3)
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


def plot_certified(
    records: Sequence[Mapping[str, Any]],
    *,
    by: str = "method",
    noise: str = "off",
    title: str | None = None,
    path: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
) -> Any:
    """Certified accuracy against the L2 radius, one panel per smoothing sigma, one line per ``by`` group."""
    points = certified_points(records, by=by, noise=noise)
    cols = min(4, max(len(points), 1))
    fig = _figure(figsize=(3.2 * cols, 2.6), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)
    for ax, (sigma, groups) in zip(axes.flat, points.items(), strict=False):
        for group, pts in groups.items():
            xs, means, stds = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
            line = ax.plot(xs, means, marker="o", markersize=3, label=group)[0]
            lo = [m - s for m, s in zip(means, stds, strict=True)]
            hi = [m + s for m, s in zip(means, stds, strict=True)]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(f"sigma = {sigma:g}", fontsize=9)
        ax.set_xlabel("L2 radius", fontsize=8)
        ax.set_ylabel("certified accuracy", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    if points:
        axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    if path is not None:
        save(fig, path, formats)
    return fig


def plot_reliability(
    records: Sequence[Mapping[str, Any]],
    *,
    condition: str = "clean",
    by: str = "method",
    noise: str = "off",
    path: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
) -> Any:
    """Reliability diagrams of ``condition``, one panel per ``by`` group (seeds pooled; ECE mean ± std)."""
    points = reliability_points(records, condition=condition, by=by, noise=noise)
    cols = min(4, max(len(points), 1))
    rows = max(math.ceil(len(points) / cols), 1)
    fig = _figure(figsize=(2.8 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, (ax, (group, bins)) in enumerate(zip(axes.flat, points.items(), strict=False)):
        draw_reliability(ax, bins, f"C{i % 10}")
        mean, std, seeds = bins["ece"]
        ax.set_title(f"{group}: ECE {mean:.3f}" + (f" ± {std:.3f}" if seeds > 1 else ""), fontsize=8)
        ax.set_xlabel("confidence", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(points) :]:
        ax.set_visible(False)
    if path is not None:
        save(fig, path, formats)
    return fig


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
        conditions = list(
            dict.fromkeys(r["condition"] for r in records if r.get(axis) is not None and _accuracy_curve(r))
        )
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


def _accuracy_curve(record: Mapping[str, Any]) -> bool:
    return record.get("metric", "accuracy") == "accuracy" and record.get("condition") != "certify"


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
    """Every figure the records support: one per corruption family (severity), noise std, attacks, certified
    accuracy, and the reliability diagram of clean data.

    Files are named ``robustness-<family>``, ``robustness-noise-std``, ``robustness-attacks``,
    ``robustness-certify`` and ``robustness-reliability``.
    """
    out = Path(out_dir)
    written: list[Path] = []
    families: dict[str, list[str]] = {}
    curves = [r for r in records if _accuracy_curve(r)]
    for r in curves:
        if r.get("severity") is not None:
            names = families.setdefault(str(r["family"]), [])
            if r["condition"] not in names:
                names.append(r["condition"])
    for family, conditions in families.items():
        fig = plot_curves(records, axis="severity", conditions=conditions, by=by, noise=noise, title=family)
        written += save(fig, out / f"robustness-{family}")
    for axis, name in (("intensity", "noise-std"), ("epsilon", "attacks")):
        if any(r.get(axis) is not None for r in curves):
            written += save(plot_curves(records, axis=axis, by=by, noise=noise), out / f"robustness-{name}")
    if certified_points(records, by=by, noise=noise):
        written += save(plot_certified(records, by=by, noise=noise), out / "robustness-certify")
    if reliability_points(records, by=by, noise=noise):
        written += save(plot_reliability(records, by=by, noise=noise), out / "robustness-reliability")
    return written
