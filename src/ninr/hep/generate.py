"""Pythia 8 event generation: one photon candidate per event, labelled from the event record.

Signal events come from the prompt-photon processes, background from QCD dijets
(:class:`~ninr.hep.config.GenerationConfig`). In every event the candidate is the highest-pT final-state
photon with pT > ``photon_pt_min_gev`` and |eta| < ``photon_abs_eta_max``; events without one, or whose
candidate fails the optional isolation cut, are dropped. The candidate's label comes from its own history
(:func:`photon_origin`), never from the process that made the event: a decay photon that leads a
prompt-photon event is labelled 0.

Work is split into jobs of ``events_per_job`` events, each with its own Pythia instance and a seed
derived from ``(seed, process, job index)``, so the output is the same for any number of worker processes.

A job reads its events in blocks of :data:`BATCH_EVENTS` with ``Pythia.nextBatch`` (the event records as flat
arrays, without a Python loop over particles) and selects candidates with numpy over the whole block
(:func:`select_batch`): events without a photon passing the pT and eta cuts are dropped before any
isolation sum, and only the survivors' particles are read further. :func:`extract_candidate` is the same
selection on one event through the per-particle accessors; the tests hold the two equal.

:func:`generate` given a :class:`~ninr.hep.gun.GunConfig` runs the particle gun instead (single photons
against pi0/eta -> gamma gamma, :mod:`ninr.hep.gun`), in this process, and reports it the same way.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
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
BATCH_EVENTS = 250
"""Events per ``Pythia.nextBatch`` call: large enough that the per-call numpy work is amortised, small enough
that a block's arrays (about 600 particles an event at pTHat 60 GeV without MPI) stay a few MB."""
STAGES = ("pythia", "convert", "photon_filter", "isolation", "store")
"""Timed stages of a job, in seconds (:attr:`JobResult.stage_s`): Pythia's event generation (``nextBatch``:
process level, showers, hadronisation, decays and the conversion of the record to arrays), the arrays read
out per block, the pT/eta photon filter with the choice of each event's candidate, the isolation sums of the
events that still have one, and the origin look-up and particle gathering of the candidates kept."""
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
    event_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """The index, within the job, of each candidate's event (the events Pythia returned, in order)."""
    stage_s: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each of :data:`STAGES`."""
    n_photon_events: int = 0
    """Events with a photon passing the pT and eta cuts (before isolation)."""


@dataclass
class GenerationStats:
    """Counts and throughput of :func:`generate`."""

    events: dict[str, int] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)
    prompt: dict[str, int] = field(default_factory=dict)
    photon_events: dict[str, int] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)
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

    def add(self, result: JobResult) -> None:
        """Count one job's events, candidates (prompt among them) and stage times."""
        p = result.process
        self.events[p] = self.events.get(p, 0) + result.n_events
        self.candidates[p] = self.candidates.get(p, 0) + len(result.candidates)
        self.prompt[p] = self.prompt.get(p, 0) + int(result.candidates.label.sum())
        self.photon_events[p] = self.photon_events.get(p, 0) + result.n_photon_events
        self.failed += result.n_failed
        self.job_cpu_s += result.seconds
        for stage, sec in result.stage_s.items():
            self.stage_s[stage] = self.stage_s.get(stage, 0.0) + sec

    def class_counts(self) -> dict[str, int]:
        """Candidates after selection per class: ``prompt`` (label 1) and ``nonprompt`` (fragmentation, decay
        and other photons, label 0), over both processes."""
        prompt = sum(self.prompt.values())
        return {"prompt": prompt, "nonprompt": sum(self.candidates.values()) - prompt}

    def rates(self) -> str:
        """Candidates per second of wall time per class, and the job seconds spent in each stage."""
        if self.wall_s <= 0:
            return ""
        classes = self.class_counts()
        per_s = ", ".join(f"{k} {v / self.wall_s:.2f}/s" for k, v in classes.items())
        total = sum(self.stage_s.values())
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_s.items()) if total else ""
        return f"candidates after selection: {per_s}" + (f"; job time by stage: {stages}" if stages else "")

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
            f"{self.events_per_s:.1f} events/s ({parts}; {self.failed} failed; Pythia {self.pythia_version})\n"
            + self.rates()
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


def make_pythia(job: Job) -> Any:
    """An initialised Pythia instance for ``job`` (its settings and seed)."""
    pythia8 = deps.pythia8()
    pythia = pythia8.Pythia("", False)
    for setting in pythia_settings(job.config, job.process, job.seed):
        if not pythia.readString(setting):
            raise ConfigError(f"Pythia rejected the setting {setting!r}")
    if not pythia.init():
        raise ConfigError(f"Pythia failed to initialise the {job.process} processes (settings above)")
    return pythia


def run_job(job: Job) -> JobResult:
    """Run one job in this process (the unit of parallel work), reading the events in blocks."""
    started = time.perf_counter()
    pythia = make_pythia(job)
    visible = VisibleTable(pythia.particleData)
    stage = dict.fromkeys(STAGES, 0.0)
    parts, indices = [], []
    done = failed = photon_events = 0
    while done + failed < job.n_events:
        want = min(BATCH_EVENTS, job.n_events - done - failed)
        t0 = time.perf_counter()
        batch = pythia.nextBatch(want)
        t1 = time.perf_counter()
        block = EventBlock.from_batch(batch)
        stage["pythia"] += t1 - t0
        stage["convert"] += time.perf_counter() - t1
        failed += want - block.n_events  # events Pythia could not generate are left out of the block
        sel = select_batch(block, job.config, visible, stage)
        photon_events += sel.n_photon_events
        parts.append(sel.candidates)
        indices.append(sel.event_index + done)
        done += block.n_events
    candidates = concat(parts)
    code = PROCESS_SIGNAL if job.process == "signal" else PROCESS_BACKGROUND
    candidates = dataclasses.replace(candidates, process=np.full(len(candidates), code, np.int8))
    return JobResult(
        candidates,
        job.process,
        job.n_events,
        failed,
        time.perf_counter() - started,
        np.concatenate(indices) if indices else np.zeros(0, np.int64),
        stage,
        photon_events,
    )


class VisibleTable:
    """``isVisible()`` of Pythia's particle data by PDG id (neutrinos and invisible BSM states are not), cached."""

    def __init__(self, particle_data: Any) -> None:
        self._data = particle_data
        self._known: dict[int, bool] = {}

    def __call__(self, pid: np.ndarray) -> np.ndarray:
        ids, inverse = np.unique(pid, return_inverse=True)
        flags = np.array([self._lookup(int(i)) for i in ids], dtype=bool)
        return flags[inverse].reshape(pid.shape)

    def _lookup(self, pid: int) -> bool:
        if pid not in self._known:
            self._known[pid] = bool(self._data.isVisible(pid))
        return self._known[pid]


@dataclass(frozen=True)
class EventBlock:
    """Event records of a block of events as flat arrays: entry ``j`` of event ``k`` is row ``offsets[k] + j``.

    Rows keep Pythia's record order, entry 0 (the system) included, so ``mother1``/``mother2`` (indices within
    the event) point at rows ``offsets[k] + mother``.
    """

    offsets: np.ndarray
    pid: np.ndarray
    status: np.ndarray
    mother1: np.ndarray
    mother2: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray

    @property
    def n_events(self) -> int:
        """Events in the block."""
        return len(self.offsets) - 1

    @classmethod
    def from_batch(cls, batch: Any) -> EventBlock:
        """Read the awkward array that ``Pythia.nextBatch`` returns (fields ``prt.id``, ``prt.p.px``, ...)."""
        prt = batch["prt"]
        layout = prt.layout  # a ListOffsetArray over a record of particle fields
        if not hasattr(layout, "offsets"):  # any other list layout: packed into that form first
            layout = deps.require("awkward", what="reading Pythia event batches").to_packed(prt).layout
        offsets = np.asarray(layout.offsets.data, dtype=np.int64)
        content = layout.content
        lo, hi = int(offsets[0]), int(offsets[-1])

        def flat(field: Any) -> np.ndarray:
            return np.asarray(field.data if hasattr(field, "data") else field)[lo:hi]

        mom = content["p"]
        return cls(
            offsets=offsets - lo,
            pid=flat(content["id"]),
            status=flat(content["status"]),
            mother1=flat(content["mother1"]),
            mother2=flat(content["mother2"]),
            px=flat(mom["px"]),
            py=flat(mom["py"]),
            pz=flat(mom["pz"]),
            e=flat(mom["e"]),
        )

    @classmethod
    def from_events(cls, events: Iterable[Any]) -> EventBlock:
        """The same arrays from Pythia event records read particle by particle (for tests and small inputs)."""
        rows: list[tuple[float, ...]] = []
        counts = []
        for event in events:
            rows += [(q.id(), q.status(), q.mother1(), q.mother2(), q.px(), q.py(), q.pz(), q.e()) for q in event]
            counts.append(event.size())
        arr = np.array(rows, dtype=np.float64).reshape(-1, 8)
        ints = arr[:, :4].astype(np.int32)
        return cls(
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            ints[:, 0],
            ints[:, 1],
            ints[:, 2],
            ints[:, 3],
            *(np.ascontiguousarray(arr[:, k]) for k in range(4, 8)),
        )


@dataclass(frozen=True)
class Selection:
    """What :func:`select_batch` kept of a block: candidates, their events' indices in the block, and how many
    events had a photon passing the pT and eta cuts before isolation."""

    candidates: Candidates
    event_index: np.ndarray
    n_photon_events: int


def select_batch(
    block: EventBlock,
    config: GenerationConfig,
    visible: Callable[[np.ndarray], np.ndarray],
    stage_s: dict[str, float] | None = None,
) -> Selection:
    """The candidate of every event of ``block`` that has one, with numpy over the whole block.

    The rule is :func:`extract_candidate`'s: the highest-pT final-state photon with pT and |eta| inside the cuts
    (the first in record order among equal pT), optionally isolated, with every visible final-state particle in
    the stored window. Events are dropped as early as possible: the photon cuts read only the final-state
    photons; isolation and storage read only the particles of events that still have a candidate.
    ``process`` of the result is left at 0 (the caller knows the process).
    """
    stage = stage_s if stage_s is not None else dict.fromkeys(STAGES, 0.0)
    t0 = time.perf_counter()
    counts = np.diff(block.offsets)
    # 1. photons passing pT and |eta|; each event's leading one
    photons = np.flatnonzero((block.status > 0) & (block.pid == 22))
    pt_g, eta_g, _ = _kinematics(block.px[photons], block.py[photons], block.pz[photons])
    ok = (pt_g > config.photon_pt_min_gev) & (np.abs(eta_g) < config.photon_abs_eta_max)
    photons, pt_g = photons[ok], pt_g[ok]
    owner_g = np.searchsorted(block.offsets, photons, side="right") - 1
    order = np.lexsort((-pt_g, owner_g))  # by event, then pT descending; stable: record order among ties
    photons, owner_g = photons[order], owner_g[order]
    lead = np.ones(len(photons), dtype=bool)
    lead[1:] = owner_g[1:] != owner_g[:-1]
    cand, events = photons[lead], owner_g[lead]
    n_photon_events = len(events)
    t1 = time.perf_counter()
    stage["photon_filter"] += t1 - t0
    # 2. the final-state particles of those events, relative to their candidate
    rows, owner = _rows_of(block.offsets[events], counts[events])
    rows, owner = rows[block.status[rows] > 0], owner[block.status[rows] > 0]
    pt, eta, phi = _kinematics(block.px[rows], block.py[rows], block.pz[rows])
    c_pt, c_eta, c_phi = _kinematics(block.px[cand], block.py[cand], block.pz[cand])
    d_eta = eta - c_eta[owner]
    d_phi = wrap_phi(phi - c_phi[owner])
    vis = visible(block.pid[rows])
    if config.isolation_cone > 0:
        dr = np.hypot(d_eta, d_phi)
        ring = vis & (dr > config.isolation_core) & (dr < config.isolation_cone) & (rows != cand[owner])
        iso = np.bincount(owner, weights=np.where(ring, pt, 0.0), minlength=len(cand))
        keep = iso < config.isolation_max_gev + config.isolation_max_rel * c_pt
        if not keep.all():
            renumber = np.cumsum(keep) - 1
            on = keep[owner]
            rows, owner, pt, d_eta, d_phi, vis = rows[on], renumber[owner[on]], pt[on], d_eta[on], d_phi[on], vis[on]
            cand, events, c_pt, c_eta, c_phi = cand[keep], events[keep], c_pt[keep], c_eta[keep], c_phi[keep]
    t2 = time.perf_counter()
    stage["isolation"] += t2 - t1
    # 3. origin of each candidate kept, and the stored particles
    hw = config.store_half_width
    near = vis & (np.abs(d_eta) <= hw) & (np.abs(d_phi) <= hw)
    starts = block.offsets[events]
    origins = [_origin_in_block(block, int(b), int(c - b)) for b, c in zip(starts, cand, strict=True)]
    origin = np.array([o for o, _ in origins], dtype=np.int8)
    pid = block.pid[rows[near]]
    apid = np.abs(pid)
    kind = np.where((apid == 22) | (apid == 11), KIND_EM, np.where(apid == 13, KIND_MUON, KIND_HADRON))
    n_near = np.bincount(owner[near], minlength=len(cand))
    candidates = Candidates(
        pt=c_pt,
        eta=c_eta,
        phi=c_phi,
        e=block.e[cand].astype(np.float64),
        label=(origin == ORIGIN_HARD).astype(np.int8),
        origin=origin,
        mother_id=np.array([m for _, m in origins], dtype=np.int32),
        process=np.zeros(len(cand), np.int8),
        offsets=np.concatenate([[0], np.cumsum(n_near)]).astype(np.int64),
        p_d_eta=d_eta[near].astype(np.float32),
        p_d_phi=d_phi[near].astype(np.float32),
        p_e=block.e[rows[near]].astype(np.float32),
        p_kind=kind.astype(np.int8),
        p_pid=pid.astype(np.int32),
    )
    stage["store"] += time.perf_counter() - t2
    return Selection(candidates, events.astype(np.int64), n_photon_events)


def _kinematics(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pT, eta (+-inf along the beam) and phi."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.sign(pz) * np.inf)
    return pt, eta, np.arctan2(py, px)


def _rows_of(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``starts[k] : starts[k] + counts[k]`` for every k, concatenated, and the k of each row."""
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return (np.repeat(starts - first, counts) + np.arange(total)).astype(np.int64), owner


def _origin_in_block(block: EventBlock, start: int, i: int) -> tuple[int, int]:
    """:func:`photon_origin` of entry ``i`` of the event starting at row ``start`` of ``block``."""
    return photon_origin(_BlockEvent(block, start), i)


class _BlockEvent:
    """One event of an :class:`EventBlock` with the accessors :func:`photon_origin` reads, ``iTopCopyId``
    included (the rule of Pythia's ``Particle::iTopCopyId``, checked against it in the tests)."""

    def __init__(self, block: EventBlock, start: int) -> None:
        self.block, self.start = block, start

    def __getitem__(self, i: int) -> _BlockParticle:
        return _BlockParticle(self, i)


class _BlockParticle:
    def __init__(self, event: _BlockEvent, i: int) -> None:
        self.event, self.i = event, i
        self.row = event.start + i

    def id(self) -> int:
        return int(self.event.block.pid[self.row])

    def status(self) -> int:
        return int(self.event.block.status[self.row])

    def mother1(self) -> int:
        return int(self.event.block.mother1[self.row])

    def iTopCopyId(self) -> int:
        return top_copy_id(self.event.block, self.event.start, self.i)


def top_copy_id(block: EventBlock, start: int, i: int) -> int:
    """The first entry of the chain of same-id copies that ends at entry ``i`` (within the event at ``start``).

    Walk up through the mothers: a particle with exactly one mother of its own id is a copy of it; the walk
    stops at a particle with no mother of its id, or with several. The mothers of an entry are the range
    ``mother1 .. mother2`` when ``mother2`` is above ``mother1``, else ``mother1`` and ``mother2`` (those
    above 0). For photons this is what Pythia's ``Particle::iTopCopyId`` returns (checked against it on every
    photon of generated events in the tests); for partons entering hadronisation (status 71-73) Pythia's
    differs, and those are never candidates.
    """
    pid, m1s, m2s = block.pid, block.mother1, block.mother2
    own = int(pid[start + i])
    while True:
        m1, m2 = int(m1s[start + i]), int(m2s[start + i])
        mothers = list(range(m1, m2 + 1)) if m2 > m1 > 0 else [m for m in (m1, m2) if m > 0]
        same = sorted({m for m in mothers if int(pid[start + m]) == own})
        if len(same) != 1:
            return i
        i = same[0]


def extract_candidate(event: Any, config: GenerationConfig) -> dict[str, Any] | None:
    """The photon candidate of one Pythia event and the visible particles around it, or ``None``.

    The per-event form of :func:`select_batch` (one accessor call per particle and field, about 1 ms an event
    at pTHat 60 GeV): the reference the block path is tested against.
    """
    finals = [(j, q.id(), q.px(), q.py(), q.pz(), q.e(), q.isVisible()) for j, q in enumerate(event) if q.isFinal()]
    if not finals:
        return None
    arr = np.array(finals, dtype=np.float64)
    index, pid, px, py, pz, e, visible = arr.T
    pt, eta, phi = _kinematics(px, py, pz)
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


def candidates_from_rows(rows: list[dict[str, Any]]) -> Candidates:
    """Candidates from :func:`extract_candidate` rows (each with a ``process`` code added)."""
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
    stats = GenerationStats(workers=workers, pythia_version=pythia_version())
    started = time.perf_counter()
    results = []
    for done, result in enumerate(map_jobs(run_job, jobs, workers), start=1):
        results.append(result)
        stats.add(result)
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
        stats.add(result)
        if progress is not None:
            progress(result, done, len(gun.GUN_PROCESSES))
    stats.wall_s = time.perf_counter() - started
    return concat([r.candidates for r in results]), stats


def map_jobs(fn: Callable[[Job], JobResult], jobs: list[Job], workers: int) -> Iterable[JobResult]:
    """``fn`` over ``jobs`` in ``workers`` processes (1: in this process), results in job order.

    ``fn`` must be picklable (a module-level function, or a ``functools.partial`` of one).
    """
    if workers == 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    # spawn, not fork: the parent may hold torch's thread pools, which fork does not copy safely.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        yield from pool.map(fn, jobs)


def pythia_version() -> str:
    """The installed Pythia bindings' version (``pythia8mc`` wheel or a ``pythia8`` build), or ``"unknown"``."""
    for dist in ("pythia8mc", "pythia8"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"
