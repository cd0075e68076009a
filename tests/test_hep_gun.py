"""The particle gun: two-body decay kinematics against closed forms, matched spectra, replayability, wiring.

Oracles (ninr.hep.gun's docstring has the formulas): four-momentum conservation, massless photons and the
pair's invariant mass to float precision; the lab energy fraction of photon 1 uniform on
[(1 - beta) / 2, (1 + beta) / 2]; the opening angle at least 2 arcsin(m / E) with the closed-form CDF
sqrt(1 - m^2 / (E^2 sin^2(t / 2))) / beta; the same pT law for both classes.

Statistical bounds come from the sample size, never from the output: a one-sample Kolmogorov-Smirnov
distance D_n <= 1.95 / sqrt(n) and a two-sample one D <= 1.95 sqrt((n + m) / (n m)) (the asymptotic
Kolmogorov critical value sqrt(ln(2 / alpha) / 2) = 1.95 at alpha = 0.001), and a binomial fraction within
5 standard deviations sqrt(p (1 - p) / n) (two-sided 5.7e-7 each). The seeds are fixed, so each check is
deterministic; a correct sampler fails one of them with probability below 0.001 per check.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ninr.errors import ConfigError
from ninr.hep.calorimeter import ideal_detector, simulate
from ninr.hep.config import DetectorConfig, GenerationConfig
from ninr.hep.events import KIND_EM, ORIGIN_DECAY, ORIGIN_HARD, PROCESS_BACKGROUND, PROCESS_SIGNAL
from ninr.hep.generate import generate
from ninr.hep.gun import (
    ETA_MASS_GEV,
    MESONS,
    PI0_MASS_GEV,
    GunConfig,
    decay_to_two_photons,
    gun_candidates,
    meson_candidates,
    process_rng,
    shoot,
)
from ninr.hep.study import StudyConfig, load_study_config, normalised, prepare_data, study_config_from_dict
from ninr.rng import make_generator
from ninr.studies.parts.hep import config_to_tables, study_specs

HAS_H5PY = importlib.util.find_spec("h5py") is not None
needs_h5py = pytest.mark.skipif(not HAS_H5PY, reason="h5py not installed (pip install 'ninr[hep]')")
REPO = Path(__file__).resolve().parents[1]
EPS = float(np.finfo(np.float64).eps)
F32 = 2.0**-24  # unit roundoff of float32 (round to nearest)
KS_C = 1.95  # asymptotic Kolmogorov critical value at alpha = 0.001


def ks_distance(sample: np.ndarray, cdf: np.ndarray) -> float:
    """sup |F_n - F| of a sample against the model CDF evaluated at the sorted sample."""
    n = len(sample)
    f = cdf[np.argsort(sample)]
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_mesons(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pT 0.5-300 GeV (beta from 0.67 up), |eta| < 2.5, any phi, pi0 or eta: the whole range the gun uses and more."""
    rng = np.random.default_rng(seed)
    mass = np.where(rng.random(n) < 0.5, PI0_MASS_GEV, ETA_MASS_GEV)
    return rng.uniform(0.5, 300, n), rng.uniform(-2.5, 2.5, n), rng.uniform(-math.pi, math.pi, n), mass


def test_decay_conserves_four_momentum_and_gives_massless_photons_of_the_meson_mass() -> None:
    pt, eta, phi, m = random_mesons(20000, 0)
    d = decay_to_two_photons(pt, eta, phi, m, np.random.default_rng(1))
    e = d.meson_energy
    assert np.allclose(e, np.sqrt((pt * np.cosh(eta)) ** 2 + m**2), rtol=4 * EPS, atol=0)
    assert np.allclose(np.hypot(d.meson_momentum[:, 0], d.meson_momentum[:, 1]), pt, rtol=8 * EPS, atol=0)
    # Each output is a handful of float64 operations on O(E) quantities: errors of a few eps relative to E.
    assert np.all(np.abs(d.energy.sum(axis=1) - e) <= 16 * EPS * e)
    assert np.all(np.abs(d.momentum.sum(axis=1) - d.meson_momentum) <= 16 * EPS * e[:, None])
    assert np.all(d.energy > 0)
    # Massless photons: |p_i| = E_i relative to the photon's own energy (the boost is written without
    # cancellation in E_i, and p_par is a cancellation only where it is legitimately small).
    assert np.all(np.abs(np.linalg.norm(d.momentum, axis=2) - d.energy) <= 16 * EPS * d.energy)
    # Invariant mass m = sqrt(E1 E2) |u1 - u2| (unit vectors u_i): each u_i carries errors of a few eps, and
    # |u1 - u2| >= 2 m / E, so the relative error of m is at most ~ few eps * E / m.
    u = unit(d.momentum)
    mass = np.sqrt(d.energy[:, 0] * d.energy[:, 1]) * np.linalg.norm(u[:, 0] - u[:, 1], axis=1)
    assert np.all(np.abs(mass - m) <= 16 * EPS * e)


def test_energy_fraction_is_uniform_between_the_kinematic_limits() -> None:
    # One meson energy, low enough that beta is visibly below 1: z = E1 / E lives on [(1 - beta)/2, (1 + beta)/2].
    n = 20000
    pt = np.full(n, 0.4)
    d = decay_to_two_photons(pt, np.zeros(n), np.zeros(n), PI0_MASS_GEV, np.random.default_rng(2))
    e = d.meson_energy[0]
    beta = 0.4 / e
    z = d.energy[:, 0] / e
    lo, hi = (1 - beta) / 2, (1 + beta) / 2
    assert beta < 0.96 and np.all((z >= lo - 8 * EPS) & (z <= hi + 8 * EPS))
    # The extremes are reached: P(min z - lo > 10 / n of the width) = (1 - 10/n)^n < e^-10.
    assert z.min() - lo < 10 / n * beta and hi - z.max() < 10 / n * beta
    assert ks_distance(z, np.clip((z - lo) / beta, 0, 1)) <= KS_C / math.sqrt(n)
    # z is the rest-frame cos theta* mapped linearly: z = (1 + beta c) / 2
    assert np.allclose(z, (1 + beta * d.cos_theta_star) / 2, rtol=0, atol=8 * EPS)


@pytest.mark.parametrize("meson", ["pi0", "eta"])
def test_opening_angle_follows_the_closed_form(meson: str) -> None:
    n, pt, eta = 20000, 30.0, 0.7
    m = MESONS[meson].mass_gev
    d = decay_to_two_photons(np.full(n, pt), np.full(n, eta), np.zeros(n), m, np.random.default_rng(3))
    p1, p2 = d.momentum[:, 0], d.momentum[:, 1]
    theta = np.arctan2(np.linalg.norm(np.cross(p1, p2), axis=1), np.einsum("ij,ij->i", p1, p2))
    e = d.meson_energy[0]
    beta = math.sqrt(1 - (m / e) ** 2)
    theta_min = 2 * math.asin(m / e)
    assert theta_min == pytest.approx(2 * m / e, rel=(m / e) ** 2)  # 2 arcsin x = 2x (1 + x^2 / 6 + ...)

    def cdf(t: np.ndarray) -> np.ndarray:
        ratio = np.clip(m / (e * np.sin(np.asarray(t) / 2)), 0, 1)
        return np.sqrt(1 - ratio**2) / beta

    # theta is computed to ~eps absolute; theta_min ~ 1e-2, so 1e-9 relative is far above rounding.
    assert theta.min() >= theta_min * (1 - 1e-9)
    assert ks_distance(theta, cdf(theta)) <= KS_C / math.sqrt(n)
    # Most pairs open near the minimum (the Jacobian peak): fractions below 1.05, 1.5 and 3 theta_min.
    for factor in (1.05, 1.5, 3.0):
        p = float(cdf(np.array(factor * theta_min)))
        frac = float(np.mean(theta <= factor * theta_min))
        assert abs(frac - p) <= 5 * math.sqrt(p * (1 - p) / n), (factor, frac, p)


def test_meson_candidates_store_the_decay_relative_to_the_meson_axis() -> None:
    pt, eta, phi, m = random_mesons(5000, 4)
    names = np.where(m == PI0_MASS_GEV, "pi0", "eta")
    c = meson_candidates(pt, eta, phi, names, np.random.default_rng(5))
    assert len(c) == 5000 and np.all(c.num_particles == 2)
    assert np.all(c.label == 0) and np.all(c.origin == ORIGIN_DECAY) and np.all(c.process == PROCESS_BACKGROUND)
    assert np.array_equal(c.mother_id, np.where(names == "pi0", 111, 221))
    assert np.all(c.p_kind == KIND_EM) and np.all(c.p_pid == 22)
    assert np.array_equal(c.pt, pt) and np.array_equal(c.eta, eta) and np.array_equal(c.phi, phi)
    # energies: p_e is float32, each photon rounded with relative error <= 2^-24, summed in float64
    e_sum = c.p_e.astype(np.float64).reshape(-1, 2).sum(axis=1)
    assert np.all(np.abs(e_sum - c.e) <= F32 * c.e * (1 + 1e-6))
    # The invariant mass from what is stored (axis + float32 offsets, float32 energies): the offsets carry
    # relative errors 2^-24, which move |u1 - u2| by a few 2^-24 of itself (the axis lies between the photons),
    # and the energies by 2^-24 each: a few 2^-24 in all; 2e-6 (34 x 2^-24) bounds it with a wide margin.
    owner = c.particle_owner
    p_eta = c.eta[owner] + c.p_d_eta.astype(np.float64)
    p_phi = c.phi[owner] + c.p_d_phi.astype(np.float64)
    u = np.stack([np.cos(p_phi) / np.cosh(p_eta), np.sin(p_phi) / np.cosh(p_eta), np.tanh(p_eta)], axis=1)
    u = unit(u).reshape(-1, 2, 3)
    e = c.p_e.astype(np.float64).reshape(-1, 2)
    mass = np.sqrt(e[:, 0] * e[:, 1]) * np.linalg.norm(u[:, 0] - u[:, 1], axis=1)
    assert np.all(np.abs(mass / m - 1) <= 2e-6)


def test_photon_candidates_are_one_photon_on_the_axis() -> None:
    config = GunConfig(n_signal_events=300, n_background_events=0)
    c = shoot(config, "signal", process_rng(config, "signal"))
    assert np.all(c.label == 1) and np.all(c.origin == ORIGIN_HARD) and np.all(c.process == PROCESS_SIGNAL)
    assert np.all(c.mother_id == 22) and np.all(c.num_particles == 1)
    assert np.all(c.p_d_eta == 0) and np.all(c.p_d_phi == 0)
    assert np.allclose(c.e, c.pt * np.cosh(c.eta), rtol=4 * EPS, atol=0)
    assert np.all(np.abs(c.p_e - c.e) <= F32 * c.e)


def test_classes_have_matched_kinematics_and_the_configured_laws() -> None:
    n = 20000
    config = GunConfig(
        n_signal_events=n,
        n_background_events=n,
        pt_min_gev=20.0,
        pt_max_gev=200.0,
        pt_power=4.0,
        abs_eta_min=0.5,
        abs_eta_max=2.0,
        mesons=("pi0", "eta"),
        meson_fractions=(0.75, 0.25),
        seed=7,
    )
    c = gun_candidates(config)
    sig, bkg = c.label == 1, c.label == 0
    assert sig.sum() == bkg.sum() == n
    a, b, k = 20.0, 200.0, 1 - 4.0  # density ~ pT^-4: CDF (x^k - a^k) / (b^k - a^k)
    for cls in (sig, bkg):
        pt = c.pt[cls]
        assert pt.min() >= a and pt.max() <= b
        assert ks_distance(pt, (pt**k - a**k) / (b**k - a**k)) <= KS_C / math.sqrt(n)
        abs_eta = np.abs(c.eta[cls])
        assert abs_eta.min() >= 0.5 and abs_eta.max() <= 2.0
        assert ks_distance(abs_eta, (abs_eta - 0.5) / 1.5) <= KS_C / math.sqrt(n)
        phi = c.phi[cls]
        assert ks_distance(phi, (phi + math.pi) / (2 * math.pi)) <= KS_C / math.sqrt(n)
        positive = float(np.mean(c.eta[cls] > 0))
        assert abs(positive - 0.5) <= 5 * math.sqrt(0.25 / n)
    # matched: the two classes' pT and |eta| samples come from one law
    assert ks_two_sample(c.pt[sig], c.pt[bkg]) <= KS_C * math.sqrt(2 / n)
    assert ks_two_sample(np.abs(c.eta[sig]), np.abs(c.eta[bkg])) <= KS_C * math.sqrt(2 / n)
    eta_share = float(np.mean(c.mother_id[bkg] == 221))
    assert abs(eta_share - 0.25) <= 5 * math.sqrt(0.25 * 0.75 / n)
    assert set(np.unique(c.mother_id[bkg]).tolist()) == {111, 221}


def test_same_seed_same_candidates_and_processes_are_independent() -> None:
    config = GunConfig(n_signal_events=400, n_background_events=500, mesons=("pi0", "eta"))
    first, again = gun_candidates(config), gun_candidates(config)
    for name, arr in first.arrays().items():
        assert np.array_equal(arr, again.arrays()[name]), name  # same code path, same inputs: same bits
    # the photons do not move when the number of mesons changes (one generator per process)
    fewer = gun_candidates(dataclasses.replace(config, n_background_events=10))
    assert np.array_equal(fewer.pt[:400], first.pt[:400]) and np.array_equal(fewer.eta[:400], first.eta[:400])
    # an explicit generator is the only source of randomness
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    x, y = shoot(config, "background", rng_a), shoot(config, "background", rng_b)
    assert np.array_equal(x.p_d_eta, y.p_d_eta) and np.array_equal(x.p_e, y.p_e)
    other = gun_candidates(dataclasses.replace(config, seed=2))
    assert not np.array_equal(other.pt, first.pt)


def test_generate_dispatches_to_the_gun_and_reports_its_rate() -> None:
    config = GunConfig(n_signal_events=30, n_background_events=20)
    seen = []
    cands, stats = generate(config, progress=lambda r, done, total: seen.append((r.process, len(r.candidates), total)))
    assert seen == [("signal", 30, 2), ("background", 20, 2)]
    assert stats.source == "gun" and stats.events == stats.candidates == {"signal": 30, "background": 20}
    assert "particle gun: 50 particles" in stats.summary() and "candidates/s" in stats.summary()
    assert np.array_equal(cands.label, gun_candidates(config).label)


def test_photon_image_holds_the_em_fraction_of_its_energy() -> None:
    # Ideal detector (no fluctuations): a photon leaves exactly em_particle_em_fraction = 0.98 of its energy in
    # EM, spread by core 0.008 and halo 0.025 Gaussians; it sits within half a HAD cell (0.025) of the centre
    # of a 0.4 window, so >= 0.175 = 7 halo sigmas from every edge: the loss is < 1e-11. float32 cells add
    # ~1e-7 relative. So EM / E = 0.98 and HAD / E = 0.02 to 1e-5.
    config = GunConfig(n_signal_events=50, n_background_events=50)
    c = gun_candidates(config)
    det = ideal_detector(DetectorConfig())
    images = simulate(c, det, generator=make_generator(0, "test")).double()
    assert images.shape == (100, 2, 32, 32) and bool(images.isfinite().all())
    em, had = images[:, 0].sum(dim=(1, 2)).numpy(), images[:, 1].sum(dim=(1, 2)).numpy()
    sig = c.label == 1
    assert np.allclose(em[sig] / c.e[sig], 0.98, rtol=0, atol=1e-5)
    assert np.allclose(had[sig] / c.e[sig], 0.02, rtol=0, atol=1e-5)
    # a meson's photons lose energy only outside the window: never more than 0.98 of E in EM
    assert np.all(em[~sig] <= 0.98 * c.e[~sig] * (1 + 1e-5))


def test_config_validation_names_the_field_and_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"`source` must be one of \['pythia', 'gun'\], got 'gn'; did you mean 'gun'"):
        study_config_from_dict({"generation": {"source": "gn"}})
    with pytest.raises(ConfigError, match=r"\[generation\] has no setting 'pt_mn_gev'; did you mean 'pt_min_gev'"):
        study_config_from_dict({"generation": {"source": "gun", "pt_mn_gev": 10}})
    with pytest.raises(ConfigError, match=r"`mesons` must be one of \['pi0', 'eta'\], got 'pi'; did you mean 'pi0'"):
        study_config_from_dict({"generation": {"source": "gun", "mesons": ["pi"]}})
    with pytest.raises(ConfigError, match=r"setting 'pt_min_gev' belongs to source = 'gun'"):
        study_config_from_dict({"generation": {"pt_min_gev": 10}})
    with pytest.raises(ConfigError, match=r"setting 'ecm_gev' belongs to source = 'pythia'"):
        study_config_from_dict({"generation": {"source": "gun", "ecm_gev": 13000}})
    with pytest.raises(ConfigError, match=r"`meson_fractions` must be numbers summing to 1"):
        GunConfig(mesons=("pi0", "eta"), meson_fractions=(0.5, 0.6))
    with pytest.raises(ConfigError, match=r"`meson_fractions` must be 2 numbers, one per meson"):
        GunConfig(mesons=("pi0", "eta"), meson_fractions=(1.0,))
    with pytest.raises(ConfigError, match=r"`pt_max_gev` must be at least pt_min_gev=20.0, got 10"):
        GunConfig(pt_max_gev=10)
    with pytest.raises(ConfigError, match=r"`mesons` must be a non-empty list of distinct names"):
        GunConfig(mesons=("pi0", "pi0"))
    # the Pythia path reads as before, with or without an explicit source
    pythia = study_config_from_dict({"generation": {"source": "pythia", "seed": 3}})
    assert pythia.generation == GenerationConfig(seed=3)


def test_gun_preset_parses_and_round_trips_through_the_study_part() -> None:
    config = load_study_config(REPO / "configs" / "hep-gun.toml")
    assert isinstance(config.generation, GunConfig)
    assert config.generation.mesons == ("pi0",) and config.generation.n_signal_events == 2000
    assert [m.label for m in config.methods] == ["none", "in-ninr", "full-ninr"]
    # the part's specs carry the config as tables; a run rebuilds the gun config from them
    assert study_config_from_dict(config_to_tables(config)) == config
    specs = study_specs(config, "hep")
    assert all(isinstance(s.options.config().generation, GunConfig) for s in specs)


def test_prepare_data_images_gun_candidates_through_both_detectors() -> None:
    config = StudyConfig(
        generation=GunConfig(n_signal_events=40, n_background_events=40),
        simulation=DetectorConfig(window_eta=0.2, window_phi=0.2, em_cells=8, had_cells=2),
        seeds=(0,),
    )
    data = prepare_data(config)
    assert data.info["generation"]["source"] == "gun" and data.info["n_train"] + data.info["n_test"] == 80
    assert tuple(data.dataset.x_train.shape[1:]) == (2, 8, 8) and data.x_data.shape == data.dataset.x_test.shape
    assert float(data.dataset.y_train.float().mean()) == pytest.approx(0.5, abs=0.25)


def test_energy_normalisation_divides_each_image_by_its_energy_and_is_other_data() -> None:
    base = StudyConfig(
        generation=GunConfig(n_signal_events=30, n_background_events=30),
        simulation=DetectorConfig(window_eta=0.2, window_phi=0.2, em_cells=8, had_cells=2),
        seeds=(0,),
    )
    plain, scaled = prepare_data(base), prepare_data(dataclasses.replace(base, normalise="energy"))
    for a, b in ((plain.dataset.x_train, scaled.dataset.x_train), (plain.x_data, scaled.x_data)):
        total = a.sum(dim=(1, 2, 3), keepdim=True)
        assert bool((total > 0).all())
        # the same images (same draws) divided by their totals; float32 division: a few ulps
        assert np.allclose(b.numpy(), (a / total).numpy(), rtol=1e-6, atol=1e-9)
        assert np.allclose(b.sum(dim=(1, 2, 3)).numpy(), 1.0, atol=1e-5)
    assert normalised(torch.zeros(2, 2, 4, 4), "energy").abs().sum() == 0  # nothing to divide: left at zero
    ids = {s.run_id for c in (base, dataclasses.replace(base, normalise="energy")) for s in study_specs(c, "hep")}
    assert len(ids) == 2 * len(base.methods)  # normalised images are other runs
    with pytest.raises(ConfigError, match="normalise"):
        dataclasses.replace(base, normalise="unit")


@needs_h5py
def test_gun_events_are_cached_with_their_config(tmp_path: Path) -> None:
    from ninr.errors import DataError
    from ninr.hep.datasets import load_or_generate, read_events

    config = GunConfig(n_signal_events=20, n_background_events=20)
    path = tmp_path / "events.h5"
    made, meta = load_or_generate(path, config)
    assert not meta["reused"] and meta["source"] == "gun"
    again, meta = load_or_generate(path, config)
    assert meta["reused"] and np.array_equal(again.p_d_eta, made.p_d_eta)
    with pytest.raises(DataError, match=r"differs in .*pt_max_gev: 60.0 -> 80.0"):
        read_events(path, expected=dataclasses.replace(config, pt_max_gev=80.0))
    with pytest.raises(DataError, match=r"differs in .*source: 'gun' -> None"):
        read_events(path, expected=GenerationConfig())


@needs_h5py
def test_cli_generate_writes_gun_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ninr.cli import main

    out = tmp_path / "out"
    args = ["hep", "generate", "--config", str(REPO / "configs" / "hep-gun.toml"), "--out", str(out)]
    assert main([*args, "--signal-events", "30", "--background-events", "20"]) == 0
    printed = capsys.readouterr().out
    assert "particle gun: 50 particles" in printed and "50 candidates (30 prompt, 20 non-prompt)" in printed
    assert (out / "events.h5").is_file()
