"""The ``hep`` part's section: rejection table and ROC figure, pure functions of the records.

The numbers are :func:`ninr.hep.report.summary_rows` of the records (mean ± sample std over seeds of the
AUC and of the background rejection 1/eps_B at each signal efficiency, on "simulation" and on "data"); the
figure draws the mean ROC (rejection against signal efficiency) per method, one panel per test set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ninr.hep.report import TEST_SETS, draw_rejection, summary_rows
from ninr.report.document import Figure, PartReport
from ninr.report.figures import new_figure, to_png
from ninr.report.tables import Table
from ninr.studies.run import final_records

Rec = Mapping[str, Any]


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
