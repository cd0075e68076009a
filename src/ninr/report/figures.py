"""Figures rendered to PNG bytes with matplotlib's object API, and the training-curves figure.

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
