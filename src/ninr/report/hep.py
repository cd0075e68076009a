"""The ``hep`` part's section: rejection table and ROC figure, pure functions of the records.

The numbers are :func:`summary_rows` of the records (mean ± sample std over seeds of the
AUC and of the background rejection 1/eps_B at each signal efficiency, on "simulation" and on "data"); the
figure draws the mean ROC (rejection against signal efficiency) per method, one panel per test set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ninr.report.document import Figure, PartReport
from ninr.report.figures import new_figure, to_png
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table
from ninr.studies.records import final_records

Rec = Mapping[str, Any]

TEST_SETS = ("simulation", "data")


def _by_method(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault(str(r["method"]), []).append(r)
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    if np.isinf(arr).any():
        return math.inf, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _cell(values: Sequence[float]) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "n/a"
    if math.isinf(mean):
        return "inf"
    return f"{mean:.1f} ± {std:.1f}" if std > 0 else f"{mean:.1f}"


def summary_rows(records: Sequence[dict[str, Any]], efficiencies: Sequence[float]) -> list[dict[str, Any]]:
    """One row per method: mean and std over seeds of AUC and rejection, per test set."""
    rows = []
    for method, recs in _by_method(records).items():
        row: dict[str, Any] = {"method": method, "seeds": len({r["seed"] for r in recs})}
        for ts in TEST_SETS:
            sub = [r for r in recs if r["test_set"] == ts]
            row[f"{ts}/auc"] = _mean_std([r["auc"] for r in sub])
            for e in efficiencies:
                key = f"rejection@{round(e * 100)}"
                row[f"{ts}/{key}"] = _mean_std([r.get(key, math.nan) for r in sub])
        rows.append(row)
    return rows


def draw_rejection(axes: Any, records: Sequence[Mapping[str, Any]]) -> None:
    """Mean rejection 1/eps_B against eps_S over seeds, one line per method, one axis per test set."""
    axes = list(np.atleast_1d(axes))
    for ax, ts in zip(axes, TEST_SETS, strict=True):
        for method, recs in _by_method(records).items():
            curves = [r for r in recs if r["test_set"] == ts and r.get("roc_bkg_eff")]
            if not curves:
                continue
            eff_s = np.asarray(curves[0]["roc_signal_eff"], dtype=np.float64)
            eff_b = np.mean([np.asarray(r["roc_bkg_eff"], dtype=np.float64) for r in curves], axis=0)
            ax.plot(eff_s, np.where(eff_b > 0, 1.0 / np.maximum(eff_b, 1e-12), np.nan), label=method)
        ax.set_yscale("log")
        ax.set_xlabel("signal efficiency ε_S")
        ax.set_title(f'test on "{ts}"')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("background rejection 1/ε_B")
    axes[-1].legend(fontsize=8)


def _fmt(pair: tuple[float, float], digits: int) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "n/a"
    if math.isinf(mean):
        return "inf"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std > 0 else f"{mean:.{digits}f}"


def efficiencies(records: Sequence[Rec]) -> list[float]:
    """The signal efficiencies the records were evaluated at (first record's list)."""
    return [float(e) for e in records[0].get("efficiencies", [0.5, 0.7, 0.9])] if records else []


def rejection_table(records: Sequence[Rec]) -> Table:
    """One row per method: AUC and 1/eps_B at each signal efficiency on "simulation" and "data"."""
    effs = efficiencies(records)
    headers = ["method", "seeds"]
    for ts in TEST_SETS:
        headers += [f"{ts} AUC"] + [f"{ts} 1/εB@{round(e * 100)}%" for e in effs]
    rows = summary_rows([dict(r) for r in records], effs)
    cells, data = [], []
    for row in rows:
        line = [str(row["method"]), str(row["seeds"])]
        flat: dict[str, Any] = {"method": row["method"], "seeds": row["seeds"]}
        for ts in TEST_SETS:
            line.append(_fmt(row[f"{ts}/auc"], 3))
            flat[f"{ts}_auc_mean"], flat[f"{ts}_auc_std"] = row[f"{ts}/auc"]
            for e in effs:
                key = f"rejection@{round(e * 100)}"
                line.append(_fmt(row[f"{ts}/{key}"], 1))
                flat[f"{ts}_{key}_mean"], flat[f"{ts}_{key}_std"] = row[f"{ts}/{key}"]
        cells.append(tuple(line))
        data.append(flat)
    note = (
        'Trained on "simulation"; tested on a held-out "simulation" set and on the same events through the shifted '
        '"data" detector. Background rejection 1/eps_B at fixed signal efficiency, mean ± std over seeds.'
    )
    return Table("hep_rejection", "Background rejection per method", tuple(headers), tuple(cells), tuple(data), note)


def roc_figure(records: Sequence[Rec]) -> Figure:
    """Mean ROC over seeds (rejection 1/eps_B against eps_S) per method, one panel per test set."""
    fig = new_figure(5.0 * len(TEST_SETS), 4.0)
    axes = fig.subplots(1, len(TEST_SETS), sharey=True)
    draw_rejection(axes, records)
    caption = 'Background rejection against signal efficiency (mean over seeds): "simulation" left, "data" right.'
    return Figure("hep_roc", caption, to_png(fig))


def hep_part_report(records: Sequence[Rec], study: Mapping[str, Any]) -> PartReport:
    """The ``hep`` part's section: the rejection table and the ROC figure."""
    report = PartReport("hep", str(study.get("title", "Prompt photons")))
    finals = [r for r in final_records(records) if "test_set" in r]
    if not finals:
        report.notes.append("No finished runs yet.")
        return report
    report.tables.append(rejection_table(finals))
    report.figures.append(roc_figure(finals))
    n = {ts: sorted({int(r["n_test"]) for r in finals if r["test_set"] == ts}) for ts in TEST_SETS}
    report.notes.append(
        f"Test sets: {', '.join(f'{ts} {v[0] if len(v) == 1 else v} candidates' for ts, v in n.items())}."
    )
    return report


SECTIONS.add("hep", hep_part_report, doc="Background rejection per method on simulation and data, with the ROC figure.")
