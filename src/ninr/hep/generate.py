"""Pythia 8 event generation: one photon candidate per event, labelled from the event record.

Signal events come from the prompt-photon processes, background from QCD dijets
(:class:`~ninr.hep.config.GenerationConfig`). In every event the candidate is the highest-pT final-state
photon with pT > ``photon_pt_min_gev`` and |eta| < ``photon_abs_eta_max``; events without one, or whose
candidate fails the optional isolation cut, are dropped. The candidate's label comes from its own history
(:func:`photon_origin`), never from the process that made the event: a decay photon that leads a
prompt-photon event is labelled 0.

Work is split into jobs of ``events_per_job`` events, each with its own Pythia instance and a seed
derived from ``(seed, process, job index)``, so the output is the same for any number of worker processes.

:func:`generate` given a :class:`~ninr.hep.gun.GunConfig` runs the particle gun instead (single photons
against pi0/eta -> gamma gamma, :mod:`ninr.hep.gun`), in this process, and reports it the same way.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import multiprocessing
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ninr.errors import ConfigError, check_positive_int
from ninr.hep import deps, gun
from ninr.hep.config import GenerationConfig
from ninr.hep.events import (
    KIND_EM,
    KIND_HADRON,
    KIND_MUON,
    ORIGIN_DECAY,
    ORIGIN_FSR,
    ORIGIN_HARD,
    ORIGIN_ISR,
    ORIGIN_MPI,
    ORIGIN_OTHER,
    PROCESS_BACKGROUND,
    PROCESS_SIGNAL,
    Candidates,
    concat,
    empty,
)
from ninr.rng import derive_seed

PROCESSES = ("signal", "background")
_PYTHIA_MAX_SEED = 900_000_000  # Random:seed must be in [1, 900000000]; 0 would mean "from the clock"
# |status| ranges of the Pythia 8 event record (Pythia 8 manual, "Particle Properties": status codes).
_ORIGIN_BY_DECADE = {2: ORIGIN_HARD, 3: ORIGIN_MPI, 4: ORIGIN_ISR, 5: ORIGIN_FSR, 9: ORIGIN_DECAY}


def photon_origin(event: Any, i: int) -> tuple[int, int]:
    """Where the photon at row ``i`` of a Pythia event record comes from, and the PDG id of its mother.

    The rule: follow the photon up its chain of copies with the same id (``iTopCopyId``: recoil copies made
    by the parton showers) to the entry where it was created, and read that entry's |status|:

    * 21-29, outgoing of the hardest subprocess: ``ORIGIN_HARD``, a prompt photon (label 1);
    * 31-39, a later multiparton-interaction subprocess: ``ORIGIN_MPI``;
    * 41-49, radiated in the initial-state shower: ``ORIGIN_ISR``;
    * 51-59, radiated in the final-state shower, e.g. off a quark (a fragmentation photon): ``ORIGIN_FSR``;
    * 91-99, a decay product, its mother a hadron (pi0, eta, omega, ...): ``ORIGIN_DECAY``;
    * anything else: ``ORIGIN_OTHER``.

    Only ``ORIGIN_HARD`` is prompt. Works on any indexable record whose entries have ``iTopCopyId()``,
    ``status()``, ``mother1()`` and ``id()``.
    """
    top = event[i].iTopCopyId()
    status = abs(event[top].status())
    mother = event[top].mother1()
    return _ORIGIN_BY_DECADE.get(status // 10, ORIGIN_OTHER), int(event[mother].id())


@dataclass(frozen=True)
class Job:
    """One independent Pythia run: ``n_events`` events of ``process`` with Pythia seed ``seed``."""

    config: GenerationConfig
    process: str
    index: int
    n_events: int
    seed: int


@dataclass
class JobResult:
    """What one job produced."""

    candidates: Candidates
    process: str
    n_events: int
    n_failed: int
    seconds: float


@dataclass
class GenerationStats:
    """Counts and throughput of :func:`generate`."""

    events: dict[str, int] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    wall_s: float = 0.0
    job_cpu_s: float = 0.0
    workers: int = 1
    pythia_version: str = ""
    source: str = "pythia"

    @property
    def events_per_s(self) -> float:
        """All generated events (both processes) per second of wall time."""
        return sum(self.events.values()) / self.wall_s if self.wall_s > 0 else float("nan")

    def summary(self) -> str:
        """One line for the terminal."""
        if self.source == "gun":
            return (
                f"particle gun: {sum(self.events.values())} particles in {self.wall_s:.2f}s: "
                f"{self.events_per_s:.0f} candidates/s (signal: {self.candidates.get('signal', 0)} photons; "
                f"background: {self.candidates.get('background', 0)} mesons -> gamma gamma)"
            )
        parts = ", ".join(
            f"{p}: {self.events.get(p, 0)} events -> {self.candidates.get(p, 0)} candidates" for p in PROCESSES
        )
        return (
            f"generated {sum(self.events.values())} events in {self.wall_s:.1f}s with {self.workers} worker(s): "
            f"{self.events_per_s:.1f} events/s ({parts}; {self.failed} failed; Pythia {self.pythia_version})"
        )


def pythia_settings(config: GenerationConfig, process: str, seed: int) -> list[str]:
    """The setting strings of one job, in the order they are read."""
    if process not in PROCESSES:
        raise ConfigError(f"`process` must be one of {list(PROCESSES)}, got {process!r}")
    signal = process == "signal"
    pthat = config.signal_pthat_min_gev if signal else config.background_pthat_min_gev
    return [
        f"Beams:eCM = {config.ecm_gev!r}",
        *(config.signal_settings if signal else config.background_settings),
        f"PhaseSpace:pTHatMin = {pthat!r}",
        *config.common_settings,
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        "Next:numberCount = 0",
        "Print:quiet = on",
    ]


def plan_jobs(config: GenerationConfig) -> list[Job]:
    """The jobs of a generation, signal first; independent of the number of workers."""
    jobs = []
    for process, total in (("signal", config.n_signal_events), ("background", config.n_background_events)):
        for index, start in enumerate(range(0, total, config.events_per_job)):
            n = min(config.events_per_job, total - start)
            seed = derive_seed(config.seed, "pythia", process, index) % _PYTHIA_MAX_SEED + 1
            jobs.append(Job(config, process, index, n, seed))
    return jobs


def run_job(job: Job) -> JobResult:
    """Run one job in this process (the unit of parallel work)."""
    pythia8 = deps.pythia8()
    started = time.perf_counter()
    pythia = pythia8.Pythia("", False)
    for setting in pythia_settings(job.config, job.process, job.seed):
        if not pythia.readString(setting):
            raise ConfigError(f"Pythia rejected the setting {setting!r}")
    if not pythia.init():
        raise ConfigError(f"Pythia failed to initialise the {job.process} processes (settings above)")
    rows: list[dict[str, Any]] = []
    failed = 0
    process_code = PROCESS_SIGNAL if job.process == "signal" else PROCESS_BACKGROUND
    for _ in range(job.n_events):
        if not pythia.next():
            failed += 1
            continue
        row = extract_candidate(pythia.event, job.config)
        if row is not None:
            row["process"] = process_code
            rows.append(row)
    return JobResult(_to_candidates(rows), job.process, job.n_events, failed, time.perf_counter() - started)


def extract_candidate(event: Any, config: GenerationConfig) -> dict[str, Any] | None:
    """The photon candidate of one Pythia event and the visible particles around it, or ``None``."""
    finals = [(j, q.id(), q.px(), q.py(), q.pz(), q.e(), q.isVisible()) for j, q in enumerate(event) if q.isFinal()]
    if not finals:
        return None
    arr = np.array(finals, dtype=np.float64)
    index, pid, px, py, pz, e, visible = arr.T
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.sign(pz) * np.inf)
    phi = np.arctan2(py, px)
    ok = (pid == 22) & (pt > config.photon_pt_min_gev) & (np.abs(eta) < config.photon_abs_eta_max)
    if not ok.any():
        return None
    c = int(np.argmax(np.where(ok, pt, -1.0)))
    d_eta = eta - eta[c]
    d_phi = wrap_phi(phi - phi[c])
    if config.isolation_cone > 0 and not _isolated(c, pt, np.hypot(d_eta, d_phi), visible > 0, config):
        return None
    hw = config.store_half_width
    near = (visible > 0) & (np.abs(d_eta) <= hw) & (np.abs(d_phi) <= hw)
    origin, mother_id = photon_origin(event, int(index[c]))
    apid = np.abs(pid[near]).astype(np.int64)
    kind = np.where((apid == 22) | (apid == 11), KIND_EM, np.where(apid == 13, KIND_MUON, KIND_HADRON))
    return {
        "pt": pt[c],
        "eta": eta[c],
        "phi": phi[c],
        "e": e[c],
        "label": int(origin == ORIGIN_HARD),
        "origin": origin,
        "mother_id": mother_id,
        "d_eta": d_eta[near],
        "d_phi": d_phi[near],
        "p_e": e[near],
        "kind": kind,
        "pid": pid[near],
    }


def _isolated(c: int, pt: np.ndarray, dr: np.ndarray, visible: np.ndarray, config: GenerationConfig) -> bool:
    """Whether candidate ``c`` passes the isolation cut of ``config`` (see :class:`GenerationConfig`)."""
    ring = visible & (dr > config.isolation_core) & (dr < config.isolation_cone)
    ring[c] = False
    return float(pt[ring].sum()) < config.isolation_max_gev + config.isolation_max_rel * float(pt[c])


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def _to_candidates(rows: list[dict[str, Any]]) -> Candidates:
    if not rows:
        return empty()

    def col(key: str, dtype: Any) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=dtype)

    def cat(key: str, dtype: Any) -> np.ndarray:
        return np.concatenate([np.asarray(r[key]) for r in rows]).astype(dtype)

    counts = np.array([len(r["d_eta"]) for r in rows], dtype=np.int64)
    return Candidates(
        pt=col("pt", np.float64),
        eta=col("eta", np.float64),
        phi=col("phi", np.float64),
        e=col("e", np.float64),
        label=col("label", np.int8),
        origin=col("origin", np.int8),
        mother_id=col("mother_id", np.int32),
        process=col("process", np.int8),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        p_d_eta=cat("d_eta", np.float32),
        p_d_phi=cat("d_phi", np.float32),
        p_e=cat("p_e", np.float32),
        p_kind=cat("kind", np.int8),
        p_pid=cat("pid", np.int32),
    )


def generate(
    config: GenerationConfig | gun.GunConfig,
    *,
    workers: int = 1,
    progress: Callable[[JobResult, int, int], None] | None = None,
) -> tuple[Candidates, GenerationStats]:
    """Generate every job of ``config`` in ``workers`` processes; candidates come back in job order.

    Args:
        config: what to generate: Pythia events, or a :class:`~ninr.hep.gun.GunConfig` for the particle gun
            (one job per process, in this process: it makes about a million candidates a second).
        workers: worker processes (1 runs in this process). The output does not depend on it.
        progress: called as ``progress(result, done, total)`` after each job.

    Returns:
        The candidates (signal jobs first) and the run's :class:`GenerationStats`.
    """
    check_positive_int("workers", workers)
    if isinstance(config, gun.GunConfig):
        return _generate_gun(config, progress)
    deps.pythia8()  # fail before starting workers
    jobs = plan_jobs(config)
    stats = GenerationStats(workers=workers, pythia_version=_pythia_version())
    started = time.perf_counter()
    results = []
    for done, result in enumerate(_map(jobs, workers), start=1):
        results.append(result)
        stats.events[result.process] = stats.events.get(result.process, 0) + result.n_events
        stats.candidates[result.process] = stats.candidates.get(result.process, 0) + len(result.candidates)
        stats.failed += result.n_failed
        stats.job_cpu_s += result.seconds
        if progress is not None:
            progress(result, done, len(jobs))
    stats.wall_s = time.perf_counter() - started
    return concat([r.candidates for r in results]), stats


def _generate_gun(
    config: gun.GunConfig, progress: Callable[[JobResult, int, int], None] | None
) -> tuple[Candidates, GenerationStats]:
    """The particle gun's candidates, one job per process (signal first), timed like Pythia jobs."""
    stats = GenerationStats(workers=1, source="gun")
    started = time.perf_counter()
    results = []
    for done, process in enumerate(gun.GUN_PROCESSES, start=1):
        job_started = time.perf_counter()
        candidates = gun.shoot(config, process, gun.process_rng(config, process))
        result = JobResult(candidates, process, len(candidates), 0, time.perf_counter() - job_started)
        results.append(result)
        stats.events[process] = stats.candidates[process] = len(candidates)
        stats.job_cpu_s += result.seconds
        if progress is not None:
            progress(result, done, len(gun.GUN_PROCESSES))
    stats.wall_s = time.perf_counter() - started
    return concat([r.candidates for r in results]), stats


def _map(jobs: list[Job], workers: int) -> Iterable[JobResult]:
    if workers == 1 or len(jobs) <= 1:
        yield from map(run_job, jobs)
        return
    # spawn, not fork: the parent may hold torch's thread pools, which fork does not copy safely.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        yield from pool.map(run_job, jobs)


def _pythia_version() -> str:
    for dist in ("pythia8mc", "pythia8"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"
