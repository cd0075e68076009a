"""The fast calorimeter against closed forms: containment, resolution, shower widths, determinism, seeds."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from ninr.errors import ConfigError
from ninr.hep.calorimeter import (
    apply_crosstalk,
    cell_fractions,
    cell_indices,
    correlate_noise,
    dead_cells,
    ideal_detector,
    relative_resolution,
    simulate,
    window_offsets,
)
from ninr.hep.config import (
    SHIFT_EFFECTS,
    SHIFT_RANGES,
    DetectorConfig,
    DetectorShift,
    apply_shift,
    config_hash,
    draw_shift,
    from_mapping,
    neutral_shift,
    shift_effects,
    to_dict,
)
from ninr.hep.events import KIND_EM, KIND_HADRON, KIND_MUON, Candidates
from ninr.hep.noise import neighbour_weight

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


# --- the "data" effects: each against its closed form -----------------------------------------------------------

Z = 5.0  # statistical checks pass at 5 standard errors (two-sided 5.7e-7 under the null)


def test_energy_scale_alone_multiplies_each_layer_sum_by_its_factor() -> None:
    # Resolution and fluctuations on, no cell noise or pileup: the same generator gives the same draws, so the
    # layer sums scale exactly (up to float32 rounding of each cell, 2^-24 relative, far below 1e-6).
    det = DetectorConfig(em_cells=16, had_cells=4, em_cell_noise_gev=0.0, had_cell_noise_gev=0.0)
    shift = dataclasses.replace(neutral_shift(det), energy_scale=1.013, had_scale=1.04)
    assert list(shift_effects(det, shift)) == ["energy scale"]
    cands = make([[(0.01, 0.0, 30.0, KIND_EM), (0.05, -0.03, 12.0, KIND_HADRON)]] * 20)
    a = simulate(cands, det, generator=gen(5)).double()
    b = simulate(cands, apply_shift(det, shift), generator=gen(5)).double()
    torch.testing.assert_close(b[:, 0].sum(dim=(1, 2)), 1.013 * a[:, 0].sum(dim=(1, 2)), rtol=1e-6, atol=0)
    torch.testing.assert_close(b[:, 1].sum(dim=(1, 2)), 1.013 * 1.04 * a[:, 1].sum(dim=(1, 2)), rtol=1e-6, atol=0)


def test_resolution_alone_widens_the_spread_by_the_quadrature_formula() -> None:
    # One 40 GeV photon per candidate at the centre, only the EM resolution random: the EM sum is
    # E_em * containment * (1 + r z), so its relative spread is r = a/sqrt(E_em) (+) c. "Data": a and c times
    # the factor, and c' added in quadrature. Sample std of n normals: standard error sigma / sqrt(2 (n - 1)).
    det = ideal_detector(DetectorConfig(em_cells=16, had_cells=4), em_stochastic=0.10, em_constant=0.007)
    shift = dataclasses.replace(neutral_shift(det), resolution_factor=1.1, extra_constant_term=0.02)
    n, energy = 4000, 40.0
    cands = make([[(0.0, 0.0, energy, KIND_EM)]] * n)
    e_em = det.em_particle_em_fraction * energy
    for detector, a, c in ((det, 0.10, 0.007), (apply_shift(det, shift), 0.11, math.hypot(0.0077, 0.02))):
        sums = simulate(cands, detector, generator=gen(11)).double()[:, 0].sum(dim=(1, 2))
        rel = sums / float(sums.mean())
        expected = math.sqrt(a * a / e_em + c * c)
        assert abs(float(rel.std()) - expected) < Z * expected / math.sqrt(2 * (n - 1))
    assert math.hypot(0.11 / math.sqrt(e_em), math.hypot(0.0077, 0.02)) > 1.4 * math.hypot(0.1 / math.sqrt(e_em), 0.007)


def _eta_second_moment(x: float, det: DetectorConfig) -> float:
    """Closed form: energy-weighted mean of (cell centre in eta)^2 for an EM shower at (x, 0) of an ideal detector.

    Each Gaussian component deposits E w_k fx_k(i) fy_k(j) in cell (i, j) (normal-CDF differences), so summed over
    phi the eta profile is sum_k w_k fx_k(i) Cy_k, Cy_k = the component's containment in phi.
    """

    def cdf(t: float, s: float) -> float:
        return 0.5 * (1 + math.erf(t / (s * math.sqrt(2))))

    edges = [-det.window_eta / 2 + i * det.window_eta / det.em_cells for i in range(det.em_cells + 1)]
    hy = det.window_phi / 2
    h = det.em_shower_halo_fraction
    num = den = 0.0
    for i in range(det.em_cells):
        centre = (edges[i] + edges[i + 1]) / 2
        e = 0.0
        for s, w in ((det.em_shower_core, 1 - h), (det.em_shower_halo, h)):
            e += w * (cdf(edges[i + 1] - x, s) - cdf(edges[i] - x, s)) * (cdf(hy, s) - cdf(-hy, s))
        num += e * centre**2
        den += e
    return num / den


def test_broader_showers_raise_the_second_moment_as_computed() -> None:
    det = ideal_detector(DetectorConfig(em_cells=16, had_cells=4, window_eta=0.2, window_phi=0.2))
    shift = dataclasses.replace(neutral_shift(det), shower_width_factor=1.05)
    data = apply_shift(det, shift)
    cands = make([[(0.004, 0.0, 50.0, KIND_EM)]])
    centres = (torch.arange(16, dtype=torch.float64) + 0.5) * (0.2 / 16) - 0.1
    moments = []
    for d in (det, data):
        em = simulate(cands, d, generator=gen()).double()[0, 0]
        profile = em.sum(dim=1)
        m2 = float((profile * centres**2).sum() / profile.sum())
        # float32 cells: relative rounding 2^-24 each, so the ratio of sums agrees to ~1e-7
        assert m2 == pytest.approx(_eta_second_moment(0.004, d), rel=1e-5)
        moments.append(m2)
    assert moments[1] > 1.04 * moments[0]  # a 5% wider shower: about 10% more second moment, less the cell size


def test_dead_cells_read_zero_and_are_a_fixed_map_on_the_detector_grid() -> None:
    rng = np.random.default_rng(0)
    n = 400
    det = DetectorConfig(
        em_cells=16, had_cells=4, window_eta=0.2, window_phi=0.2, pileup_mu=2.0, dead_cell_fraction=0.05
    )
    eta, phi = rng.uniform(-2.3, 2.3, n), rng.uniform(-3.1, 3.1, n)
    cands = Candidates(
        **{**make([[(0.0, 0.0, 30.0, KIND_EM), (0.04, 0.02, 5.0, KIND_HADRON)]] * n).__dict__, "eta": eta, "phi": phi}
    )
    img = simulate(cands, det, generator=gen(2))
    dead_em = dead_cells(eta, phi, det, 16, "em")
    dead_had = dead_cells(eta, phi, det, 4, "had")
    assert dead_em is not None and dead_had is not None
    assert bool((img[:, 0][dead_em] == 0).all()) and bool((img[:, 0][~dead_em] != 0).all())  # noise: never 0 alive
    up = dead_had.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)
    assert bool((img[:, 1][up] == 0).all())
    # the map is the detector's, not the generator's
    assert torch.equal(simulate(cands, det, generator=gen(3))[:, 0][dead_em], img[:, 0][dead_em])
    # over the distinct grid cells the windows cover, the dead share is binomial(fraction)
    off_eta, off_phi = window_offsets(eta, phi, det)
    ie = cell_indices(eta, off_eta, 0.2, 16)[:, :, None].repeat(16, axis=2)
    ip = cell_indices(phi, off_phi, 0.2, 16)[:, None, :].repeat(16, axis=1)
    cells: dict[tuple[int, int], bool] = {}
    for a, b, d in zip(ie.ravel(), ip.ravel(), dead_em.numpy().ravel(), strict=True):
        assert cells.setdefault((a, b), d) == d  # one cell, one state, whichever window sees it
    m = len(cells)
    assert abs(sum(cells.values()) / m - 0.05) < Z * math.sqrt(0.05 * 0.95 / m)
    # a larger fraction with the same seed keeps every dead cell of a smaller one
    more = dead_cells(eta, phi, dataclasses.replace(det, dead_cell_fraction=0.1), 16, "em")
    assert more is not None and bool(more[dead_em].all()) and int(more.sum()) > int(dead_em.sum())


def test_correlated_cell_noise_has_the_set_neighbour_correlation() -> None:
    # Empty windows, noise only (1 GeV per cell). Pairs of side-neighbours at least 4 cells from any other pair
    # share no white draw, so the 9 interior pairs x n images are independent samples of the pair; standard error of
    # a correlation estimate: (1 - rho^2) / sqrt(N - 1). Each cell's variance stays 1 (SE sqrt(2 / n)).
    rho, n = 0.3, 3000
    det = ideal_detector(DetectorConfig(em_cells=16, had_cells=4), em_cell_noise_gev=1.0, cell_noise_correlation=rho)
    em = simulate(make([[]] * n), det, generator=gen(4)).double()[:, 0]
    a = torch.cat([em[:, r, c] for r in (2, 7, 12) for c in (2, 7, 12)])
    b = torch.cat([em[:, r, c + 1] for r in (2, 7, 12) for c in (2, 7, 12)])
    measured = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert abs(measured - rho) < Z * (1 - rho**2) / math.sqrt(len(a) - 1)
    for r, c in ((0, 0), (0, 7), (7, 7)):
        assert abs(float(em[:, r, c].square().mean()) - 1.0) < Z * math.sqrt(2 / n)
    # white noise (correlation 0) is the draw itself, so images without correlation are what they were
    white = torch.randn(3, 4, 4, generator=gen())
    assert correlate_noise(white, 0.0) is white
    # w solves 2 w / (1 + 4 w^2) = rho
    w = neighbour_weight(rho)
    assert 2 * w / (1 + 4 * w * w) == pytest.approx(rho, rel=1e-12)


def test_crosstalk_leaks_to_the_side_neighbours_and_keeps_the_energy() -> None:
    x = 0.02
    img = torch.zeros(1, 5, 5, dtype=torch.float64)
    img[0, 2, 2], img[0, 0, 0] = 10.0, 4.0
    out = apply_crosstalk(img, x)[0]
    assert float(out[2, 2]) == pytest.approx(10.0 * (1 - 4 * x))
    assert [float(out[r, c]) for r, c in ((1, 2), (3, 2), (2, 1), (2, 3))] == pytest.approx([10.0 * x] * 4)
    assert float(out[0, 0]) == pytest.approx(4.0 * (1 - 2 * x))  # a corner has two neighbours
    assert float(out[0, 1]) == pytest.approx(4.0 * x) and float(out[1, 1]) == 0.0
    assert float(out.sum()) == pytest.approx(14.0, rel=1e-12)
    det = ideal_detector(DetectorConfig(em_cells=16, had_cells=4))
    cands = make([[(0.01, 0.0, 30.0, KIND_EM), (0.05, 0.05, 8.0, KIND_HADRON)]])
    plain = simulate(cands, det, generator=gen()).double()
    talk = simulate(cands, dataclasses.replace(det, em_crosstalk=x), generator=gen()).double()
    assert float(talk[0, 0].sum()) == pytest.approx(float(plain[0, 0].sum()), rel=1e-6)
    assert torch.equal(talk[0, 1], plain[0, 1]) and not torch.equal(talk[0, 0], plain[0, 0])


def test_pileup_alone_adds_its_mean_energy() -> None:
    det = ideal_detector(
        DetectorConfig(em_cells=8, had_cells=2),
        em_shower_core=1e-4,
        em_shower_halo=1e-4,
        had_shower_core=1e-4,
        had_shower_halo=1e-4,
    )
    shift = dataclasses.replace(neutral_shift(det), extra_pileup_mu=3.0)
    assert list(shift_effects(det, shift)) == ["pileup"]
    n = 4000
    totals = simulate(make([[]] * n), apply_shift(det, shift), generator=gen(6)).double().sum(dim=(1, 2, 3))
    se = math.sqrt(3.0 * 2 * det.pileup_mean_gev**2 / n)  # compound Poisson: variance mu E[X^2]
    assert abs(float(totals.mean()) - 3.0 * det.pileup_mean_gev) < Z * se


def test_every_effect_replays_with_its_seed_and_blocks_change_nothing() -> None:
    det = DetectorConfig(
        em_cells=16,
        had_cells=4,
        pileup_mu=2.0,
        cell_gain_spread=0.01,
        cell_noise_correlation=0.2,
        em_crosstalk=0.01,
        dead_cell_fraction=0.02,
    )
    cands = make([[(0.0, 0.0, 30.0, KIND_EM), (0.08, 0.03, 5.0, KIND_HADRON)]] * 6, eta=0.7, phi=-1.2)
    a = simulate(cands, det, generator=gen(9))
    assert torch.equal(a, simulate(cands, det, generator=gen(9)))
    assert torch.equal(a, simulate(cands, det, generator=gen(9), block=2))
    assert not torch.equal(a, simulate(cands, det, generator=gen(10)))


def test_shift_effects_split_the_shift_and_the_neutral_shift_changes_nothing() -> None:
    det = DetectorConfig()
    assert apply_shift(det, neutral_shift(det)) == det
    shift = DetectorShift(extra_noise_correlation=0.05, extra_crosstalk=0.004, extra_dead_cell_fraction=0.001)
    effects = shift_effects(det, shift)
    assert list(effects) == [
        "energy scale", "resolution", "cell noise", "noise correlation", "crosstalk", "dead cells", "pileup",
        "shower width", "gain non-uniformity",
    ]  # fmt: skip
    assert set(SHIFT_EFFECTS) - set(effects) == {"hadron EM fraction"}  # the default shift leaves it at 0
    changed = {
        name: {f for f in det.__dataclass_fields__ if getattr(apply_shift(det, s), f) != getattr(det, f)}
        for name, s in effects.items()
    }
    assert changed["energy scale"] == {"em_scale", "had_scale"}
    assert changed["shower width"] == {"em_shower_core", "em_shower_halo", "had_shower_core", "had_shower_halo"}
    assert changed["dead cells"] == {"dead_cell_fraction"} and changed["pileup"] == {"pileup_mu"}
    assert changed["gain non-uniformity"] == {"cell_gain_spread", "gain_seed"}
    for name, fields in SHIFT_EFFECTS.items():  # every field of the shift belongs to exactly one effect
        assert all(sum(f in other for other in SHIFT_EFFECTS.values()) == 1 for f in fields), name
    assert set().union(*SHIFT_EFFECTS.values()) == set(DetectorShift.__dataclass_fields__)


def test_drawn_shifts_stay_in_their_documented_ranges_and_replay() -> None:
    for seed in range(20):
        s = draw_shift(seed)
        for name, (lo, hi) in SHIFT_RANGES.items():
            assert lo <= getattr(s, name) <= hi, name
    assert draw_shift(3) == draw_shift(3) and draw_shift(3) != draw_shift(4)
    assert draw_shift(3, gain_seed=7).gain_seed == 7
    with pytest.raises(ConfigError, match="did you mean 'energy_scale'"):
        draw_shift(0, {"energy_scal": (1.0, 1.1)})
    apply_shift(DetectorConfig(), draw_shift(0))  # a drawn shift makes a valid detector


def test_new_detector_settings_stay_out_of_the_hash_until_set() -> None:
    det = DetectorConfig()
    assert "em_crosstalk" not in to_dict(det) and "extra_crosstalk" not in to_dict(DetectorShift())
    talk = dataclasses.replace(det, em_crosstalk=0.01)
    assert to_dict(talk)["em_crosstalk"] == 0.01 and config_hash(talk) != config_hash(det)
    assert from_mapping(DetectorConfig, to_dict(talk), "simulation") == talk
    with pytest.raises(ConfigError, match="`cell_noise_correlation` must be a number in"):
        DetectorConfig(cell_noise_correlation=0.6)
    with pytest.raises(ConfigError, match="`em_crosstalk`"):
        DetectorConfig(em_crosstalk=0.3)
    with pytest.raises(ConfigError, match="`dead_cell_fraction`"):
        DetectorConfig(dead_cell_fraction=1.5)
