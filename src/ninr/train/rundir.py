"""The run directory: ``config.json``, ``metrics.jsonl``, ``summary.json`` and ``checkpoint.pt``.

Every file is written atomically (a temporary file in the same directory, then ``os.replace``), so
an interrupted run never leaves a half-written file. ``metrics.jsonl`` grows by one line per epoch
as training goes. A directory that already holds a run is never overwritten unless asked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ninr.errors import ConfigError
from ninr.fileio import atomic_write_bytes

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
_RUN_FILES = (CONFIG, METRICS, SUMMARY, CHECKPOINT)


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (indented, NaN kept as the JSON extension ``NaN``)."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def prepare_run_dir(path: Path, *, overwrite: bool = False) -> Path:
    """Create ``path`` for a new run; refuse a directory that already holds one unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"`out` must be a directory, got {str(path)!r} which is a file")
    existing = [f for f in _RUN_FILES if (path / f).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"`out` must be a new or empty directory, got {str(path)!r} which already holds a run "
            f"({', '.join(existing)}); choose another directory or pass overwrite"
        )
    path.mkdir(parents=True, exist_ok=True)
    for name in existing:
        (path / name).unlink()
    return path


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line and flush it to disk."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSONL file (a torn last line, from a kill mid-write, is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def save_checkpoint(path: Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Atomically save a model's ``state_dict`` with JSON-ready metadata."""
    import io

    buffer = io.BytesIO()
    torch.save({"model": dict(state_dict), "meta": json.dumps(meta, default=str)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Load a checkpoint with ``weights_only=True``: a file from elsewhere never runs code."""
    blob = torch.load(path, map_location=map_location, weights_only=True)
    return blob["model"], json.loads(blob["meta"])
