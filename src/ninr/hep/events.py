"""Photon candidates and the particles around them, as flat numpy arrays.

A :class:`Candidates` holds one row per photon candidate and, ragged, the visible final-state particles
near it (the candidate itself included): particle ``j`` of candidate ``i`` is row
``offsets[i] + j`` of the particle arrays. Positions are relative to the candidate (``d_eta``,
``d_phi`` wrapped to [-pi, pi)). This is what generation writes and what the calorimeter reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ninr.errors import DataError

# Particle kinds: how a particle showers in the calorimeter.
KIND_EM, KIND_HADRON, KIND_MUON = 0, 1, 2
KIND_NAMES = ("em", "hadron", "muon")

# Origin of a photon candidate, read from the event record (see ninr.hep.generate.photon_origin).
ORIGIN_OTHER, ORIGIN_HARD, ORIGIN_MPI, ORIGIN_ISR, ORIGIN_FSR, ORIGIN_DECAY = 0, 1, 2, 3, 4, 5
ORIGIN_NAMES = ("other", "hard", "mpi", "isr", "fsr", "decay")

PROCESS_BACKGROUND, PROCESS_SIGNAL = 0, 1
CANDIDATE_FIELDS = ("pt", "eta", "phi", "e", "label", "origin", "mother_id", "process")
PARTICLE_FIELDS = ("d_eta", "d_phi", "e", "kind", "pid")


@dataclass(frozen=True, eq=False)
class Candidates:
    """Photon candidates (N rows) with their nearby particles (P rows, ragged by ``offsets``).

    Attributes:
        pt, eta, phi, e: the candidate photon's kinematics (GeV, float64).
        label: 1 for a prompt photon (produced in the hard process), else 0 (int8).
        origin: one of ``ORIGIN_NAMES`` by index (int8).
        mother_id: PDG id of the mother of the photon's top copy (int32), e.g. 111 for a pi0 decay.
        process: ``PROCESS_SIGNAL`` for events from the signal processes, ``PROCESS_BACKGROUND`` otherwise.
        offsets: int64 (N + 1,), particles of candidate i are rows ``offsets[i]:offsets[i + 1]``.
        p_d_eta, p_d_phi: particle positions relative to the candidate (float32).
        p_e: particle energies in GeV (float32).
        p_kind: ``KIND_EM`` (photon, electron), ``KIND_HADRON`` or ``KIND_MUON`` (int8).
        p_pid: PDG id (int32).
    """

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    e: np.ndarray
    label: np.ndarray
    origin: np.ndarray
    mother_id: np.ndarray
    process: np.ndarray
    offsets: np.ndarray
    p_d_eta: np.ndarray
    p_d_phi: np.ndarray
    p_e: np.ndarray
    p_kind: np.ndarray
    p_pid: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.pt)
        for name in CANDIDATE_FIELDS:
            if len(getattr(self, name)) != n:
                raise DataError(f"candidates: `{name}` has {len(getattr(self, name))} rows, `pt` has {n}")
        if len(self.offsets) != n + 1 or (n >= 0 and len(self.offsets) and self.offsets[0] != 0):
            raise DataError(f"candidates: `offsets` must have {n + 1} entries starting at 0")
        p = int(self.offsets[-1])
        for name in PARTICLE_FIELDS:
            if len(getattr(self, f"p_{name}")) != p:
                raise DataError(f"candidates: `p_{name}` has {len(getattr(self, f'p_{name}'))} rows, offsets say {p}")
        if np.any(np.diff(self.offsets) < 0):
            raise DataError("candidates: `offsets` must be non-decreasing")

    def __len__(self) -> int:
        return len(self.pt)

    @property
    def num_particles(self) -> np.ndarray:
        """Particles per candidate (N,)."""
        return np.diff(self.offsets)

    @property
    def particle_owner(self) -> np.ndarray:
        """The candidate index of each particle (P,)."""
        return np.repeat(np.arange(len(self)), self.num_particles)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by field name (for writing)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def select(self, index: np.ndarray | Sequence[int]) -> Candidates:
        """The candidates at ``index`` (in that order) with their particles."""
        idx = np.asarray(index, dtype=np.int64)
        counts = self.num_particles[idx]
        starts = self.offsets[:-1][idx]
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        fields = {name: getattr(self, name)[idx] for name in CANDIDATE_FIELDS}
        fields |= {f"p_{name}": getattr(self, f"p_{name}")[rows] for name in PARTICLE_FIELDS}
        return Candidates(offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), **fields)


def empty() -> Candidates:
    """A set with no candidates."""
    f64, i8, i32, f32 = np.float64, np.int8, np.int32, np.float32
    z = np.zeros
    return Candidates(
        z(0, f64),
        z(0, f64),
        z(0, f64),
        z(0, f64),
        z(0, i8),
        z(0, i8),
        z(0, i32),
        z(0, i8),
        np.zeros(1, np.int64),
        z(0, f32),
        z(0, f32),
        z(0, f32),
        z(0, i8),
        z(0, i32),
    )


def concat(parts: Sequence[Candidates]) -> Candidates:
    """All candidates of ``parts`` in order."""
    parts = [p for p in parts if len(p)] or [empty()]
    fields = {name: np.concatenate([getattr(p, name) for p in parts]) for name in CANDIDATE_FIELDS}
    fields |= {f"p_{n}": np.concatenate([getattr(p, f"p_{n}") for p in parts]) for n in PARTICLE_FIELDS}
    counts = np.concatenate([p.num_particles for p in parts])
    return Candidates(offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), **fields)


def from_arrays(arrays: dict[str, np.ndarray]) -> Candidates:
    """Inverse of :meth:`Candidates.arrays`; a missing array is a :class:`DataError`."""
    names = [f.name for f in dataclasses.fields(Candidates)]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataError(f"candidates: missing arrays {missing}")
    return Candidates(**{n: np.asarray(arrays[n]) for n in names})


def toy_candidates(n: int, seed: int = 0) -> Candidates:
    """A small labelled set without Pythia, for tests and examples.

    Even rows are background: a photon with a close partner photon holding 60% of its energy and a
    soft hadron nearby (a pi0 in a jet); odd rows are signal: one isolated photon. Energies 25-60 GeV.
    """
    rng = np.random.default_rng(seed)
    label = (np.arange(n) % 2).astype(np.int8)
    rows: list[tuple[float, float, float, int, int]] = []
    counts = []
    for lab in label:
        e = float(rng.uniform(25, 60))
        part = [(0.0, 0.0, e, KIND_EM, 22)]
        if not lab:
            part.append((float(rng.normal(0, 0.02)), float(rng.normal(0, 0.02)), 0.6 * e, KIND_EM, 22))
            part.append(
                (float(rng.normal(0, 0.08)), float(rng.normal(0, 0.08)), float(rng.uniform(2, 15)), KIND_HADRON, 211)
            )
        rows += part
        counts.append(len(part))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return Candidates(
        pt=rng.uniform(20, 60, n),
        eta=rng.uniform(-2, 2, n),
        phi=rng.uniform(-3, 3, n),
        e=rng.uniform(25, 90, n),
        label=label,
        origin=np.where(label == 1, ORIGIN_HARD, ORIGIN_DECAY).astype(np.int8),
        mother_id=np.where(label == 1, 21, 111).astype(np.int32),
        process=label.copy(),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        p_d_eta=arr[:, 0].astype(np.float32),
        p_d_phi=arr[:, 1].astype(np.float32),
        p_e=arr[:, 2].astype(np.float32),
        p_kind=arr[:, 3].astype(np.int8),
        p_pid=arr[:, 4].astype(np.int32),
    )
