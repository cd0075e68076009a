"""A sharded HDF5 store of generated events that grows across runs.

A store is a directory. Each generation job (:class:`ninr.hep.generate.Job`) writes one shard,
``<process>-<index>.h5`` (``signal-000003.h5``), holding the job's candidates (the arrays of
:class:`~ninr.hep.events.Candidates`) and ``event`` (each candidate's event index within the job), with
attributes: the job's Pythia seed, index, process, event and candidate counts (prompt among them), the
store's config and its hash, stage times and versions. ``store.json`` holds the config every shard was
generated with, less the two event targets (``n_signal_events``, ``n_background_events``).

* **Atomic shards.** A shard is written under a hidden temporary name carrying the writer's process id
  (``.signal-000003.h5.<pid>.tmp``), fsynced, then renamed. Only names of the form ``<process>-<index>.h5``
  count, so a killed run leaves no half shard in the data set; the temporary files of dead processes are
  deleted when the store is next opened.
* **Growing.** The data set of a target is the jobs :func:`ninr.hep.generate.plan_jobs` plans for it; a job
  whose shard exists (same seed, at least as many events) is reused, the others are generated. A larger
  target therefore adds shards with new seeds and keeps the old ones, and the data set is a function of the
  config and the target alone, not of the history of runs: a partial last job (fewer events than
  ``events_per_job``) is regenerated whole when a larger target needs it, replaying its first events
  exactly (same seed); a shard with more events than a smaller target's job is read up to that job's
  event count (``event < n``).
* **Refusal.** Generating or reading a store with a config that differs from ``store.json`` in anything but
  the targets is a :class:`~ninr.errors.ConfigError` naming the setting, the store's value and the given one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ninr.errors import DataError, fail
from ninr.fileio import atomic_write_bytes
from ninr.hep import deps
from ninr.hep.config import GenerationConfig, to_dict
from ninr.hep.events import Candidates, concat, from_arrays
from ninr.hep.generate import GenerationStats, Job, JobResult, map_jobs, plan_jobs, pythia_version, run_job
from ninr.version import __version__

SHARD_KIND = "ninr-hep-shard"
SHARD_FORMAT = 1
STORE_FILE = "store.json"
TARGETS = ("n_signal_events", "n_background_events")
"""The fields of :class:`GenerationConfig` a store may grow in; every other field must match its shards."""
_SHARD_NAME = re.compile(r"^(signal|background)-(\d{6})\.h5$")
_TEMP_NAME = re.compile(r"^\.(.+\.h5)\.(\d+)\.tmp$")

JobRunner = Callable[[Job], JobResult]


def store_config(config: GenerationConfig) -> dict[str, Any]:
    """The part of ``config`` a store's shards share: every field but the event targets."""
    return {k: v for k, v in to_dict(config).items() if k not in TARGETS}


def store_hash(config: GenerationConfig) -> str:
    """The first 16 hex digits of the sha256 of :func:`store_config`'s canonical JSON."""
    text = json.dumps(store_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shard_name(process: str, index: int) -> str:
    """The file name of job ``index`` of ``process``."""
    return f"{process}-{index:06d}.h5"


@dataclass(frozen=True)
class ShardInfo:
    """The attributes of one complete shard."""

    path: Path
    process: str
    index: int
    seed: int
    n_events: int
    n_failed: int
    n_candidates: int
    n_prompt: int
    n_photon_events: int
    config_hash: str
    seconds: float
    stage_s: dict[str, float] = field(default_factory=dict)


@dataclass
class GrowReport:
    """What :meth:`ShardStore.grow` did: shards reused and generated, and the statistics of the new ones."""

    reused: int = 0
    generated: int = 0
    stats: GenerationStats = field(default_factory=GenerationStats)


class ShardStore:
    """The shard directory ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- config ---------------------------------------------------------------------------------------------
    def stored_config(self) -> dict[str, Any] | None:
        """The config in ``store.json``, or ``None`` for a store not yet created."""
        path = self.root / STORE_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return dict(data["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path} is not a shard store description: {exc}") from None

    def check(self, config: GenerationConfig) -> None:
        """Refuse ``config`` if the store was generated with another one (anything but the event targets).

        Raises:
            ConfigError: naming the first differing setting, the store's value and the given one.
        """
        stored = self.stored_config()
        if stored is None:
            return
        refuse_changed(
            stored,
            store_config(config),
            f"the shards in {self.root} were generated with",
            "use another --out or --events, or --overwrite to start the store afresh",
        )

    def create(self, config: GenerationConfig) -> None:
        """Check ``config`` against the store, create the directory and ``store.json`` if needed, and delete
        the temporary files of dead writers."""
        self.check(config)
        self.root.mkdir(parents=True, exist_ok=True)
        if self.stored_config() is None:
            text = json.dumps({"kind": "ninr-hep-shards", "config": store_config(config), "hash": store_hash(config)})
            atomic_write_bytes(self.root / STORE_FILE, text.encode())
        self.clean_temp()

    def clear(self) -> None:
        """Delete the store (its shards, temporary files and ``store.json``); anything else stays."""
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if p.name == STORE_FILE or _SHARD_NAME.match(p.name) or _TEMP_NAME.match(p.name):
                p.unlink(missing_ok=True)

    def clean_temp(self) -> list[Path]:
        """Delete temporary shard files whose writing process no longer exists; return them."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for p in self.root.iterdir():
            m = _TEMP_NAME.match(p.name)
            if m and not _alive(int(m.group(2))):
                p.unlink(missing_ok=True)
                removed.append(p)
        return removed

    # -- shards ---------------------------------------------------------------------------------------------
    def shards(self) -> dict[tuple[str, int], ShardInfo]:
        """Every complete shard by ``(process, index)``, read from the directory listing."""
        found: dict[tuple[str, int], ShardInfo] = {}
        if not self.root.is_dir():
            return found
        for p in sorted(self.root.iterdir()):
            if _SHARD_NAME.match(p.name):
                info = read_shard_info(p)
                found[(info.process, info.index)] = info
        return found

    def plan(self, config: GenerationConfig) -> tuple[list[tuple[Job, ShardInfo]], list[Job]]:
        """The target's jobs split into those a shard already covers (with that shard) and those to generate."""
        self.check(config)
        have = self.shards()
        expected = store_hash(config)
        reuse, todo = [], []
        for job in plan_jobs(config):
            info = have.get((job.process, job.index))
            if info is not None and info.config_hash != expected:
                raise DataError(f"{info.path} has config hash {info.config_hash}, the store {expected}: not reused")
            if info is not None and info.seed == job.seed and info.n_events >= job.n_events:
                reuse.append((job, info))
            else:
                todo.append(job)
        return reuse, todo

    def grow(
        self,
        config: GenerationConfig,
        *,
        workers: int = 1,
        progress: Callable[[JobResult, int, int], None] | None = None,
        runner: JobRunner = run_job,
    ) -> GrowReport:
        """Generate the shards the target of ``config`` lacks, each written by its job as soon as it is done.

        Args:
            config: the generation config; its event targets say how many events the data set holds.
            workers: worker processes; each writes its own shards, so a kill loses only the jobs in flight.
            progress: called as ``progress(result, done, total)`` after each generated job.
            runner: the job function (:func:`ninr.hep.generate.run_job`; tests give a fake one).
        """
        self.create(config)
        reuse, todo = self.plan(config)
        report = GrowReport(reused=len(reuse), generated=len(todo))
        report.stats = GenerationStats(workers=workers, pythia_version=pythia_version())
        started = time.perf_counter()
        fn = functools.partial(run_and_write, root=str(self.root), config_hash=store_hash(config), runner=runner)
        for done, result in enumerate(map_jobs(fn, todo, workers), start=1):
            report.stats.add(result)
            if progress is not None:
                progress(result, done, len(todo))
        report.stats.wall_s = time.perf_counter() - started
        return report

    def load(self, config: GenerationConfig) -> tuple[Candidates, dict[str, Any]]:
        """The data set of ``config``'s target: its jobs' shards in job order (signal first), and a meta dict.

        Raises:
            DataError: a job of the target has no complete shard yet (run :meth:`grow` first).
        """
        reuse, todo = self.plan(config)
        if todo:
            missing = ", ".join(shard_name(j.process, j.index) for j in todo[:5])
            raise DataError(f"{self.root} lacks {len(todo)} shard(s) of this target ({missing}): generate them first")
        parts = []
        meta: dict[str, Any] = {
            "events": {},
            "candidates": {},
            "prompt": {},
            "photon_events": {},
            "failed": 0,
            "job_cpu_s": 0.0,
            "stage_s": {},
            "shards": len(reuse),
            "store": str(self.root),
            "store_hash": store_hash(config),
            "seeds": {},
        }
        for job, info in reuse:
            candidates, _ = read_shard(info.path, n_events=job.n_events)
            parts.append(candidates)
            p = job.process
            meta["events"][p] = meta["events"].get(p, 0) + job.n_events
            meta["candidates"][p] = meta["candidates"].get(p, 0) + len(candidates)
            meta["prompt"][p] = meta["prompt"].get(p, 0) + int(candidates.label.sum())
            meta["seeds"].setdefault(p, []).append(job.seed)
            # counts that a partly read shard cannot split by event are taken whole
            share = job.n_events / info.n_events if info.n_events else 1.0
            meta["failed"] += info.n_failed
            meta["photon_events"][p] = meta["photon_events"].get(p, 0) + round(info.n_photon_events * share)
            meta["job_cpu_s"] += info.seconds * share
            for stage, sec in info.stage_s.items():
                meta["stage_s"][stage] = meta["stage_s"].get(stage, 0.0) + sec * share
        total = sum(meta["events"].values())
        meta["events_per_job_s"] = total / meta["job_cpu_s"] if meta["job_cpu_s"] > 0 else float("nan")
        meta["pythia_version"] = pythia_version()
        return concat(parts), meta


def run_and_write(job: Job, *, root: str, config_hash: str, runner: JobRunner = run_job) -> JobResult:
    """Run ``job`` and write its shard into ``root`` (in the worker process that ran it)."""
    result = runner(job)
    write_shard(Path(root) / shard_name(job.process, job.index), job, result, config_hash)
    return result


def refuse_changed(stored: Mapping[str, Any], given: Mapping[str, Any], source: str, remedy: str) -> None:
    """Raise a :class:`ConfigError` naming the first setting (in key order) whose ``given`` value differs from the
    ``stored`` one, with both values: ``source`` says where the stored values come from, ``remedy`` what to do."""
    for key in sorted(set(stored) | set(given)):
        if stored.get(key) != given.get(key):
            raise fail(key, f"{stored.get(key)!r}, the value {source} ({remedy})", given.get(key))


@contextlib.contextmanager
def atomic_h5(path: Path) -> Iterator[Any]:
    """An ``h5py.File`` open for writing at a temporary name beside ``path`` (named after this process), fsynced
    and renamed onto ``path`` when the block ends; deleted if the block raises, so ``path`` is never half written."""
    h5py = deps.h5py()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_arrays(f: Any, arrays: Mapping[str, Any]) -> None:
    """Each array as a gzip-compressed data set of ``f`` (an open ``h5py.File``)."""
    for name, arr in arrays.items():
        f.create_dataset(name, data=np.asarray(arr), compression="gzip", compression_opts=4, shuffle=True)


def write_shard(path: Path, job: Job, result: JobResult, config_hash: str) -> Path:
    """Write one job's shard atomically (:func:`atomic_h5`)."""
    with atomic_h5(path) as f:
        write_arrays(f, {**result.candidates.arrays(), "event": np.asarray(result.event_index, dtype=np.int64)})
        f.attrs.update(
            {
                "kind": SHARD_KIND,
                "format_version": SHARD_FORMAT,
                "config": json.dumps(store_config(job.config), sort_keys=True),
                "config_hash": config_hash,
                "process": job.process,
                "index": job.index,
                "seed": job.seed,
                "n_events": job.n_events,
                "n_failed": result.n_failed,
                "n_candidates": len(result.candidates),
                "n_prompt": int(result.candidates.label.sum()),
                "n_photon_events": result.n_photon_events,
                "seconds": result.seconds,
                "stage_s": json.dumps(result.stage_s, sort_keys=True),
                "pythia_version": pythia_version(),
                "ninr_version": __version__,
            }
        )
    return path


def read_shard_info(path: Path) -> ShardInfo:
    """The attributes of a shard; a file of another kind or format is a :class:`DataError`."""
    h5py = deps.h5py()
    try:
        with h5py.File(path, "r") as f:
            a = dict(f.attrs)
    except OSError as exc:
        raise DataError(f"cannot read shard {path}: {exc}") from None
    if a.get("kind") != SHARD_KIND or int(a.get("format_version", -1)) != SHARD_FORMAT:
        raise DataError(f"{path} is not a {SHARD_KIND} file of format {SHARD_FORMAT}")
    return ShardInfo(
        path=path,
        process=str(a["process"]),
        index=int(a["index"]),
        seed=int(a["seed"]),
        n_events=int(a["n_events"]),
        n_failed=int(a["n_failed"]),
        n_candidates=int(a["n_candidates"]),
        n_prompt=int(a["n_prompt"]),
        n_photon_events=int(a["n_photon_events"]),
        config_hash=str(a["config_hash"]),
        seconds=float(a["seconds"]),
        stage_s={str(k): float(v) for k, v in json.loads(a.get("stage_s", "{}")).items()},
    )


def read_shard(path: Path, n_events: int | None = None) -> tuple[Candidates, np.ndarray]:
    """A shard's candidates and their event indices; with ``n_events``, only those of its first events."""
    h5py = deps.h5py()
    with h5py.File(path, "r") as f:
        arrays: Mapping[str, np.ndarray] = {name: f[name][()] for name in f}
    event = np.asarray(arrays["event"])
    candidates = from_arrays({k: v for k, v in arrays.items() if k != "event"})
    if n_events is not None and len(event) and event.max() >= n_events:
        keep = np.flatnonzero(event < n_events)
        return candidates.select(keep), event[keep]
    return candidates, event


def shards_dir(events_path: str | Path) -> Path:
    """The shard store beside an events file: ``runs/x/events.h5`` -> ``runs/x/events.shards``."""
    p = Path(events_path)
    return p.with_name(p.stem + ".shards")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
