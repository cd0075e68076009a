"""Every constant of the photon study as a named, documented field of a frozen dataclass.

Three groups: :class:`GenerationConfig` (Pythia 8 processes, seeds and candidate cuts),
:class:`DetectorConfig` (the fast calorimeter) and :class:`DetectorShift` (how "data" differs from
"simulation"). :class:`StudyConfig` in :mod:`ninr.hep.study` gathers them with the training settings;
TOML files map onto these fields one to one (``configs/hep-quick.toml``).

Units: energies in GeV, angles in units of pseudorapidity eta and azimuth phi (radians).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ninr.errors import (
    ConfigError,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
    check_probability,
    did_you_mean,
    fail,
)
from ninr.rng import derive_seed

# Settings that GenerationConfig owns through named fields; user setting strings may not set them.
_RESERVED_SETTINGS = ("Beams:eCM", "PhaseSpace:pTHatMin", "Random:setSeed", "Random:seed")


@dataclass(frozen=True)
class GenerationConfig:
    """Pythia 8 event generation and photon-candidate selection.

    Attributes:
        ecm_gev: proton-proton centre-of-mass energy (``Beams:eCM``).
        n_signal_events: events generated with the signal (prompt-photon) processes.
        n_background_events: events generated with the background (QCD dijet) processes. Only a few percent
            of dijet events hold a photon above ``photon_pt_min_gev`` (mostly from a pi0 decay), so this is
            usually much larger than ``n_signal_events``.
        signal_settings: Pythia setting strings that switch on the signal processes.
        background_settings: Pythia setting strings that switch on the background processes.
        common_settings: extra Pythia setting strings for both (e.g. ``"PartonLevel:MPI = off"``, which makes
            generation about 4x faster and drops the underlying event).
        signal_pthat_min_gev: ``PhaseSpace:pTHatMin`` of the signal processes. The initial-state shower lets a
            photon carry more pT than the hard process: at 20 GeV (the default, kept so existing files stay
            valid) about a third of the prompt candidates above a 20 GeV cut are missing, most within 5 GeV of
            it; ``photon_pt_min_gev - 10`` keeps all but about 0.2% (measured, docs/hep.md section 1).
        background_pthat_min_gev: ``PhaseSpace:pTHatMin`` of the background processes; higher than the
            photon threshold so that a jet fragment can pass it, and chosen so the candidate pT spectra of
            the two classes are alike (60 GeV against 20 GeV gives medians of 25.4 and 27.8 GeV).
        photon_pt_min_gev: a candidate is the highest-pT final-state photon with pT above this ...
        photon_abs_eta_max: ... and |eta| below this (2.37: the ATLAS precision-calorimeter acceptance).
        isolation_cone: if > 0, a candidate must be isolated: the scalar pT sum of the other visible
            final-state particles with isolation_core < Delta R < isolation_cone around it must stay below
            ``isolation_max_gev + isolation_max_rel * pT`` (else the event has no candidate). Prompt photons
            pass about 99% of the time, photons in jets a few percent: the hard, realistic task. 0: off.
        isolation_core: inner radius left out of the isolation sum (the photon's own cluster, which holds
            the partner photon of a pi0 decay).
        isolation_max_rel: the isolation threshold's part proportional to the candidate's pT.
        isolation_max_gev: the isolation threshold's constant part.
        store_half_width: visible final-state particles with |d eta| and |d phi| to the candidate up to this
            are stored with it; the calorimeter window plus shower tails must fit inside.
        seed: the seed every Pythia job's seed derives from (``Random:seed``, one per job).
        events_per_job: events per independent Pythia job (the unit of parallel work); the jobs and their
            seeds do not depend on the number of worker processes, so the output does not either.
    """

    ecm_gev: float = 13000.0
    n_signal_events: int = 4000
    n_background_events: int = 40000
    signal_settings: tuple[str, ...] = ("PromptPhoton:all = on",)
    background_settings: tuple[str, ...] = ("HardQCD:all = on",)
    common_settings: tuple[str, ...] = ()
    signal_pthat_min_gev: float = 20.0
    background_pthat_min_gev: float = 60.0
    photon_pt_min_gev: float = 20.0
    photon_abs_eta_max: float = 2.37
    isolation_cone: float = 0.0
    isolation_core: float = 0.05
    isolation_max_rel: float = 0.1
    isolation_max_gev: float = 0.0
    store_half_width: float = 0.4
    seed: int = 1
    events_per_job: int = 2000

    def __post_init__(self) -> None:
        check_positive("ecm_gev", self.ecm_gev)
        check_nonneg_int("n_signal_events", self.n_signal_events)
        check_nonneg_int("n_background_events", self.n_background_events)
        for name in ("signal_settings", "background_settings", "common_settings"):
            _check_settings(name, getattr(self, name))
        check_nonneg("signal_pthat_min_gev", self.signal_pthat_min_gev)
        check_nonneg("background_pthat_min_gev", self.background_pthat_min_gev)
        check_nonneg("photon_pt_min_gev", self.photon_pt_min_gev)
        check_positive("photon_abs_eta_max", self.photon_abs_eta_max)
        for name in ("isolation_cone", "isolation_core", "isolation_max_rel", "isolation_max_gev"):
            check_nonneg(name, getattr(self, name))
        if self.isolation_cone and self.isolation_core >= self.isolation_cone:
            raise fail("isolation_core", f"smaller than isolation_cone={self.isolation_cone}", self.isolation_core)
        check_positive("store_half_width", self.store_half_width)
        check_nonneg_int("seed", self.seed)
        check_positive_int("events_per_job", self.events_per_job)


def _check_settings(name: str, settings: Any) -> None:
    if not isinstance(settings, tuple) or not all(isinstance(s, str) and "=" in s for s in settings):
        raise fail(name, "a list of Pythia setting strings such as 'HardQCD:all = on'", settings)
    for s in settings:
        key = s.split("=", 1)[0].strip()
        if any(key.lower() == r.lower() for r in _RESERVED_SETTINGS):
            raise fail(name, f"free of {', '.join(_RESERVED_SETTINGS)} (set by named fields)", s)


OMITTED_AT_DEFAULT = {"omit_at_default": True}
"""Field metadata: :func:`to_dict` leaves the field out while it holds its default. A setting added this way keeps
the hashes (events files, run ids) of every config that does not use it."""


@dataclass(frozen=True)
class DetectorConfig:
    """The fast calorimeter: geometry, shower shapes, resolution, calibration, noise and pileup.

    Geometry: an ``window_eta x window_phi`` window around the candidate, read out by an electromagnetic
    (EM) layer of ``em_cells x em_cells`` cells and a hadronic (HAD) layer of ``had_cells x had_cells``
    cells (defaults 0.0125 and 0.05 wide, like the ATLAS EM middle layer and tile calorimeter). The image
    has two channels on the EM grid: EM energy, and HAD energy upsampled by nearest neighbour and divided
    by the number of fine cells per coarse cell, so each channel sums to its layer's energy.

    Attributes:
        window_eta: full width of the window in eta.
        window_phi: full width of the window in phi.
        em_cells: EM cells per side.
        had_cells: HAD cells per side; must divide ``em_cells``.
        grid_aligned: place the window edges on the detector's fixed HAD-cell grid nearest to centring the
            candidate (as a real calorimeter would), instead of centring the candidate exactly.
        em_shower_core: lateral shower of photons and electrons (and muons): standard deviation in
            eta/phi of the core Gaussian (about a third of a Moliere radius at the calorimeter face).
        em_shower_halo: standard deviation of the wider halo Gaussian of EM showers.
        em_shower_halo_fraction: fraction of an EM shower's energy in the halo.
        had_shower_core: core standard deviation of hadron showers (both layers).
        had_shower_halo: halo standard deviation of hadron showers.
        had_shower_halo_fraction: fraction of a hadron shower's energy in the halo.
        em_particle_em_fraction: mean fraction of a photon's or electron's energy left in the EM layer.
        em_particle_em_fraction_std: its event-by-event spread (Gaussian, clipped to [0, 1]).
        hadron_em_fraction: mean fraction of a hadron's energy left in the EM layer (the rest in HAD).
        hadron_em_fraction_std: its spread (Gaussian, clipped to [0, 1]): the large longitudinal
            fluctuations of hadron showers.
        muon_em_gev: energy a muon leaves in the EM layer (minimum ionising, capped at its energy).
        muon_had_gev: energy a muon leaves in the HAD layer.
        em_stochastic: a of the EM resolution sigma/E = a/sqrt(E) (+) b/E (+) c, in sqrt(GeV).
        em_noise_term: b of the EM resolution, in GeV (per particle; cell noise is separate).
        em_constant: c of the EM resolution.
        had_stochastic: a of the HAD resolution.
        had_noise_term: b of the HAD resolution.
        had_constant: c of the HAD resolution.
        em_scale: energy scale (calibration) of the EM layer; 1 is perfect.
        had_scale: energy scale of the HAD layer.
        cell_gain_spread: standard deviation of a fixed per-cell gain map 1 + spread * N(0, 1) (non-uniformity).
        gain_seed: seed of that map (a property of the detector, not of an event).
        em_cell_noise_gev: standard deviation of the Gaussian electronic noise of one EM cell.
        had_cell_noise_gev: same for one HAD cell (added before upsampling).
        zero_suppress_sigma: cells with |E| below this many noise standard deviations read 0 (0: off).
        pileup_mu: mean number of extra soft particles per window (Poisson); 0 switches pileup off.
        pileup_mean_gev: mean energy of a pileup particle (exponential spectrum).
        pileup_em_fraction: probability that a pileup particle showers like a photon (else like a hadron).
        cell_noise_correlation: correlation coefficient of the electronic noise of two neighbouring cells (sharing
            a side) of either layer, in [0, 0.5]: each cell's noise is its own Gaussian draw plus ``w`` times those
            of its (up to four) neighbours, rescaled to the cell's noise variance, with ``w`` solving
            2 w / (1 + 4 w^2) = correlation (exact for cells with four neighbours in the window).
        em_crosstalk: fraction of an EM cell's signal read out in each of its (up to four) neighbours, in
            [0, 0.25); the cell keeps the rest, so the layer's energy is conserved. Applied before the gains.
        dead_cell_fraction: fraction of dead cells (both layers): a dead cell reads 0. Which cells are dead is a
            property of the detector: a cell of the fixed (eta, phi) cell grid is dead when a hash of
            ``(dead_cell_seed, layer, eta index, phi index)`` falls below the fraction, so a candidate meets the
            dead cells near its own position, and a larger fraction with the same seed keeps the dead cells of a
            smaller one.
        dead_cell_seed: seed of that map.
    """

    window_eta: float = 0.4
    window_phi: float = 0.4
    em_cells: int = 32
    had_cells: int = 8
    grid_aligned: bool = True
    em_shower_core: float = 0.008
    em_shower_halo: float = 0.025
    em_shower_halo_fraction: float = 0.1
    had_shower_core: float = 0.03
    had_shower_halo: float = 0.08
    had_shower_halo_fraction: float = 0.3
    em_particle_em_fraction: float = 0.98
    em_particle_em_fraction_std: float = 0.01
    hadron_em_fraction: float = 0.3
    hadron_em_fraction_std: float = 0.15
    muon_em_gev: float = 0.3
    muon_had_gev: float = 1.5
    em_stochastic: float = 0.10
    em_noise_term: float = 0.0
    em_constant: float = 0.007
    had_stochastic: float = 0.50
    had_noise_term: float = 0.0
    had_constant: float = 0.03
    em_scale: float = 1.0
    had_scale: float = 1.0
    cell_gain_spread: float = 0.0
    gain_seed: int = 0
    em_cell_noise_gev: float = 0.03
    had_cell_noise_gev: float = 0.1
    zero_suppress_sigma: float = 0.0
    pileup_mu: float = 0.0
    pileup_mean_gev: float = 0.5
    pileup_em_fraction: float = 0.4
    cell_noise_correlation: float = dataclasses.field(default=0.0, metadata=OMITTED_AT_DEFAULT)
    em_crosstalk: float = dataclasses.field(default=0.0, metadata=OMITTED_AT_DEFAULT)
    dead_cell_fraction: float = dataclasses.field(default=0.0, metadata=OMITTED_AT_DEFAULT)
    dead_cell_seed: int = dataclasses.field(default=0, metadata=OMITTED_AT_DEFAULT)

    def __post_init__(self) -> None:
        for name in ("window_eta", "window_phi", "em_shower_core", "em_shower_halo", "had_shower_core"):
            check_positive(name, getattr(self, name))
        check_positive("had_shower_halo", self.had_shower_halo)
        check_positive_int("em_cells", self.em_cells)
        if check_positive_int("had_cells", self.had_cells) > self.em_cells or self.em_cells % self.had_cells:
            raise fail("had_cells", f"a divisor of em_cells={self.em_cells}", self.had_cells)
        for name in ("em_shower_halo_fraction", "had_shower_halo_fraction", "pileup_em_fraction"):
            check_probability(name, getattr(self, name), closed_right=True)
        check_probability("em_particle_em_fraction", self.em_particle_em_fraction, closed_right=True)
        check_probability("hadron_em_fraction", self.hadron_em_fraction, closed_right=True)
        nonneg = (
            "em_particle_em_fraction_std hadron_em_fraction_std muon_em_gev muon_had_gev em_stochastic em_noise_term "
            "em_constant had_stochastic had_noise_term had_constant cell_gain_spread em_cell_noise_gev "
            "had_cell_noise_gev zero_suppress_sigma pileup_mu"
        )
        for name in nonneg.split():
            check_nonneg(name, getattr(self, name))
        check_positive("em_scale", self.em_scale)
        check_positive("had_scale", self.had_scale)
        check_positive("pileup_mean_gev", self.pileup_mean_gev)
        check_nonneg_int("gain_seed", self.gain_seed)
        if not 0 <= self.cell_noise_correlation <= 0.5:
            raise fail("cell_noise_correlation", "a number in [0, 0.5]", self.cell_noise_correlation)
        if not 0 <= self.em_crosstalk < 0.25:
            raise fail("em_crosstalk", "a number in [0, 0.25)", self.em_crosstalk)
        check_probability("dead_cell_fraction", self.dead_cell_fraction, closed_right=True)
        check_nonneg_int("dead_cell_seed", self.dead_cell_seed)
        if not isinstance(self.grid_aligned, bool):
            raise fail("grid_aligned", "true or false", self.grid_aligned)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, H, W)`` of one image: EM and HAD on the EM grid."""
        return (2, self.em_cells, self.em_cells)


@dataclass(frozen=True)
class DetectorShift:
    """How the "data" detector differs from the "simulation" one (:func:`apply_shift`).

    The defaults describe a plausible mismodelled detector; all-neutral values (1, 0) make "data" equal
    to "simulation" apart from its own random draws.

    Attributes:
        energy_scale: multiplies both layers' energy scales (global miscalibration).
        had_scale: further multiplies the HAD layer's scale.
        resolution_factor: multiplies a, b and c of both layers.
        noise_factor: multiplies the cell noise of both layers.
        extra_pileup_mu: added to ``pileup_mu``.
        shower_width_factor: multiplies every lateral shower width (shower shapes mismodelled in simulation,
            as for GEANT4 against data).
        hadron_em_fraction_shift: added to ``hadron_em_fraction`` (clipped to [0, 1]).
        cell_gain_spread: per-cell gain non-uniformity of "data" (replaces the simulation's).
        gain_seed: seed of the "data" gain map.
        extra_constant_term: a constant term c' added in quadrature to the EM constant term (after
            ``resolution_factor``): sigma/E gains c', as the calibration papers measure it on Z -> ee.
        extra_noise_correlation: added to ``cell_noise_correlation`` (coherent noise across neighbours).
        extra_crosstalk: added to ``em_crosstalk``.
        extra_dead_cell_fraction: added to ``dead_cell_fraction`` (same ``dead_cell_seed``: the dead cells of
            "simulation" stay dead, and more join them, as channels fail during data taking).

    Measured ranges of each setting, with their sources, are in docs/hep.md section 3 and
    :data:`SHIFT_RANGES`; :func:`draw_shift` draws a shift from them.
    """

    energy_scale: float = 1.02
    had_scale: float = 1.05
    resolution_factor: float = 1.2
    noise_factor: float = 1.5
    extra_pileup_mu: float = 4.0
    shower_width_factor: float = 1.1
    hadron_em_fraction_shift: float = 0.0
    cell_gain_spread: float = 0.02
    gain_seed: int = 1
    extra_constant_term: float = dataclasses.field(default=0.0, metadata=OMITTED_AT_DEFAULT)
    extra_noise_correlation: float = dataclasses.field(default=0.0, metadata=OMITTED_AT_DEFAULT)
    extra_crosstalk: float = dataclasses.field(default=0.0, metadata=OMITTED_AT_DEFAULT)
    extra_dead_cell_fraction: float = dataclasses.field(default=0.0, metadata=OMITTED_AT_DEFAULT)

    def __post_init__(self) -> None:
        for name in ("energy_scale", "had_scale", "resolution_factor", "shower_width_factor"):
            check_positive(name, getattr(self, name))
        nonneg = (
            "noise_factor extra_pileup_mu cell_gain_spread extra_constant_term extra_noise_correlation "
            "extra_crosstalk extra_dead_cell_fraction"
        )
        for name in nonneg.split():
            check_nonneg(name, getattr(self, name))
        if not -1 <= self.hadron_em_fraction_shift <= 1:
            raise fail("hadron_em_fraction_shift", "a number in [-1, 1]", self.hadron_em_fraction_shift)
        check_nonneg_int("gain_seed", self.gain_seed)


def apply_shift(detector: DetectorConfig, shift: DetectorShift) -> DetectorConfig:
    """The "data" detector: ``detector`` changed as ``shift`` describes."""
    r, w = shift.resolution_factor, shift.shower_width_factor
    return dataclasses.replace(
        detector,
        em_scale=detector.em_scale * shift.energy_scale,
        had_scale=detector.had_scale * shift.energy_scale * shift.had_scale,
        em_stochastic=detector.em_stochastic * r,
        em_noise_term=detector.em_noise_term * r,
        had_stochastic=detector.had_stochastic * r,
        had_noise_term=detector.had_noise_term * r,
        had_constant=detector.had_constant * r,
        em_cell_noise_gev=detector.em_cell_noise_gev * shift.noise_factor,
        had_cell_noise_gev=detector.had_cell_noise_gev * shift.noise_factor,
        pileup_mu=detector.pileup_mu + shift.extra_pileup_mu,
        em_shower_core=detector.em_shower_core * w,
        em_shower_halo=detector.em_shower_halo * w,
        had_shower_core=detector.had_shower_core * w,
        had_shower_halo=detector.had_shower_halo * w,
        hadron_em_fraction=min(max(detector.hadron_em_fraction + shift.hadron_em_fraction_shift, 0.0), 1.0),
        cell_gain_spread=shift.cell_gain_spread,
        gain_seed=shift.gain_seed,
        em_constant=math.hypot(detector.em_constant * r, shift.extra_constant_term),
        cell_noise_correlation=detector.cell_noise_correlation + shift.extra_noise_correlation,
        em_crosstalk=detector.em_crosstalk + shift.extra_crosstalk,
        dead_cell_fraction=detector.dead_cell_fraction + shift.extra_dead_cell_fraction,
    )


SHIFT_EFFECTS: dict[str, tuple[str, ...]] = {
    "energy scale": ("energy_scale", "had_scale"),
    "resolution": ("resolution_factor", "extra_constant_term"),
    "cell noise": ("noise_factor",),
    "noise correlation": ("extra_noise_correlation",),
    "crosstalk": ("extra_crosstalk",),
    "dead cells": ("extra_dead_cell_fraction",),
    "pileup": ("extra_pileup_mu",),
    "shower width": ("shower_width_factor",),
    "hadron EM fraction": ("hadron_em_fraction_shift",),
    "gain non-uniformity": ("cell_gain_spread", "gain_seed"),
}
"""The effects of a :class:`DetectorShift`, each with the fields that make it (every field belongs to one)."""


def neutral_shift(detector: DetectorConfig) -> DetectorShift:
    """The shift under which :func:`apply_shift` returns ``detector`` unchanged."""
    return DetectorShift(
        energy_scale=1.0,
        had_scale=1.0,
        resolution_factor=1.0,
        noise_factor=1.0,
        extra_pileup_mu=0.0,
        shower_width_factor=1.0,
        hadron_em_fraction_shift=0.0,
        cell_gain_spread=detector.cell_gain_spread,
        gain_seed=detector.gain_seed,
    )


def shift_effects(detector: DetectorConfig, shift: DetectorShift) -> dict[str, DetectorShift]:
    """Each effect of ``shift`` alone: for every effect of :data:`SHIFT_EFFECTS` whose fields differ from the
    neutral shift of ``detector``, the neutral shift with only that effect's fields taken from ``shift``."""
    neutral = neutral_shift(detector)
    out = {}
    for effect, names in SHIFT_EFFECTS.items():
        values = {n: getattr(shift, n) for n in names}
        if effect == "gain non-uniformity" and shift.cell_gain_spread == detector.cell_gain_spread == 0:
            continue  # no gains either way: the seed of a map of ones changes nothing
        if any(values[n] != getattr(neutral, n) for n in names):
            out[effect] = dataclasses.replace(neutral, **values)
    return out


SHIFT_RANGES: dict[str, tuple[float, float]] = {
    "energy_scale": (0.99, 1.01),
    "had_scale": (0.97, 1.03),
    "resolution_factor": (1.0, 1.1),
    "extra_constant_term": (0.0, 0.01),
    "noise_factor": (1.0, 1.1),
    "extra_noise_correlation": (0.0, 0.1),
    "extra_crosstalk": (0.0, 0.01),
    "extra_dead_cell_fraction": (0.0, 0.005),
    "extra_pileup_mu": (1.4, 3.8),
    "shower_width_factor": (1.0, 1.05),
    "hadron_em_fraction_shift": (-0.05, 0.05),
    "cell_gain_spread": (0.005, 0.01),
}
"""Ranges of the "data" detector's settings against "simulation", each with its source or its reason in
docs/hep.md section 3 (``extra_pileup_mu`` for a 0.2 x 0.2 window: it scales with the window's area)."""


def draw_shift(seed: int, ranges: Mapping[str, tuple[float, float]] = SHIFT_RANGES, **fixed: Any) -> DetectorShift:
    """A shift with each setting of ``ranges`` drawn uniformly from its range, the rest from ``fixed`` or the defaults.

    Each setting has its own stream, derived from ``(seed, "detector-shift", name)``, so adding a range changes
    no other draw.
    """
    known = {f.name for f in dataclasses.fields(DetectorShift)}
    for name in (*ranges, *fixed):
        if name not in known:
            raise ConfigError(f"DetectorShift has no setting {name!r}{did_you_mean(name, known)}")
    drawn = {
        name: random.Random(derive_seed(seed, "detector-shift", name)).uniform(lo, hi)
        for name, (lo, hi) in ranges.items()
    }
    return DetectorShift(**{**drawn, **fixed})


C = TypeVar("C")


def from_mapping(cls: type[C], data: Mapping[str, Any], section: str) -> C:
    """Build dataclass ``cls`` from a TOML/JSON table; unknown keys are an error with close matches.

    Lists become tuples for tuple-typed fields, so a config read back from JSON equals the original.
    """
    if not isinstance(data, Mapping):
        raise fail(section, "a table of settings", data)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"[{section}] has no setting {key!r}{did_you_mean(key, fields)} (settings: {', '.join(fields)})"
            )
    values = {}
    for key, value in data.items():
        typ = str(fields[key].type)
        values[key] = tuple(value) if typ.startswith("tuple") and isinstance(value, list) else value
    try:
        return cls(**values)
    except TypeError as exc:  # e.g. a nested table where a number belongs
        raise ConfigError(f"[{section}]: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists), nested dataclasses included; a field with
    :data:`OMITTED_AT_DEFAULT` metadata is left out while it holds its default."""
    return json.loads(json.dumps(_plain(obj)))


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get("omit_at_default") and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def config_hash(obj: Any) -> str:
    """The first 16 hex digits of the sha256 of the config's canonical JSON."""
    text = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
