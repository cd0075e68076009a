"""The results store of one study part: a directory holding each finished run's records.

Layout::

    <store>/study.json        the study (preset name, part, its config section, the run ids of the sweep)
    <store>/runs/<run_id>.json one file per finished run: spec, resolved config, records, wall time, versions
    <store>/sessions.jsonl    one line per sweep session (executor, runs done / skipped, elapsed time)

Every file is strict JSON: a non-finite number (the NaN accuracy of a diverged run) is written as
``null`` and listed under the file's ``"_nonfinite"`` key, which the store's readers turn back into
the number (:func:`ninr.fileio.json_text`). A run file that cannot be read counts as not finished:
a ``--resume`` session computes it again, and a report names it (:meth:`ResultStore.unreadable`).

A run file is written only when the run has finished, through a temporary file in the same
directory and ``os.replace``: a reader sees the whole file or none, a run interrupted by Ctrl-C,
a kill or a power loss leaves nothing but possibly a ``.tmp`` file, which readers ignore and later
sessions delete. Run ids are hashes of what a run computes and runs are deterministic, so two
processes pointed at one store that both finish a run write the same content; the last rename
wins and nothing is corrupted or duplicated.

Claims (``<store>/.claims/<run_id>.claim``): a session claims each run before it trains it, so two
processes resuming one store train each run once. A claim file is created with ``O_CREAT | O_EXCL``
(exactly one creator wins, also on NFS v3 and later) and holds the claimer's pid, host, boot id, pid
namespace, process start time, a random token and the time. The claiming process refreshes its mtime
every :data:`CLAIM_HEARTBEAT_S` and deletes it when the run's file is written or the session ends. A
claim may be taken over when it is stale (:func:`claim_is_stale`): its process no longer runs on this
machine, or its mtime is older than :data:`STALE_CLAIM_S`. A takeover is itself exclusive: the taker
first creates ``<run_id>.takeover-<token of the stale claim>`` with ``O_EXCL``, so of two processes
that judge one claim stale only one replaces it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import re
import secrets
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ninr.errors import ConfigError
from ninr.fileio import json_text, parse_json
from ninr.train.rundir import append_jsonl, atomic_write_bytes, atomic_write_json, read_json, read_jsonl

RUNS = "runs"
STUDY = "study.json"
SESSIONS = "sessions.jsonl"
STALE_TMP_S = 300.0  # a run file is written in milliseconds; an older .tmp file was orphaned by a kill
_RUN_ID = re.compile(r"[0-9a-f]{6,64}")
CLAIMS = ".claims"
CLAIM_HEARTBEAT_S = 30.0
"""Seconds between two refreshes of a session's claim files (their mtime), by a thread of the claiming process."""
STALE_CLAIM_S = 600.0
"""Seconds after its last refresh at which a claim is stale whoever holds it: 20 missed heartbeats. On this machine a
dead claimer is recognised at once (its pid is gone); the timeout covers what cannot be checked from here (a claimer
on another host sharing the store, a process that is stopped or hung). It is long against clock skew between hosts
of a shared file system (NTP keeps it under a second; a badly set clock is off by minutes), and a wrong takeover of a
live claim costs one run computed twice (runs are deterministic: both write the same file), while a long timeout
costs at most this long a wait after a crash on another host."""
TAKEOVER_MARKER_S = 86400.0
"""Age after which a takeover marker is deleted. A marker must outlive any process that read the claim it names
before it was replaced (a stall of microseconds); a day is far beyond that."""


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


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """The state letter and start time (clock ticks after boot) of process ``pid`` from ``/proc`` (Linux), or
    ``None`` where it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    try:
        return rest[0], int(rest[19])  # fields 3 (state) and 22 (starttime) of proc(5)
    except (IndexError, ValueError):
        return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _machine() -> tuple[str, str | None, str | None]:
    """What says "the same machine and pid namespace": host name, boot id, pid namespace (``None`` where unknown)."""
    try:
        pid_ns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    return platform.node(), _read_text("/proc/sys/kernel/random/boot_id"), pid_ns


@dataclass(frozen=True)
class Claim:
    """Who claims a run: the content of its claim file.

    Attributes:
        run_id: The claimed run.
        pid, host, boot_id, pid_ns: The claiming process, its host name, the host's boot id and the process's pid
            namespace (``None`` where unknown): a pid is checked only where all three are this process's.
        started: The claimer's start time in clock ticks after boot (Linux), which tells a reused pid apart.
        token: Random, unique to this claim.
        claimed_at: When it was claimed (ISO 8601, UTC).
    """

    run_id: str
    pid: int
    host: str
    token: str
    claimed_at: str
    boot_id: str | None = None
    pid_ns: str | None = None
    started: int | None = None

    @classmethod
    def mine(cls, run_id: str) -> Claim:
        """A new claim of ``run_id`` by this process."""
        host, boot_id, pid_ns = _machine()
        stat = _proc_stat(os.getpid())
        now = datetime.now(UTC).isoformat(timespec="seconds")
        started = None if stat is None else stat[1]
        return cls(run_id, os.getpid(), host, secrets.token_hex(8), now, boot_id, pid_ns, started)

    def describe(self) -> str:
        """``"pid 4242 on host-a since 2025-01-01T10:00:00+00:00"``."""
        return f"pid {self.pid} on {self.host} since {self.claimed_at}"


def claimer_alive(claim: Claim) -> bool | None:
    """Whether the process holding ``claim`` still runs: ``None`` where this process cannot tell (another host,
    boot or pid namespace; a system without ``kill(pid, 0)``). A zombie, or a pid now held by a process that
    started at another time, counts as dead."""
    if os.name != "posix" or (claim.host, claim.boot_id, claim.pid_ns) != _machine():
        return None
    try:
        os.kill(claim.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return None
    stat = _proc_stat(claim.pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False  # killed, not yet reaped
    return claim.started is None or started == claim.started


def claim_is_stale(claim: Claim | None, age_s: float, stale_s: float | None = None) -> bool:
    """Whether a claim may be taken over: its process is known dead, or its file was last refreshed more than
    ``stale_s`` (default :data:`STALE_CLAIM_S`) ago. ``claim`` ``None``: a claim file being written (empty), stale
    only by age."""
    if age_s > (STALE_CLAIM_S if stale_s is None else stale_s):
        return True
    return claim is not None and claimer_alive(claim) is False


def _claim_bytes(claim: Claim) -> bytes:
    return (json.dumps(asdict(claim), sort_keys=True) + "\n").encode()


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
        atomic_write_bytes(path, (json_text(asdict(result), indent=1) + "\n").encode())
        return path

    def read(self, run_id: str) -> RunResult:
        """The run ``run_id``."""
        return RunResult.from_dict(read_json(self.path(run_id)))

    def _scan(self) -> tuple[dict[str, RunResult], dict[str, str]]:
        """Every run file: the readable ones by run id, and why each other one cannot be read."""
        found: dict[str, RunResult] = {}
        broken: dict[str, str] = {}
        if not self.runs_dir.is_dir():
            return found, broken
        for path in sorted(self.runs_dir.glob("*.json")):
            if not _RUN_ID.fullmatch(path.stem):
                continue
            try:
                found[path.stem] = RunResult.from_dict(parse_json(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                broken[path.stem] = f"{type(exc).__name__}: {exc}"
        return found, broken

    def _load_all(self) -> dict[str, RunResult]:
        found, broken = self._scan()
        for run_id, reason in broken.items():
            warnings.warn(
                f"{self.path(run_id)}: unreadable run file ({reason}); it counts as not finished "
                "(a --resume session computes it again, a report names it and leaves it out)",
                stacklevel=3,
            )
        return found

    def unreadable(self, run_ids: Iterable[str] | None = None) -> dict[str, str]:
        """The run files in ``runs/`` that cannot be read (of ``run_ids``, or all): run id -> the reason."""
        broken = self._scan()[1]
        wanted = set(broken) if run_ids is None else set(run_ids)
        return {run_id: reason for run_id, reason in broken.items() if run_id in wanted}

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
        return dict(read_json(path)) if path.exists() else {}

    def log_session(self, entry: Mapping[str, Any]) -> None:
        """Append one line to ``sessions.jsonl``."""
        self.root.mkdir(parents=True, exist_ok=True)
        append_jsonl(self.root / SESSIONS, entry)

    def sessions(self) -> list[dict[str, Any]]:
        """Every logged session."""
        path = self.root / SESSIONS
        return read_jsonl(path) if path.exists() else []

    def clean_tmp(self, max_age_s: float = STALE_TMP_S) -> list[Path]:
        """Delete temporary files older than ``max_age_s`` (left by killed writers), and claim takeover markers
        older than :data:`TAKEOVER_MARKER_S`; returns them."""
        removed = []
        now = time.time()
        old = [(tmp, max_age_s) for tmp in self.runs_dir.glob(".*.tmp")] if self.runs_dir.is_dir() else []
        if self.claims_dir.is_dir():
            old += [(tmp, max_age_s) for tmp in self.claims_dir.glob(".*.tmp")]
            old += [(marker, TAKEOVER_MARKER_S) for marker in self.claims_dir.glob("*.takeover-*")]
        for path, age in old:
            try:
                if now - path.stat().st_mtime > age:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue  # another process cleaned it first
        return removed

    @property
    def claims_dir(self) -> Path:
        """Where the claim files of running runs live (see the module docstring)."""
        return self.root / CLAIMS

    def claim_path(self, run_id: str) -> Path:
        """The claim file of run ``run_id``."""
        return self.claims_dir / f"{_check_id(run_id)}.claim"

    def _read_claim(self, path: Path) -> tuple[Claim | None, str, float] | None:
        """The claim in ``path`` (``None`` if its content is not yet written or unreadable), a key naming this very
        claim (its token, else its inode and mtime) and its age in seconds; ``None`` if there is no such file."""
        try:
            st = path.stat()
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        age = time.time() - st.st_mtime
        try:
            claim: Claim | None = Claim(**json.loads(text))
        except (ValueError, TypeError):
            claim = None
        key = claim.token if claim is not None else f"ino{st.st_ino}-{st.st_mtime_ns}"
        return claim, key, age

    def claim_holder(self, run_id: str) -> Claim | None:
        """Who claims run ``run_id`` (``None``: nobody, or a claim file still being written)."""
        found = self._read_claim(self.claim_path(run_id))
        return None if found is None else found[0]

    def claimable(self, run_id: str, *, stale_s: float | None = None) -> bool:
        """Whether run ``run_id`` is unclaimed or its claim is stale (:func:`claim_is_stale`)."""
        found = self._read_claim(self.claim_path(run_id))
        return found is None or claim_is_stale(found[0], found[2], stale_s)

    def claim(self, run_id: str, *, stale_s: float | None = None) -> Claim | None:
        """Claim run ``run_id`` for this process: the new claim, or ``None`` when another process holds a claim
        that is not stale (or is taking a stale one over at this moment). A claim held by this very process
        through another :class:`Claim` counts as another holder's."""
        path = self.claim_path(run_id)
        mine = Claim.mine(run_id)
        for _ in range(3):  # a claim released, or the directory removed, between two steps: try again
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except FileNotFoundError:
                continue  # another session removed the empty directory (Claims.close)
            except FileExistsError:
                found = self._read_claim(path)
                if found is None:
                    continue
                holder, key, age = found
                if not claim_is_stale(holder, age, stale_s):
                    return None
                marker = path.with_name(f"{run_id}.takeover-{key}")
                try:
                    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                except FileExistsError:
                    return None  # another process takes this stale claim over
                atomic_write_bytes(path, _claim_bytes(mine))
                return mine
            with os.fdopen(fd, "wb") as fh:
                fh.write(_claim_bytes(mine))
                fh.flush()
                os.fsync(fh.fileno())
            return mine
        return None

    def release_claim(self, claim: Claim) -> bool:
        """Delete ``claim``'s file if it still holds ``claim`` (not a claim that took it over); returns whether."""
        path = self.claim_path(claim.run_id)
        found = self._read_claim(path)
        if found is None or found[0] is None or found[0].token != claim.token:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def refresh_claims(self, claims: Iterable[Claim]) -> None:
        """Set the mtime of each of ``claims``' files to now (the heartbeat that keeps them from going stale)."""
        for claim in claims:
            try:
                os.utime(self.claim_path(claim.run_id))
            except FileNotFoundError:
                continue

    def export_csv(self, path: str | Path, run_ids: Iterable[str] | None = None) -> Path:
        """Write the records of ``run_ids`` (all when ``None``) as one CSV file; returns its path."""
        path = Path(path)
        atomic_write_bytes(path, records_to_csv(self.records(run_ids)).encode())
        return path


class Claims:
    """The runs one session holds in a store: claimed before they run (:meth:`acquire`), kept fresh by a heartbeat
    thread every ``heartbeat_s`` (default :data:`CLAIM_HEARTBEAT_S`) while the session runs, released when their
    file is written (:meth:`release`) and, for whatever is left, when the session ends (:meth:`close`, also on an
    error or Ctrl-C; the claims directory is then removed if empty). A ``kill -9`` leaves the claim files behind;
    their pid is then dead, so the next session on this machine takes them over at once."""

    def __init__(self, store: ResultStore, *, heartbeat_s: float | None = None, stale_s: float | None = None) -> None:
        self.store = store
        self.stale_s = stale_s
        self.heartbeat_s = CLAIM_HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self._held: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, run_id: str) -> bool:
        """Claim ``run_id`` (see :meth:`ResultStore.claim`); whether this session now holds it."""
        if self.holds(run_id):
            return True
        claim = self.store.claim(run_id, stale_s=self.stale_s)
        if claim is None:
            return False
        with self._lock:
            self._held[run_id] = claim
        self._start()
        return True

    def holds(self, run_id: str) -> bool:
        """Whether this session holds ``run_id``."""
        with self._lock:
            return run_id in self._held

    def held(self) -> list[str]:
        """The run ids this session holds."""
        with self._lock:
            return sorted(self._held)

    def release(self, run_id: str) -> None:
        """Give ``run_id`` up (its file is written, or this session will not compute it)."""
        with self._lock:
            claim = self._held.pop(run_id, None)
        if claim is not None:
            self.store.release_claim(claim)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="ninr-claims-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                claims = list(self._held.values())
            self.store.refresh_claims(claims)

    def close(self) -> None:
        """Stop the heartbeat and release every claim still held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for run_id in self.held():
            self.release(run_id)
        with contextlib.suppress(OSError):  # not empty (another session's claims), or already gone
            self.store.claims_dir.rmdir()

    def __enter__(self) -> Claims:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


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
