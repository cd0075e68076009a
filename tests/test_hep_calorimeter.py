"""The fast calorimeter against closed forms: containment, resolution, shower widths, determinism, seeds."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from ninr.errors import ConfigError
from ninr.hep.calorimeter import cell_fractions, ideal_detector, relative_resolution, simulate, window_offsets
from ninr.hep.config import DetectorConfig, DetectorShift, apply_shift
from ninr.hep.events import KIND_EM, KIND_HADRON, KIND_MUON, Candidates

Particle = tuple[float, float, float, int]  # d_eta, d_phi, energy, kind


def make(cands: Sequence[Sequence[Particle]], eta: float = 0.0, phi: float = 0.0) -> Candidates:
    """Candidates at (eta, phi) holding the given particles."""
    n = len(cands)
    flat = [p for c in cands for p in c]
    arr = np.array(flat, dtype=np.float64).reshape(-1, 4)
    counts = np.array([len(c) for c in cands], dtype=np.int64)
    return Candidates(
        pt=np.full(n, 30.0),
        eta=np.full(n, eta),
        phi=np.full(n, phi),
        e=np.full(n, 30.0),
        label=np.zeros(n, np.int8),
        origin=np.zeros(n, np.int8),
        mother_id=np.zeros(n, np.int32),
        process=np.zeros(n, np.int8),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        p_d_eta=arr[:, 0].astype(np.float32),
        p_d_phi=arr[:, 1].astype(np.float32),
        p_e=arr[:, 2].astype(np.float32),
        p_kind=arr[:, 3].astype(np.int8),
        p_pid=np.full(len(arr), 22, np.int32),
    )


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def containment(x: float, y: float, det: DetectorConfig, kind: int) -> float:
    """Closed form: the fraction of a core + halo Gaussian shower at (x, y) inside the window."""

    def inside(c: float, half: float, s: float) -> float:
        return 0.5 * (math.erf((half - c) / (s * math.sqrt(2))) - math.erf((-half - c) / (s * math.sqrt(2))))

    had = kind == KIND_HADRON
    core, halo = (det.had_shower_core, det.had_shower_halo) if had else (det.em_shower_core, det.em_shower_halo)
    h = det.had_shower_halo_fraction if had else det.em_shower_halo_fraction
    hx, hy = det.window_eta / 2, det.window_phi / 2
    return sum(w * inside(x, hx, s) * inside(y, hy, s) for s, w in ((core, 1 - h), (halo, h)))


def test_cell_fractions_integrate_the_gaussian() -> None:
    edges = torch.linspace(-1.0, 1.0, 41, dtype=torch.float64)
    f = cell_fractions(torch.tensor([0.013, -0.2], dtype=torch.float64), torch.tensor([0.05, 0.1]).double(), edges)
    torch.testing.assert_close(f.sum(dim=1), torch.ones(2, dtype=torch.float64))
    # first moment of the cell fractions (at cell centres) recovers the mean to within the bin width
    centres = (edges[1:] + edges[:-1]) / 2
    torch.testing.assert_close((f * centres).sum(dim=1), torch.tensor([0.013, -0.2], dtype=torch.float64))


@pytest.mark.parametrize(("x", "y", "kind"), [(0.0, 0.0, KIND_EM), (0.17, -0.12, KIND_EM), (0.05, 0.19, KIND_HADRON)])
def test_ideal_detector_deposits_the_contained_energy_in_each_layer(x: float, y: float, kind: int) -> None:
    det = ideal_detector(DetectorConfig(em_cells=16, had_cells=4))
    img = simulate(make([[(x, y, 50.0, kind)]]), det, generator=gen()).double()
    f = det.em_particle_em_fraction if kind == KIND_EM else det.hadron_em_fraction
    c = containment(x, y, det, kind)
    assert float(img[0, 0].sum()) == pytest.approx(50.0 * f * c, rel=1e-5)
    assert float(img[0, 1].sum()) == pytest.approx(50.0 * (1 - f) * c, rel=1e-5)


def test_total_energy_matches_visible_energy_within_the_configured_resolution() -> None:
    # 3000 candidates of one 40 GeV photon at the window centre through the default (noisy) detector.
    det = DetectorConfig(em_cells=16, had_cells=4)
    n, energy = 3000, 40.0
    img = simulate(make([[(0.0, 0.0, energy, KIND_EM)]] * n), det, generator=gen(1)).double()
    residual = img.sum(dim=(1, 2, 3)) - energy * containment(0.0, 0.0, det, KIND_EM)
    f = det.em_particle_em_fraction
    e_em, e_had = f * energy, (1 - f) * energy
    var = (
        (e_em * float(relative_resolution(torch.tensor(e_em), det.em_stochastic, 0.0, det.em_constant))) ** 2
        + (e_had * float(relative_resolution(torch.tensor(e_had), det.had_stochastic, 0.0, det.had_constant))) ** 2
        + det.em_cells**2 * det.em_cell_noise_gev**2
        + det.had_cells**2 * det.had_cell_noise_gev**2
    )
    sigma = math.sqrt(var)
    # unbiased to 5 standard errors, and the spread is the configured one to 10% (SE of a std here ~1.3%;
    # the EM-fraction fluctuation of 1% adds a little through the layers' different resolutions)
    assert abs(float(residual.mean())) < 5 * sigma / math.sqrt(n)
    assert float(residual.std()) == pytest.approx(sigma, rel=0.1)


def _radial_spread(img: torch.Tensor, det: DetectorConfig) -> float:
    """Energy-weighted r.m.s. distance of the deposits from the window centre (both layers)."""
    e = img[0].sum(dim=0).double()
    centres = (torch.arange(det.em_cells, dtype=torch.float64) + 0.5) / det.em_cells - 0.5
    r2 = (centres[:, None] * det.window_eta) ** 2 + (centres[None, :] * det.window_phi) ** 2
    return math.sqrt(float((e * r2).sum() / e.sum()))


def test_photon_showers_are_narrower_than_hadron_showers() -> None:
    det = ideal_detector()
    photon = simulate(make([[(0.0, 0.0, 30.0, KIND_EM)]]), det, generator=gen())
    pion = simulate(make([[(0.0, 0.0, 30.0, KIND_HADRON)]]), det, generator=gen())
    assert _radial_spread(photon, det) < 0.5 * _radial_spread(pion, det)
    # and they are EM-like: nearly all energy in the EM layer, unlike the hadron
    assert float(photon[0, 0].sum() / photon[0].sum()) > 0.95 > 0.5 > float(pion[0, 0].sum() / pion[0].sum())


def test_zero_noise_and_perfect_resolution_give_a_deterministic_image() -> None:
    cands = make([[(0.01, -0.02, 25.0, KIND_EM), (0.1, 0.05, 8.0, KIND_HADRON), (-0.05, 0.0, 4.0, KIND_MUON)]] * 3)
    det = ideal_detector(DetectorConfig(em_cells=16, had_cells=4))
    a = simulate(cands, det, generator=gen(0))
    b = simulate(cands, det, generator=gen(12345))
    assert torch.equal(a, b)
    assert torch.equal(a[0], a[2])


def test_same_seed_same_image_and_another_seed_another_image() -> None:
    det = DetectorConfig(em_cells=16, had_cells=4, pileup_mu=3.0, cell_gain_spread=0.05)
    cands = make([[(0.0, 0.0, 30.0, KIND_EM), (0.08, 0.03, 5.0, KIND_HADRON)]] * 4)
    a = simulate(cands, det, generator=gen(7))
    assert torch.equal(a, simulate(cands, det, generator=gen(7)))
    assert not torch.equal(a, simulate(cands, det, generator=gen(8)))
    assert a.dtype == torch.float32 and a.shape == (4, 2, 16, 16)
    assert torch.equal(a, simulate(cands, det, generator=gen(7), block=1))  # blocking is memory only


def test_hadronic_layer_is_upsampled_keeping_its_energy() -> None:
    det = ideal_detector(DetectorConfig(em_cells=16, had_cells=4))
    img = simulate(make([[(0.03, 0.02, 20.0, KIND_HADRON)]]), det, generator=gen())
    had = img[0, 1]
    blocks = had.reshape(4, 4, 4, 4).permute(0, 2, 1, 3)  # (coarse, coarse, fine, fine)
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))  # constant within a coarse cell


def test_grid_alignment_puts_window_edges_on_the_hadronic_grid() -> None:
    det = DetectorConfig()
    eta = np.array([0.0, 0.013, -1.234, 2.2])
    phi = np.array([0.0, 3.1, -2.0, 0.049])
    off_eta, off_phi = window_offsets(eta, phi, det)
    step = det.window_eta / det.had_cells
    assert np.all(np.abs(off_eta) <= step / 2 + 1e-12) and np.all(np.abs(off_phi) <= step / 2 + 1e-12)
    lower = (eta - off_eta - det.window_eta / 2) / step
    np.testing.assert_allclose(lower, np.round(lower), atol=1e-9)
    assert window_offsets(eta, phi, dataclasses.replace(det, grid_aligned=False))[0].tolist() == [0.0] * 4


def test_pileup_adds_its_mean_energy() -> None:
    # narrow showers keep pileup deposits inside the window: mean total = mu * mean energy
    det = ideal_detector(
        DetectorConfig(em_cells=8, had_cells=2),
        pileup_mu=5.0,
        pileup_mean_gev=0.5,
        em_shower_core=1e-4,
        em_shower_halo=1e-4,
        had_shower_core=1e-4,
        had_shower_halo=1e-4,
    )
    n = 4000
    img = simulate(make([[]] * n), det, generator=gen(3)).double()
    totals = img.sum(dim=(1, 2, 3))
    # compound Poisson: variance = mu * E[X^2] = mu * 2 mean^2
    se = math.sqrt(5.0 * 2 * 0.5**2 / n)
    assert abs(float(totals.mean()) - 2.5) < 5 * se


def test_shift_changes_the_documented_fields() -> None:
    det = DetectorConfig()
    shift = DetectorShift(
        energy_scale=1.1,
        had_scale=1.2,
        resolution_factor=2.0,
        noise_factor=3.0,
        extra_pileup_mu=2.0,
        shower_width_factor=1.5,
        cell_gain_spread=0.03,
        gain_seed=9,
    )
    data = apply_shift(det, shift)
    assert data.em_scale == pytest.approx(1.1) and data.had_scale == pytest.approx(1.32)
    assert data.em_stochastic == pytest.approx(2 * det.em_stochastic)
    assert data.had_constant == pytest.approx(2 * det.had_constant)
    assert data.em_cell_noise_gev == pytest.approx(3 * det.em_cell_noise_gev)
    assert data.pileup_mu == pytest.approx(det.pileup_mu + 2.0)
    assert data.had_shower_halo == pytest.approx(1.5 * det.had_shower_halo)
    assert (data.cell_gain_spread, data.gain_seed) == (0.03, 9)
    neutral = DetectorShift(
        energy_scale=1,
        had_scale=1,
        resolution_factor=1,
        noise_factor=1,
        extra_pileup_mu=0,
        shower_width_factor=1,
        cell_gain_spread=0,
        gain_seed=0,
    )
    assert apply_shift(det, neutral) == det


def test_miscalibration_scales_the_image() -> None:
    cands = make([[(0.0, 0.0, 30.0, KIND_EM), (0.1, 0.0, 10.0, KIND_HADRON)]])
    det = ideal_detector()
    a = simulate(cands, det, generator=gen())
    b = simulate(cands, dataclasses.replace(det, em_scale=1.05, had_scale=0.9), generator=gen())
    torch.testing.assert_close(b[:, 0], 1.05 * a[:, 0])
    torch.testing.assert_close(b[:, 1], 0.9 * a[:, 1])


def test_detector_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match="`had_cells` must be a divisor of em_cells=32"):
        DetectorConfig(had_cells=5)
    with pytest.raises(ConfigError, match="`em_stochastic`"):
        DetectorConfig(em_stochastic=-0.1)
