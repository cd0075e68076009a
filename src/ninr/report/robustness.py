"""The robustness section of a report: accuracy against input-corruption strength, from records alone.

Reads the records of the ``robustness`` run hook (``kind = "robustness"``, see
:mod:`ninr.studies.robustness_hook`) and draws, one panel per architecture and one line per method
row, the mean over seeds with a band of one sample standard deviation (ddof=1):

* accuracy against the Gaussian noise std (std 0 is the clean accuracy on the same images);
* accuracy against severity, averaged over the corruption set (each run's mean over its corruptions
  at each severity, then mean ± std over seeds);
* one figure per architecture with a panel per corruption.

The table gives, per (architecture, method), clean accuracy, accuracy at a few noise stds, the mean over
the noise grid and the mean corruption accuracy over every corruption and severity, in %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ninr.report.comparison import sample_std
from ninr.report.document import Figure, PartReport
from ninr.report.figures import new_figure, to_png
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table, fmt_mean_std

Rec = Mapping[str, Any]
Series = dict[str, list[tuple[float, float, float]]]  # label -> [(level, mean, std)]

KIND = "robustness"
NOISE = "gaussian-noise"
SHOWN_STDS = (0.1, 0.3, 0.5)  # the noise stds the paper quotes; shown as table columns when in the grid
SCALE = 100.0
TITLE = "Robustness to input corruption"


def robustness_rows(records: Sequence[Rec]) -> list[Rec]:
    """The robustness hook's records (noise off, accuracy)."""
    return [
        r
        for r in records
        if r.get("kind") == KIND and r.get("metric", "accuracy") == "accuracy" and r.get("noise", "off") == "off"
    ]


def _order(rows: Sequence[Rec], key: str) -> list[str]:
    return list(dict.fromkeys(str(r.get(key)) for r in rows))


def corruption_names(rows: Sequence[Rec]) -> list[str]:
    """The conditions evaluated by severity, in order of first appearance."""
    return _order([r for r in rows if r.get("severity") is not None], "condition")


def _runs(rows: Sequence[Rec]) -> dict[str, list[Rec]]:
    runs: dict[str, list[Rec]] = {}
    for r in rows:
        runs.setdefault(str(r.get("run_id")), []).append(r)
    return runs


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def run_metrics(run: Sequence[Rec]) -> dict[str, float]:
    """One run's summary (fractions): ``clean``, ``std=<s>`` per noise std, ``noise mean``, ``severity=<k>`` (mean
    over its corruptions) and ``corruption mean`` (over every corruption and severity)."""
    out: dict[str, float] = {}
    corr: dict[int, list[float]] = {}
    noise: list[float] = []
    for r in run:
        value = float(r["value"])
        if r["condition"] == "clean":
            out["clean"] = value
        elif r["condition"] == NOISE and r.get("intensity") is not None:
            out[f"std={float(r['intensity']):g}"] = value
            noise.append(value)
        elif r.get("severity") is not None:
            corr.setdefault(int(r["severity"]), []).append(value)
    if noise:
        out["noise mean"] = _mean(noise)
    for severity, values in sorted(corr.items()):
        out[f"severity={severity}"] = _mean(values)
    if corr:
        out["corruption mean"] = _mean([v for vs in corr.values() for v in vs])
    return out


def summaries(rows: Sequence[Rec]) -> dict[tuple[str, str], list[dict[str, float]]]:
    """Per (arch, label), in order of first appearance: the :func:`run_metrics` of each run (seed)."""
    out: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in _runs(rows).values():
        out.setdefault((str(run[0].get("arch")), str(run[0].get("label"))), []).append(run_metrics(run))
    return out


def _series(runs: Sequence[dict[str, float]], levels: Sequence[tuple[float, str]]) -> list[tuple[float, float, float]]:
    points = []
    for level, key in levels:
        values = [m[key] for m in runs if key in m]
        if values:
            points.append((level, SCALE * _mean(values), SCALE * sample_std(values)))
    return points


def _curves(rows: Sequence[Rec], levels: Callable[[dict[str, float]], list[tuple[float, str]]]) -> dict[str, Series]:
    """Per arch, per label: the points at ``levels(metrics)`` (level, metric key) over the runs' metrics."""
    out: dict[str, Series] = {}
    for (arch, label), runs in summaries(rows).items():
        merged: dict[str, float] = {k: v for m in runs for k, v in m.items()}
        out.setdefault(arch, {})[label] = _series(runs, levels(merged))
    return out


def _noise_levels(metrics: dict[str, float]) -> list[tuple[float, str]]:
    stds = sorted(float(k[4:]) for k in metrics if k.startswith("std="))
    return [(0.0, "clean"), *((s, f"std={s:g}") for s in stds)]


def _severity_levels(metrics: dict[str, float]) -> list[tuple[float, str]]:
    sev = sorted(int(k[9:]) for k in metrics if k.startswith("severity="))
    return [(0.0, "clean"), *((float(s), f"severity={s}") for s in sev)]


def _draw(ax: Any, series: Series, colors: Mapping[str, str]) -> None:
    for label, pts in series.items():
        if len(pts) < 2:
            continue
        xs, means, stds = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        ax.plot(xs, means, marker="o", markersize=3, color=colors[label], label=label)
        lo = [m - s for m, s in zip(means, stds, strict=True)]
        hi = [m + s for m, s in zip(means, stds, strict=True)]
        ax.fill_between(xs, lo, hi, color=colors[label], alpha=0.15, linewidth=0)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def _panels(panels: Mapping[str, Series], xlabel: str, colors: Mapping[str, str], cols: int) -> Any:
    cols = max(1, min(cols, len(panels)))
    n_rows = max(1, math.ceil(len(panels) / cols))
    fig = new_figure(4.2 * cols if cols < 3 else 3.0 * cols, 3.0 * n_rows + 0.9)
    axes = fig.subplots(n_rows, cols, squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels.items(), strict=False):
        _draw(ax, series, colors)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("test accuracy (%)", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(5, len(handles)))
    return fig


def noise_figure(rows: Sequence[Rec], colors: Mapping[str, str]) -> Figure:
    """Accuracy against the Gaussian noise std, one panel per architecture."""
    fig = _panels(_curves(rows, _noise_levels), "Gaussian noise std (0: clean)", colors, cols=2)
    caption = "Test accuracy under Gaussian input noise, mean ± 1 std over seeds (band); std 0 is clean accuracy."
    return Figure("robustness_noise", caption, to_png(fig))


def severity_figure(rows: Sequence[Rec], colors: Mapping[str, str], n_corruptions: int) -> Figure:
    """Accuracy against severity averaged over the corruption set, one panel per architecture."""
    fig = _panels(_curves(rows, _severity_levels), "severity (0: clean)", colors, cols=2)
    caption = (
        f"Test accuracy against corruption severity, averaged over {n_corruptions} corruption(s) per run; "
        "mean ± 1 std over seeds (band)."
    )
    return Figure("robustness_severity", caption, to_png(fig))


def corruption_figure(rows: Sequence[Rec], arch: str, colors: Mapping[str, str]) -> Figure:
    """One panel per corruption: accuracy against severity for ``arch``, one line per method."""
    mine = [r for r in rows if str(r.get("arch")) == arch]
    panels: dict[str, Series] = {}
    for name in corruption_names(mine):
        subset = [r for r in mine if r["condition"] in (name, "clean")]
        panels[name] = _curves(subset, _severity_levels).get(arch, {})
    fig = _panels(panels, "severity", colors, cols=5)
    safe = "".join(c if c.isalnum() else "_" for c in arch)
    caption = f"{arch}: test accuracy per corruption against severity (0: clean), mean ± 1 std over seeds."
    return Figure(f"robustness_corruptions_{safe}", caption, to_png(fig))


def robustness_table(rows: Sequence[Rec]) -> Table:
    """Per (arch, method): clean, a few noise stds, the noise-grid mean and the corruption mean, in %."""
    groups = summaries(rows)
    all_stds = sorted({float(k[4:]) for runs in groups.values() for m in runs for k in m if k.startswith("std=")})
    shown = [s for s in all_stds if any(math.isclose(s, t) for t in SHOWN_STDS)] or all_stds[-1:]
    keys = [("clean", "clean"), *((f"std={s:g}", f"noise std {s:g}") for s in shown)]
    keys += [("noise mean", "noise mean"), ("corruption mean", "corruption mean")]
    headers = ("arch", "method", "runs", *(f"{title} (%)" for _, title in keys))
    cells, data = [], []
    for (arch, label), runs in groups.items():
        row: list[str] = [arch, label, str(len(runs))]
        raw: dict[str, Any] = {"arch": arch, "method": label, "runs": len(runs)}
        for key, title in keys:
            values = [SCALE * m[key] for m in runs if key in m]
            mean, std = (_mean(values), sample_std(values)) if values else (None, None)
            row.append(fmt_mean_std(mean, std))
            raw[f"{title} mean"], raw[f"{title} std"] = mean, std
        cells.append(tuple(row))
        data.append(raw)
    note = (
        "Mean ± sample std (ddof=1) over seeds, in %. Noise mean: mean accuracy over the Gaussian noise grid. "
        "Corruption mean: mean over every corruption and severity evaluated."
    )
    return Table("robustness", "Accuracy under input corruption", headers, tuple(cells), tuple(data), note)


def robustness_report(records: Sequence[Rec], study: Mapping[str, Any]) -> PartReport:
    """The robustness section of a part whose runs carry the ``robustness`` hook's records."""
    report = PartReport(f"{study.get('part', 'table')}-robustness", TITLE)
    rows = robustness_rows(records)
    finals = [r for r in records if r.get("final")]
    diverged = sum(1 for r in finals if r.get("run_status") == "diverged")
    missing = len({str(r.get("run_id")) for r in finals}) - len(_runs(rows)) - diverged
    if not rows:
        report.notes.append('No robustness records: run the part with hooks = ["robustness"].')
        return report
    labels = _order(rows, "label")
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    corruptions = corruption_names(rows)
    n_images = sorted({int(r["n"]) for r in rows if r.get("n") is not None})
    report.notes.append(
        f"Evaluated after training, on the first {', '.join(map(str, n_images))} test images, in eval mode "
        "(injected noise off); corruption noise drawn from each run's seed. Runs, times and store below are the "
        "part's (the evaluation is part of each run)."
    )
    if diverged:
        report.notes.append(f"{diverged} diverged run(s) have no robustness records and are not in the curves.")
    if missing > 0:
        report.notes.append(f"{missing} finished run(s) have no robustness records (trained without the hook).")
    report.tables.append(robustness_table(rows))
    if any(r["condition"] == NOISE for r in rows):
        report.figures.append(noise_figure(rows, colors))
    if corruptions:
        report.figures.append(severity_figure(rows, colors, len(corruptions)))
        report.figures += [corruption_figure(rows, arch, colors) for arch in _order(rows, "arch")]
    return report


SECTIONS.add("robustness", robustness_report, doc="Accuracy under noise and corruptions, per method.")
SECTIONS.add("eval", robustness_report, doc="Accuracy under noise and corruptions, per method.")
