"""Tidy records of a run: one row per epoch (or per measurement), each carrying the run's id and labels.

Every record of a run carries ``run_id``, the label fields (study, part, arch, label, expected_phase), the seed
and the fields its part adds (e.g. the model and method names). The last training row has ``final = True``
and the run's summary fields (e.g. ``phase``, the phase classifier's verdict); rows a hook or an evaluation
adds (``kind = "robustness"``, ...) follow with ``final = False``. Wall-clock times are not records: they
differ between identical runs, so the store keeps them beside the records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ninr.studies.spec import RunSpec

Records = list[dict[str, Any]]

DROPPED_KEYS = frozenset({"epoch_time_s"})
"""Wall-clock fields dropped from records: identical runs differ in them."""


def base_fields(spec: RunSpec, **fields: Any) -> dict[str, Any]:
    """The fields every record of ``spec`` carries: run id, labels, seed and ``fields``."""
    return {"run_id": spec.run_id, **spec.labels(), "seed": spec.seed, **fields}


def to_records(
    spec: RunSpec,
    rows: Sequence[Mapping[str, Any]],
    status: str,
    final_extra: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Records:
    """Tidy records of a run from its rows (e.g. one per epoch), its status and its final fields.

    A diverged run without a phase verdict gets ``phase = "divergent"`` (the phase classifier's name for it).
    """
    base = {**base_fields(spec, **fields), "run_status": status}
    records = [{**base, **{k: v for k, v in row.items() if k not in DROPPED_KEYS}, "final": False} for row in rows]
    if not records:
        records = [{**base, "epoch": 0, "status": status, "final": False}]
    records[-1]["final"] = True
    records[-1].update(dict(final_extra or {}))
    if status == "diverged":
        records[-1].setdefault("phase", "divergent")
    return records


def final_records(records: Sequence[Mapping[str, Any]]) -> Records:
    """The ``final`` row of each run."""
    return [dict(r) for r in records if r.get("final")]
