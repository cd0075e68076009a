"""Figures of the table part, rendered to PNG bytes with matplotlib's object API.

No pyplot: nothing touches matplotlib's global state or needs a display, so reports build in
workers, in tests and on headless machines.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ninr.errors import ConfigError
from ninr.report.document import Figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

    from ninr.report.comparison import ComparisonRow

DPI = 110


def new_figure(width: float, height: float) -> MplFigure:
    """A matplotlib figure not registered with pyplot (an Agg canvas is attached on save)."""
    try:
        from matplotlib.figure import Figure as MplFigure
    except ImportError:
        raise ConfigError("figures need matplotlib: pip install 'ninr[plot]'") from None
    return MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")


def to_png(fig: MplFigure) -> bytes:
    """PNG bytes of ``fig``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def comparison_figure(rows: Sequence[ComparisonRow]) -> Figure:
    """Ours vs the poster per method row (mean ± std), one panel per architecture."""
    archs = list(dict.fromkeys(r.arch for r in rows)) or ["(no runs)"]
    n_rows = max([sum(1 for r in rows if r.arch == a) for a in archs] + [1])
    fig = new_figure(5.0 * len(archs), 0.4 * n_rows + 1.6)
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=True):
        mine = [r for r in rows if r.arch == arch]
        ys = list(range(len(mine)))
        for offset, color, label, get in (
            (-0.15, "tab:blue", "ours", lambda r: (r.mean, r.std)),
            (0.15, "tab:gray", "poster", lambda r: (r.poster_mean, r.poster_std)),
        ):
            pts = [(y + offset, *get(r)) for y, r in zip(ys, mine, strict=True) if get(r)[0] is not None]
            if pts:
                xs, errs = [p[1] for p in pts], [p[2] or 0.0 for p in pts]
                ax.errorbar(xs, [p[0] for p in pts], xerr=errs, fmt="o", color=color, capsize=3, label=label)
        ax.set_yticks(ys, [r.method for r in mine])
        ax.set_ylim(n_rows - 0.5, -0.5)  # first row on top; panels share the row spacing
        ax.set_xlabel("clean test accuracy (%)")
        ax.set_title(arch)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    return Figure(
        "comparison", "Clean test accuracy, mean ± std over seeds: ours (blue) vs the poster (grey).", to_png(fig)
    )


def _curves(records: Sequence[Mapping[str, Any]], arch: str, metric: str) -> dict[str, list[tuple[int, float]]]:
    """Per label: (step, mean metric over seeds) at each epoch."""
    acc: dict[str, dict[int, list[float]]] = {}
    for rec in records:
        value = rec.get(metric)
        if rec.get("arch") != arch or not isinstance(value, int | float) or value != value:
            continue
        acc.setdefault(str(rec.get("label")), {}).setdefault(int(rec.get("step", 0)), []).append(float(value))
    return {label: sorted((s, sum(v) / len(v)) for s, v in by_step.items()) for label, by_step in acc.items()}


def curves_figure(records: Sequence[Mapping[str, Any]], metric: str = "test_acc") -> Figure:
    """Test accuracy against SGD step (mean over seeds at each epoch's end), one panel per architecture."""
    archs = list(dict.fromkeys(str(r.get("arch")) for r in records)) or ["(no runs)"]
    fig = new_figure(5.0 * len(archs), 3.6)
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=True):
        for label, pts in _curves(records, arch, metric).items():
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", markersize=3, label=label)
        ax.set_xlabel("SGD step")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(arch)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="x-small")
    return Figure("curves", "Test accuracy at the end of each epoch, mean over seeds.", to_png(fig))
