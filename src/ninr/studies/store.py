"""The results store of one study part: a directory holding each finished run's records.

Layout::

    <store>/study.json        the study (preset name, part, its config section, the run ids of the sweep)
    <store>/runs/<run_id>.json one file per finished run: spec, resolved config, records, wall time, versions
    <store>/sessions.jsonl    one line per sweep session (executor, runs done / skipped, elapsed time)

A run file is written only when the run has finished, through a temporary file in the same
directory and ``os.replace``: a reader sees the whole file or none, a run interrupted by Ctrl-C,
a kill or a power loss leaves nothing but possibly a ``.tmp`` file, which readers ignore and later
sessions delete. Run ids are hashes of what a run computes and runs are deterministic, so two
processes pointed at one store that both finish a run write the same content; the last rename
wins and nothing is corrupted or duplicated.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ninr.errors import ConfigError
from ninr.train.rundir import append_jsonl, atomic_write_bytes, atomic_write_json, read_jsonl

RUNS = "runs"
STUDY = "study.json"
SESSIONS = "sessions.jsonl"
STALE_TMP_S = 300.0  # a run file is written in milliseconds; an older .tmp file was orphaned by a kill
_RUN_ID = re.compile(r"[0-9a-f]{6,64}")


@dataclass
class RunResult:
    """A finished run: its spec (as a dict), records, wall time and metadata (versions, host, time)."""

    run_id: str
    spec: dict[str, Any]
    records: list[dict[str, Any]]
    wall_time_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """Inverse of ``dataclasses.asdict``."""
        return cls(
            data["run_id"],
            dict(data["spec"]),
            list(data["records"]),
            float(data.get("wall_time_s", 0.0)),
            dict(data.get("meta", {})),
        )


def _check_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"`run_id` must be 6 to 64 lower-case hex digits, got {run_id!r}")
    return run_id


class ResultStore:
    """One study part's results directory (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / RUNS

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def path(self, run_id: str) -> Path:
        """The file of run ``run_id``."""
        return self.runs_dir / f"{_check_id(run_id)}.json"

    def write(self, result: RunResult) -> Path:
        """Atomically write a finished run (idempotent: rewriting a run id replaces it whole)."""
        path = self.path(result.run_id)
        atomic_write_bytes(path, (json.dumps(asdict(result), indent=1, default=str) + "\n").encode())
        return path

    def read(self, run_id: str) -> RunResult:
        """The run ``run_id``."""
        return RunResult.from_dict(json.loads(self.path(run_id).read_text(encoding="utf-8")))

    def _load_all(self) -> dict[str, RunResult]:
        found: dict[str, RunResult] = {}
        if not self.runs_dir.is_dir():
            return found
        for path in sorted(self.runs_dir.glob("*.json")):
            if not _RUN_ID.fullmatch(path.stem):
                continue
            try:
                found[path.stem] = RunResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                warnings.warn(f"{path}: unreadable run file skipped (it will be recomputed): {exc}", stacklevel=2)
        return found

    def run_ids(self) -> set[str]:
        """The ids of every finished run in the store."""
        return set(self._load_all())

    def has(self, run_id: str) -> bool:
        """Whether run ``run_id`` has finished (a readable file exists)."""
        try:
            self.read(run_id)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True

    def results(self, run_ids: Iterable[str] | None = None) -> list[RunResult]:
        """Finished runs, in the order of ``run_ids`` (missing ones skipped), else sorted by id."""
        found = self._load_all()
        order = list(run_ids) if run_ids is not None else sorted(found)
        return [found[i] for i in order if i in found]

    def records(self, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every record of the finished runs in ``run_ids`` (all runs when ``None``)."""
        return [rec for res in self.results(run_ids) for rec in res.records]

    def write_study(self, info: Mapping[str, Any]) -> None:
        """Atomically write ``study.json``."""
        atomic_write_json(self.root / STUDY, dict(info))

    def read_study(self) -> dict[str, Any]:
        """``study.json`` (empty if absent)."""
        path = self.root / STUDY
        return dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else {}

    def log_session(self, entry: Mapping[str, Any]) -> None:
        """Append one line to ``sessions.jsonl``."""
        self.root.mkdir(parents=True, exist_ok=True)
        append_jsonl(self.root / SESSIONS, entry)

    def sessions(self) -> list[dict[str, Any]]:
        """Every logged session."""
        path = self.root / SESSIONS
        return read_jsonl(path) if path.exists() else []

    def clean_tmp(self, max_age_s: float = STALE_TMP_S) -> list[Path]:
        """Delete temporary files older than ``max_age_s`` (left by killed writers); returns them."""
        removed = []
        if self.runs_dir.is_dir():
            now = time.time()
            for tmp in self.runs_dir.glob(".*.tmp"):
                try:
                    if now - tmp.stat().st_mtime > max_age_s:
                        tmp.unlink()
                        removed.append(tmp)
                except FileNotFoundError:
                    continue  # another process cleaned it first
        return removed

    def export_csv(self, path: str | Path, run_ids: Iterable[str] | None = None) -> Path:
        """Write the records of ``run_ids`` (all when ``None``) as one CSV file; returns its path."""
        path = Path(path)
        atomic_write_bytes(path, records_to_csv(self.records(run_ids)).encode())
        return path


def records_to_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of ``records``: the union of their keys as columns, in first-seen order; missing cells empty.

    A list or dict value (e.g. ``phase_nodes``) is written as compact JSON, so the cell parses back.
    """
    columns: dict[str, None] = {}
    for rec in records:
        columns.update(dict.fromkeys(rec))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: _cell(v) for k, v in rec.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), sort_keys=isinstance(value, dict))
    return value


def find_stores(root: str | Path) -> list[ResultStore]:
    """``root`` itself if it is a store (has ``study.json``), and its subdirectories that are.

    A single-run study (``ninr train --out DIR``) is a store whose directory also holds the run's files and,
    after ``ninr eval DIR``, the evaluation's store in ``DIR/eval``: both are found.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"`store` must be a results directory, got {str(root)!r} which does not exist")
    stores = [ResultStore(root)] if (root / STUDY).exists() else []
    stores += [ResultStore(p) for p in sorted(root.iterdir()) if p.is_dir() and (p / STUDY).exists()]
    if not stores:
        raise ConfigError(f"`store` must hold study.json or subdirectories with one, got {str(root)!r}")
    return stores
