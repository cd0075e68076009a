"""The run directory: ``config.json``, ``metrics.jsonl``, ``summary.json``, ``checkpoint.pt`` and ``epoch.pt``.

Every file is written atomically (a temporary file in the same directory, then ``os.replace``), so
an interrupted run never leaves a half-written file. ``metrics.jsonl`` grows by one line per epoch
as training goes. JSON is strict (a non-finite number is ``null``, listed under
:data:`ninr.fileio.NONFINITE_KEY`; :func:`read_json` and :func:`read_jsonl` give it back).

A directory that already holds a run is never overwritten unless asked, and then never in place: the
new run is written into a hidden sibling directory (:func:`staging_dir`) and swapped in whole when it
has finished (:func:`replace_run_dir`), so an interruption at any point leaves the complete old run or
the complete new one. The swap replaces the whole directory: what belongs to the old run (its one-run
store, its evaluations, its report) goes with it.

``epoch.pt`` is the run's state after its last finished epoch (:func:`ninr.train.fit.snapshot`: model,
optimizer, generators, records), rewritten atomically after every epoch of a run trained on its own, so a
run killed in epoch N+1 continues from the end of epoch N (``train(..., resume=True)``, ``ninr train
--resume``). It is deleted once ``checkpoint.pt`` is written: a finished run holds its outputs only.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ninr.errors import ConfigError, DataError
from ninr.fileio import atomic_write_bytes, json_text, parse_json, replace_dir, sibling_dir

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
EPOCH_CHECKPOINT = "epoch.pt"
_RUN_FILES = (CONFIG, METRICS, SUMMARY, CHECKPOINT, EPOCH_CHECKPOINT)
RUN_COMPANIONS = ("study.json", "runs", "sessions.jsonl", "eval", "robustness.jsonl", "report")
"""What else a run directory holds that belongs to its run: the one-run store of ``ninr train --out``
(``study.json``, ``runs/``, ``sessions.jsonl``), the evaluations of ``ninr eval`` (``eval/``,
``robustness.jsonl``) and the default output of ``ninr report`` (``report/``). Overwriting a run replaces them
with it; any other entry makes ``overwrite`` refuse, so nothing else is deleted."""


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomic strict-JSON write, indented (non-finite numbers as ``null``: :func:`ninr.fileio.json_text`)."""
    atomic_write_bytes(path, (json_text(data, indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    """A JSON file written by :func:`atomic_write_json` (non-finite numbers restored)."""
    return parse_json(Path(path).read_text(encoding="utf-8"))


def run_files(path: Path) -> list[str]:
    """The run files present in ``path`` (none: it holds no run)."""
    return [f for f in _RUN_FILES if (Path(path) / f).exists()]


def check_run_dir(path: Path, *, overwrite: bool = False) -> bool:
    """Whether ``path`` holds a run that a new one will replace; refuse what cannot be written.

    Raises:
        ConfigError: ``path`` is a file; or it holds a run and ``overwrite`` is off; or it holds a run and
            entries that belong to no run (see :data:`RUN_COMPANIONS`), which replacing it would delete; or it
            holds the working directory.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"`out` must be a directory, got {str(path)!r} which is a file")
    existing = run_files(path)
    if not existing:
        return False
    if not overwrite:
        raise ConfigError(
            f"`out` must be a new or empty directory, got {str(path)!r} which already holds a run "
            f"({', '.join(existing)}); choose another directory or pass overwrite"
        )
    ours = {*_RUN_FILES, *RUN_COMPANIONS}
    foreign = sorted(p.name for p in path.iterdir() if p.name not in ours and not p.name.startswith("."))
    if foreign:
        raise ConfigError(
            f"`out` must hold nothing but a run to be overwritten, got {str(path)!r} which also holds "
            f"{', '.join(foreign)}; overwriting replaces the whole directory, so move them or choose another directory"
        )
    here, real = Path.cwd().resolve(), path.resolve()
    if here == real or real in here.parents:
        raise ConfigError(f"`out` must not hold the working directory to be overwritten, got {str(path)!r}")
    return True


def staging_dir(path: Path) -> Path:
    """A new hidden directory beside ``path`` for the run that will replace the one in ``path``."""
    return sibling_dir(Path(path).resolve(), "new")


def replace_run_dir(staging: Path, path: Path) -> None:
    """Swap the finished run in ``staging`` in for the run directory ``path`` and delete the old one."""
    replace_dir(staging, Path(path).resolve())


def discard(staging: Path) -> None:
    """Delete an unfinished staging directory (the run it was for did not finish)."""
    shutil.rmtree(staging, ignore_errors=True)


def prepare_run_dir(path: Path, *, overwrite: bool = False) -> tuple[Path, bool]:
    """The directory a new run for ``path`` writes into, and whether it is a staging directory.

    A directory holding no run is created (if needed) and written in place. One holding a run is refused
    unless ``overwrite``; then the new run goes to :func:`staging_dir`, for :func:`replace_run_dir` to swap in
    when it has finished (:func:`discard` otherwise). See :func:`check_run_dir` for what is refused.
    """
    path = Path(path)
    if check_run_dir(path, overwrite=overwrite):
        return staging_dir(path), True
    path.mkdir(parents=True, exist_ok=True)
    return path, False


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one strict-JSON line and flush it to disk."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json_text(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSONL file (a torn last line, from a kill mid-write, is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(parse_json(line))
        except ValueError:
            continue
    return rows


def save_checkpoint(path: Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Atomically save a model's ``state_dict`` with JSON-ready metadata."""
    buffer = io.BytesIO()
    torch.save({"model": dict(state_dict), "meta": json.dumps(meta, default=str)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_blob(path: Path, keys: set[str]) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` onto the CPU, a dict with exactly ``keys``: anything else (missing,
    truncated, corrupted, another program's pickle, a pickle asking to run code) raises :class:`DataError`."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no such checkpoint") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    except pickle.UnpicklingError as exc:
        # torch's own message suggests weights_only=False, which would run whatever code the file holds: never
        asked = re.search(r"GLOBAL (\S+)", str(exc))
        what = f"it asks to import {asked.group(1)}" if asked else "it is corrupted or holds other Python objects"
        raise DataError(
            f"{path} is not a ninr checkpoint: {what}, where a ninr checkpoint holds only tensors and plain data; "
            "it was refused without running any of it"
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).split(". ")[0].strip() or type(exc).__name__
        raise DataError(f"{path} is not a ninr checkpoint: it is truncated or corrupted ({reason})") from None
    if not isinstance(blob, dict) or set(blob) != keys:
        what = f"a dict with keys {sorted(map(str, blob))}" if isinstance(blob, dict) else type(blob).__name__
        expected = " and ".join(repr(k) for k in sorted(keys))
        raise DataError(f"{path} is not a ninr checkpoint: expected a dict with keys {expected}, got {what}")
    return blob


def _meta(path: Path, meta_text: Any) -> dict[str, Any]:
    try:
        meta = parse_json(meta_text) if isinstance(meta_text, str) else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise DataError(f"{path} is not a ninr checkpoint: its 'meta' entry is not a JSON object")
    return meta


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Load a checkpoint with ``weights_only=True``: a file from elsewhere never runs code.

    A file that is not a ninr checkpoint (missing, truncated, corrupted, another program's pickle, a pickle
    asking to run code) raises :class:`DataError` naming the file and what is wrong with it. The file is read
    onto the CPU and its tensors then moved to ``map_location``, so an unusable device is reported as such,
    not as a bad file.
    """
    path = Path(path)
    blob = _load_blob(path, {"model", "meta"})
    state = blob["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path} is not a ninr checkpoint: its 'model' entry is not a state_dict of tensors")
    meta = _meta(path, blob["meta"])
    return {k: v.to(map_location) for k, v in state.items()}, meta


def save_epoch_checkpoint(path: Path, snapshot: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Atomically save a run's state after an epoch (:func:`ninr.train.fit.snapshot`) with JSON-ready ``meta``
    (the run id, config and versions); the snapshot's ``info`` (epochs, step, status, records) goes into the
    strict-JSON meta, its tensors beside it."""
    buffer = io.BytesIO()
    text = json_text({**dict(meta), "info": snapshot["info"]})
    torch.save({"state": snapshot["tensors"], "meta": text}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_epoch_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The snapshot (``{"tensors", "info"}``, tensors on the CPU) and the meta of an epoch checkpoint, loaded with
    ``weights_only=True``; a file that is not one raises :class:`DataError` naming it."""
    path = Path(path)
    blob = _load_blob(path, {"state", "meta"})
    meta = _meta(path, blob["meta"])
    info = meta.pop("info", None)
    if not isinstance(blob["state"], dict) or not isinstance(info, dict):
        raise DataError(f"{path} is not a ninr epoch checkpoint: its 'state' or 'meta' entry is malformed")
    return {"tensors": blob["state"], "info": info}, meta


def write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Atomically replace ``path`` with one strict-JSON line per record."""
    atomic_write_bytes(path, "".join(json_text(r) + "\n" for r in records).encode())


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run directory: a JSON object holding at least ``run_id`` and ``config``.

    A missing, unreadable or corrupted file raises :class:`DataError` naming the file and what is wrong.
    """
    path = Path(run_dir) / CONFIG
    try:
        meta = parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (not a run directory)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:  # not UTF-8, not JSON
        raise DataError(f"{path} is not a run's config: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "run_id" not in meta:
        raise DataError(f"{path} is not a run's config: expected a JSON object with 'run_id' and 'config'")
    return meta
