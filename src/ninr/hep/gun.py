"""A particle gun: single photons against pi0 -> gamma gamma (and eta -> gamma gamma), without Pythia.

The single-particle version of the photon study (photon against pi0 showers at matched pT, as in Frid and
Barak, arXiv 2511.10533, with the COCOA calorimeter): every event is one particle shot from the
interaction point, so the only difference between the classes is the shower shape of one photon against
that of a collimated photon pair. The output is a :class:`~ninr.hep.events.Candidates` set that goes
through the same calorimeter and detector shift as Pythia events.

**Kinematics.** Each class draws its particles from the same law (matched spectra): pT with density
proportional to pT^-``pt_power`` on [``pt_min_gev``, ``pt_max_gev``] (0: uniform), |eta| uniform on
[``abs_eta_min``, ``abs_eta_max``] with a random sign, phi uniform on [-pi, pi).

**Signal** (label 1): one photon; the candidate axis is the photon, its one particle sits at (0, 0).

**Background** (label 0): a meson of mass m (:data:`MESONS`) decayed to two photons, exactly: in the
meson rest frame the photons are back to back with energy m/2 along a direction isotropic on the sphere
(cos theta* uniform on [-1, 1], phi* uniform), then boosted to the lab along the meson's momentum p
(energy E). With c = cos theta* measured from the boost axis, the lab photons are

    E_1,2 = (m^2 / (E + p) + p (1 +- c)) / 2 = (E +- p c) / 2
    p_par 1,2 = (p (1 +- c) +- c m^2 / (E + p)) / 2 = (p +- E c) / 2,   p_perp 1,2 = +- (m / 2) sqrt(1 - c^2)

(the boost written with E - p = m^2 / (E + p), a sum of positive terms for the energies, which keeps the
soft photon's energy to relative precision when c -> -1). The candidate axis is the meson direction, as a
reconstructed cluster's would be, and each photon is stored as its (d_eta, d_phi) offset from that axis and
its energy. Consequences that the tests check: E_1 + E_2 = E and p_1 + p_2 = p; the pair's invariant mass
is m; the energy fraction z = E_1 / E = (1 + beta c) / 2 is uniform on [(1 - beta) / 2, (1 + beta) / 2];
the opening angle theta satisfies m^2 = 4 E^2 z (1 - z) sin^2(theta / 2), so it is at least
theta_min = 2 arcsin(m / E) (about 2 m / E), and its distribution at fixed E is
P(theta <= t) = sqrt(1 - m^2 / (E^2 sin^2(t / 2))) / beta for t >= theta_min.

**Decays left out.** Every pi0 decays to gamma gamma (98.823% of pi0 decays; the Dalitz decay
e+ e- gamma, 1.174%, is left out) and every eta to gamma gamma (39.36% of eta decays; the other 60.6%,
mostly 3 pi0, pi+ pi- pi0 and pi+ pi- gamma, are left out), so the background is "pi0 -> gamma gamma"
and "eta -> gamma gamma" showers, not the full meson decay tables. The branching ratios are stored in
:data:`MESONS` for a user who wants to weight the two.

**Candidate fields.** ``label`` 1 for the photon, 0 for a meson; ``origin`` ``ORIGIN_HARD`` for the
photon (so label = [origin is hard], as for Pythia events) and ``ORIGIN_DECAY`` for a meson's photons;
``mother_id`` names the particle the gun shot by its PDG id (22, 111 or 221); ``process``
``PROCESS_SIGNAL`` or ``PROCESS_BACKGROUND``.

**Randomness.** Every draw comes from the ``numpy.random.Generator`` passed in; :func:`process_rng` derives
one per process from ``(seed, "gun", process)``, so the photons do not change when the number of mesons
does, and the same config gives the same candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ninr.errors import (
    check_choice,
    check_finite,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    fail,
)
from ninr.hep.events import (
    KIND_EM,
    ORIGIN_DECAY,
    ORIGIN_HARD,
    PROCESS_BACKGROUND,
    PROCESS_SIGNAL,
    Candidates,
    concat,
)
from ninr.rng import derive_seed

PDG_PHOTON, PDG_PI0, PDG_ETA = 22, 111, 221

# Particle Data Group, Review of Particle Physics (S. Navas et al., Phys. Rev. D 110, 030001 (2024)),
# listings of the pi0 (node S009) and eta (node S014): masses and two-photon branching fractions.
PI0_MASS_GEV = 0.1349768
"""pi0 mass: 134.9768 +- 0.0005 MeV (PDG 2024)."""
ETA_MASS_GEV = 0.547862
"""eta mass: 547.862 +- 0.017 MeV (PDG 2024)."""
PI0_BR_GAMMA_GAMMA = 0.98823
"""Branching fraction pi0 -> gamma gamma: (98.823 +- 0.034)% (PDG 2024)."""
ETA_BR_GAMMA_GAMMA = 0.3936
"""Branching fraction eta -> gamma gamma: (39.36 +- 0.18)% (PDG 2024)."""


@dataclass(frozen=True)
class Meson:
    """A neutral meson the gun decays to two photons."""

    name: str
    pdg_id: int
    mass_gev: float
    br_gamma_gamma: float


MESONS = {
    "pi0": Meson("pi0", PDG_PI0, PI0_MASS_GEV, PI0_BR_GAMMA_GAMMA),
    "eta": Meson("eta", PDG_ETA, ETA_MASS_GEV, ETA_BR_GAMMA_GAMMA),
}
"""The mesons the gun knows, by name (only their gamma gamma decay is simulated)."""

GUN_PROCESSES = ("signal", "background")


@dataclass(frozen=True)
class GunConfig:
    """The particle gun: how many photons and mesons, and the law of their kinematics.

    In a study file it is the ``[generation]`` table with ``source = "gun"``; the field names of the
    counts and the seed are those of :class:`~ninr.hep.config.GenerationConfig`, so the ``ninr hep
    generate`` overrides apply to both (an "event" of the gun is one particle and gives one candidate).

    Attributes:
        source: always ``"gun"`` (tells a stored config from a Pythia one).
        n_signal_events: single photons shot (label 1).
        n_background_events: mesons shot and decayed to two photons (label 0).
        pt_min_gev: lowest pT of a shot particle (both classes).
        pt_max_gev: highest pT (equal to ``pt_min_gev``: a fixed pT).
        pt_power: pT density proportional to pT^-pt_power on [pt_min_gev, pt_max_gev]; 0 is uniform.
        abs_eta_min: |eta| is uniform on [abs_eta_min, abs_eta_max], with a random sign.
        abs_eta_max: see ``abs_eta_min`` (2.37: the ATLAS precision-calorimeter acceptance).
        mesons: names from :data:`MESONS` that make the background.
        meson_fractions: the share of each of ``mesons`` (each background particle is drawn from it);
            empty: equal shares.
        seed: the seed each process's generator derives from (:func:`process_rng`).
    """

    source: str = "gun"
    n_signal_events: int = 2000
    n_background_events: int = 2000
    pt_min_gev: float = 20.0
    pt_max_gev: float = 60.0
    pt_power: float = 0.0
    abs_eta_min: float = 0.0
    abs_eta_max: float = 2.37
    mesons: tuple[str, ...] = ("pi0",)
    meson_fractions: tuple[float, ...] = ()
    seed: int = 1

    def __post_init__(self) -> None:
        check_choice("source", self.source, ("gun",))
        check_nonneg_int("n_signal_events", self.n_signal_events)
        check_nonneg_int("n_background_events", self.n_background_events)
        check_positive("pt_min_gev", self.pt_min_gev)
        if check_finite("pt_max_gev", self.pt_max_gev) < self.pt_min_gev:
            raise fail("pt_max_gev", f"at least pt_min_gev={self.pt_min_gev}", self.pt_max_gev)
        check_finite("pt_power", self.pt_power)
        check_nonneg("abs_eta_min", self.abs_eta_min)
        if check_finite("abs_eta_max", self.abs_eta_max) < self.abs_eta_min:
            raise fail("abs_eta_max", f"at least abs_eta_min={self.abs_eta_min}", self.abs_eta_max)
        if not isinstance(self.mesons, tuple) or not self.mesons or len(set(self.mesons)) != len(self.mesons):
            raise fail("mesons", f"a non-empty list of distinct names from {list(MESONS)}", self.mesons)
        for name in self.mesons:
            check_choice("mesons", name, MESONS)
        fractions = self.meson_fractions
        if not isinstance(fractions, tuple):
            raise fail("meson_fractions", "a list of numbers", fractions)
        if fractions:
            if len(fractions) != len(self.mesons):
                raise fail("meson_fractions", f"{len(self.mesons)} numbers, one per meson, or empty", fractions)
            for f in fractions:
                check_nonneg("meson_fractions", f)
            if abs(sum(fractions) - 1.0) > 1e-9:
                raise fail("meson_fractions", "numbers summing to 1", fractions)
        check_nonneg_int("seed", self.seed)

    @property
    def fractions(self) -> tuple[float, ...]:
        """The share of each meson (equal shares when ``meson_fractions`` is empty)."""
        return self.meson_fractions or tuple(1.0 / len(self.mesons) for _ in self.mesons)


def process_rng(config: GunConfig, process: str) -> np.random.Generator:
    """The generator of one process (``"signal"`` or ``"background"``), derived from ``config.seed``."""
    check_choice("process", process, GUN_PROCESSES)
    return np.random.default_rng(derive_seed(config.seed, "gun", process))


def sample_pt(n: int, pt_min: float, pt_max: float, power: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws with density proportional to pT^-power on [pt_min, pt_max], by the inverse CDF (float64)."""
    u = rng.random(n)
    if pt_max == pt_min:
        return np.full(n, float(pt_min))
    if power == 1.0:
        return pt_min * (pt_max / pt_min) ** u
    k = 1.0 - power
    lo, hi = pt_min**k, pt_max**k
    return (lo + u * (hi - lo)) ** (1.0 / k)


def sample_direction(
    n: int, abs_eta_min: float, abs_eta_max: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` directions: |eta| uniform on [abs_eta_min, abs_eta_max] with a random sign, phi uniform on [-pi, pi)."""
    abs_eta = abs_eta_min + rng.random(n) * (abs_eta_max - abs_eta_min)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    phi = rng.random(n) * (2 * math.pi) - math.pi
    return sign * abs_eta, phi


@dataclass(frozen=True)
class TwoPhotons:
    """Two-photon decays in the lab, float64.

    Attributes:
        energy: (N, 2) photon energies.
        momentum: (N, 2, 3) photon momenta (px, py, pz).
        cos_theta_star: (N,) cosine of photon 1's rest-frame angle to the boost axis.
        meson_energy: (N,) the mesons' lab energies.
        meson_momentum: (N, 3) the mesons' lab momenta.
    """

    energy: np.ndarray
    momentum: np.ndarray
    cos_theta_star: np.ndarray
    meson_energy: np.ndarray
    meson_momentum: np.ndarray


def decay_to_two_photons(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray | float, rng: np.random.Generator
) -> TwoPhotons:
    """Decay mesons of the given lab kinematics and mass isotropically to two photons (module docstring).

    Draws cos theta* then phi* (each ``len(pt)`` uniforms) from ``rng``.
    """
    pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi))
    m = np.broadcast_to(np.asarray(mass, dtype=np.float64), pt.shape)
    n = len(pt)
    c = rng.random(n) * 2.0 - 1.0
    phi_star = rng.random(n) * (2 * math.pi)
    p = pt * np.cosh(eta)
    e = np.sqrt(p * p + m * m)
    slack = m * m / (e + p)  # E - p, without the cancellation
    s = np.sqrt((1.0 - c) * (1.0 + c))  # sin theta*
    energy = 0.5 * np.stack([slack + p * (1 + c), slack + p * (1 - c)], axis=1)
    p_par = 0.5 * np.stack([p * (1 + c) + c * slack, p * (1 - c) - c * slack], axis=1)
    p_perp = 0.5 * m * s
    # orthonormal frame: n along the meson, e_theta and e_phi across it
    cos_phi, sin_phi = np.cos(phi), np.sin(phi)
    sin_t, cos_t = 1.0 / np.cosh(eta), np.tanh(eta)
    axis = np.stack([sin_t * cos_phi, sin_t * sin_phi, cos_t], axis=1)
    e_theta = np.stack([cos_t * cos_phi, cos_t * sin_phi, -sin_t], axis=1)
    e_phi = np.stack([-sin_phi, cos_phi, np.zeros_like(phi)], axis=1)
    across = p_perp[:, None] * (np.cos(phi_star)[:, None] * e_theta + np.sin(phi_star)[:, None] * e_phi)
    momentum = p_par[:, :, None] * axis[:, None, :] + np.stack([across, -across], axis=1)
    return TwoPhotons(energy, momentum, c, e, p[:, None] * axis)


def eta_phi(momentum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pseudorapidity and azimuth of momenta ``(..., 3)`` (pT floored at 1e-300: finite even along the beam)."""
    px, py, pz = momentum[..., 0], momentum[..., 1], momentum[..., 2]
    pt = np.maximum(np.hypot(px, py), 1e-300)
    return np.arcsinh(pz / pt), np.arctan2(py, px)


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def photon_candidates(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> Candidates:
    """Single photons as candidates (label 1): one particle each, on the candidate axis."""
    n = len(pt)
    pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi))
    e = pt * np.cosh(eta)
    return Candidates(
        pt=pt,
        eta=eta,
        phi=phi,
        e=e,
        label=np.ones(n, np.int8),
        origin=np.full(n, ORIGIN_HARD, np.int8),
        mother_id=np.full(n, PDG_PHOTON, np.int32),
        process=np.full(n, PROCESS_SIGNAL, np.int8),
        offsets=np.arange(n + 1, dtype=np.int64),
        p_d_eta=np.zeros(n, np.float32),
        p_d_phi=np.zeros(n, np.float32),
        p_e=e.astype(np.float32),
        p_kind=np.full(n, KIND_EM, np.int8),
        p_pid=np.full(n, PDG_PHOTON, np.int32),
    )


def meson_candidates(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, meson: np.ndarray, rng: np.random.Generator
) -> Candidates:
    """Mesons decayed to two photons as candidates (label 0): the axis is the meson, two photons around it.

    ``meson`` holds a name from :data:`MESONS` per row (a string, or an array of them).
    """
    n = len(pt)
    pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi))
    names = np.broadcast_to(np.asarray(meson, dtype=str), pt.shape)
    table = [MESONS[check_choice("meson", str(name), MESONS)] for name in np.unique(names)]
    mass = np.zeros(n)
    pdg_id = np.zeros(n, np.int32)
    for species in table:
        rows = names == species.name
        mass[rows], pdg_id[rows] = species.mass_gev, species.pdg_id
    decay = decay_to_two_photons(pt, eta, phi, mass, rng)
    photon_eta, photon_phi = eta_phi(decay.momentum)
    return Candidates(
        pt=pt,
        eta=eta,
        phi=phi,
        e=decay.meson_energy,
        label=np.zeros(n, np.int8),
        origin=np.full(n, ORIGIN_DECAY, np.int8),
        mother_id=pdg_id,
        process=np.full(n, PROCESS_BACKGROUND, np.int8),
        offsets=np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        p_d_eta=(photon_eta - eta[:, None]).reshape(-1).astype(np.float32),
        p_d_phi=wrap_phi(photon_phi - phi[:, None]).reshape(-1).astype(np.float32),
        p_e=decay.energy.reshape(-1).astype(np.float32),
        p_kind=np.full(2 * n, KIND_EM, np.int8),
        p_pid=np.full(2 * n, PDG_PHOTON, np.int32),
    )


def shoot(config: GunConfig, process: str, rng: np.random.Generator) -> Candidates:
    """The candidates of one process: ``n_signal_events`` photons or ``n_background_events`` mesons.

    Draw order: pT, then |eta|, its sign and phi, then (background) the meson species and the decay angles.
    """
    check_choice("process", process, GUN_PROCESSES)
    signal = process == "signal"
    n = config.n_signal_events if signal else config.n_background_events
    pt = sample_pt(n, config.pt_min_gev, config.pt_max_gev, config.pt_power, rng)
    eta, phi = sample_direction(n, config.abs_eta_min, config.abs_eta_max, rng)
    if signal:
        return photon_candidates(pt, eta, phi)
    index = rng.choice(len(config.mesons), size=n, p=np.asarray(config.fractions, dtype=np.float64))
    return meson_candidates(pt, eta, phi, np.asarray(config.mesons, dtype=str)[index], rng)


def gun_candidates(config: GunConfig) -> Candidates:
    """Every candidate of ``config``: the photons, then the mesons, each from its :func:`process_rng`."""
    return concat([shoot(config, process, process_rng(config, process)) for process in GUN_PROCESSES])
