"""The ``train`` part's section: each run's final metrics and the training curves, from the records alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ninr.report.document import PartReport
from ninr.report.figures import curves_figure
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table
from ninr.studies.records import final_records

COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc")
"""The metrics of each run's last epoch shown in the table."""


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)


def runs_table(finals: Sequence[Mapping[str, Any]]) -> Table:
    """One row per run: labels, seed, status, epochs and the last epoch's metrics and NIW norms."""
    niw = sorted({k for r in finals for k in r if k.startswith("niw_norm/")})
    headers = ("arch", "label", "seed", "status", "epoch", *COLUMNS, *niw)
    keys = ("arch", "label", "seed", "run_status", "epoch", *COLUMNS, *niw)
    cells = tuple(tuple(_cell(r.get(k)) for k in keys) for r in finals)
    data = tuple({k: r.get(k) for k in ("run_id", *keys)} for r in finals)
    return Table("runs", "Training runs: the last epoch", headers, cells, data, "NIW norms at the end of training.")


def training_report(records: Sequence[Mapping[str, Any]], study: Mapping[str, Any]) -> PartReport:
    """The ``train`` part's section: the runs table and the test-accuracy curves."""
    report = PartReport(str(study.get("part", "train")), str(study.get("title", "Training runs")))
    finals = final_records(records)
    if not finals:
        report.notes.append("No finished runs yet.")
        return report
    report.tables.append(runs_table(finals))
    report.figures.append(curves_figure([r for r in records if "kind" not in r]))
    return report


SECTIONS.add("train", training_report, doc="Each run's last epoch and the training curves.")
