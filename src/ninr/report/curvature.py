"""The ``phase`` hook's section: each NINR row's ``k(t)`` along training, from the records alone.

Reads the hook's rows (``kind = "curvature"``: step, node, ``k = eta lambda_max`` of the NIW block of the noisy
loss) and the runs' final records (``phase``, ``phase_node``). The table gives, per (architecture, row), ``k``
at initialisation and after the sharpening transient (the median over the second half of the run) of the node
that decided the phase, its maximum, and the phases over seeds; the figure draws ``k(t)`` of every node of every
run, one panel per architecture and row, with the lines ``k = 2`` (the stability limit) and ``k = 4`` (the end
of the catapult window).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ninr.report.document import Figure, PartReport
from ninr.report.figures import new_figure, to_png
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table
from ninr.studies.records import final_records

Rec = Mapping[str, Any]
KIND = "curvature"
TITLE = "Curvature along training: k(t) of each node"
LINES = {2.0: "stability limit k = 2", 4.0: "end of the catapult window k = 4"}


def _runs(records: Sequence[Rec]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """run id -> node -> [(step, k)] in step order."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in records:
        if r.get("kind") == KIND and isinstance(r.get("k"), int | float):
            out.setdefault(str(r["run_id"]), {}).setdefault(str(r.get("node", "")), []).append(
                (float(r["step"]), float(r["k"]))
            )
    return {rid: {n: sorted(v) for n, v in nodes.items()} for rid, nodes in out.items()}


def _after_transient(points: Sequence[tuple[float, float]]) -> float:
    """The median ``k`` over the second half of the run's measurements."""
    ks = [k for _, k in points[len(points) // 2 :]]
    return float(np.median(ks)) if ks else math.nan


def curvature_table(finals: Sequence[Rec], runs: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]]) -> Table:
    """One row per (architecture, row): k at init and after the transient (mean over seeds), max, phases."""
    groups: dict[tuple[str, str], list[Rec]] = {}
    for f in finals:
        if str(f.get("run_id")) in runs:
            groups.setdefault((str(f.get("arch")), str(f.get("label"))), []).append(f)
    cells, data = [], []
    for (arch, label), rows in groups.items():
        init, after, peak = [], [], []
        for f in rows:
            points = runs[str(f["run_id"])].get(str(f.get("phase_node", "")), [])
            if points:
                init.append(points[0][1])
                after.append(_after_transient(points))
                peak.append(max(k for _, k in points))
        phases = Counter(str(f.get("phase", "n/a")) for f in rows)
        mean = lambda xs: float(np.mean(xs)) if xs else math.nan  # noqa: E731
        entry = {"arch": arch, "label": label, "node": rows[0].get("phase_node"), "k_init": mean(init),
                 "k_after_transient": mean(after), "k_max": mean(peak), "expected_phase": rows[0].get("expected_phase"),
                 "phases": dict(phases)}  # fmt: skip
        data.append(entry)
        cells.append((arch, label, str(entry["node"]), f"{entry['k_init']:.3g}", f"{entry['k_after_transient']:.3g}",
                      f"{entry['k_max']:.3g}", str(entry["expected_phase"] or "n/a"),
                      ", ".join(f"{p} {n}" for p, n in phases.most_common())))  # fmt: skip
    headers = ("arch", "row", "deciding node", "k at init", "k after the transient", "k max", "meant", "phase")
    note = ("k = eta lambda_max of the NIW block of the noisy loss, measured on a probe batch every few steps "
            "(mean over seeds); 'after the transient': the median over the second half of the run.")  # fmt: skip
    return Table("curvature", "k along training, per row", headers, tuple(cells), tuple(data), note)


def curvature_figure(finals: Sequence[Rec], runs: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]]) -> Figure:
    """k(t) per node and seed, one panel per (architecture, row), with the lines k = 2 and k = 4."""
    panels = list(dict.fromkeys((str(f.get("arch")), str(f.get("label"))) for f in finals if str(f["run_id"]) in runs))
    cols = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = new_figure(3.6 * cols, 2.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (arch, label) in zip(axes.flat, panels, strict=False):
        for f in finals:
            if (str(f.get("arch")), str(f.get("label"))) != (arch, label):
                continue
            for i, (node, points) in enumerate(sorted(runs[str(f["run_id"])].items())):
                steps, ks = [p[0] for p in points], [max(p[1], 1e-6) for p in points]
                ax.plot(steps, ks, color=f"C{i % 10}", lw=0.8, alpha=0.8, label=node if f.get("seed") == 0 else None)
        for level, text in LINES.items():
            ax.axhline(level, color="k", ls="--" if level == 2.0 else ":", lw=0.8, label=text)
        ax.set_yscale("log")
        ax.set_title(f"{arch} | {label}", fontsize=8)
        ax.set_xlabel("SGD step", fontsize=7)
        ax.set_ylabel("k", fontsize=7)
        ax.legend(fontsize=5)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    caption = "k(t) of each node (one line per node and seed) with the stability limit k = 2 and k = 4."
    return Figure("curvature", caption, to_png(fig))


def curvature_report(records: Sequence[Rec], study: Mapping[str, Any]) -> PartReport:
    """The phase hook's section: the k table and the k(t) figure."""
    report = PartReport(f"{study.get('part', 'table')}-curvature", TITLE)
    runs = _runs(records)
    finals = [f for f in final_records(records) if str(f.get("run_id")) in runs]
    if not finals:
        report.notes.append('No curvature records: run the part with hooks = ["phase"] and NINR rows.')
        return report
    report.tables.append(curvature_table(finals, runs))
    report.figures.append(curvature_figure(finals, runs))
    return report


SECTIONS.add("phase", curvature_report, doc="k(t) of each NINR row's nodes along training, with k = 2 and k = 4.")
