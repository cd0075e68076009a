"""A fast calorimeter simulation: particles near a photon candidate -> a two-layer energy image.

For every visible particle (and every pileup particle) of a candidate, in this order of draws:

1. **Longitudinal split**: a fraction f of its energy goes to the EM layer, 1 - f to HAD; f is
   Gaussian around ``em_particle_em_fraction`` (photons, electrons) or ``hadron_em_fraction`` (hadrons)
   and clipped to [0, 1]; muons leave fixed minimum-ionising deposits.
2. **Energy resolution, per particle and per layer**: a layer deposit E becomes
   ``max(E (1 + r z), 0)`` with z ~ N(0, 1) and r = a/sqrt(E) (+) b/E (+) c (added in quadrature)
   evaluated at that deposit, with the layer's a, b, c; then the layer's energy scale multiplies it.
3. **Lateral profile**: each deposit spreads over the layer's cells as a core + halo pair of 2D Gaussians
   (widths per particle kind), integrated exactly over each rectangular cell (products of normal CDF
   differences in eta and phi). Energy falling outside the window is lost, as in a real window.

Then, per cell: crosstalk to the side-neighbours (EM layer), a fixed gain map (non-uniformity), Gaussian
electronic noise, optionally correlated between neighbouring cells, optional zero suppression, and dead cells
reading 0 (a fixed map on the detector's cell grid); the HAD layer is upsampled to the EM grid by nearest
neighbour and divided by the number of fine cells per coarse cell, so each channel sums to its layer's energy.
Particles travel in straight lines (no magnetic field) from the interaction point. Output: float32
``(N, 2, em_cells, em_cells)`` in GeV.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from ninr.hep.config import DetectorConfig
from ninr.hep.events import KIND_EM, KIND_HADRON, KIND_MUON, Candidates
from ninr.hep.noise import neighbour_weight
from ninr.rng import make_generator

_F64 = torch.float64
# The fields whose zero makes the detector deterministic (no resolution, fluctuations, noise, gains, pileup).
_RANDOM_FIELDS = (
    "em_particle_em_fraction_std",
    "hadron_em_fraction_std",
    "em_stochastic",
    "em_noise_term",
    "em_constant",
    "had_stochastic",
    "had_noise_term",
    "had_constant",
    "cell_gain_spread",
    "em_cell_noise_gev",
    "had_cell_noise_gev",
    "pileup_mu",
)


def ideal_detector(detector: DetectorConfig | None = None, **changes: Any) -> DetectorConfig:
    """``detector`` (default: the defaults) with no resolution, fluctuation, noise, non-uniformity or pileup.

    With it, :func:`simulate` is deterministic: the image does not depend on the generator.
    """
    zero = dict.fromkeys(_RANDOM_FIELDS, 0.0)
    return dataclasses.replace(detector or DetectorConfig(), **{**zero, **changes})


def relative_resolution(energy: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    """sigma/E = a/sqrt(E) (+) b/E (+) c (quadrature sum), 0 where E <= 0."""
    e = energy.clamp_min(1e-12)
    r = torch.sqrt(a * a / e + (b / e) ** 2 + c * c)
    return torch.where(energy > 0, r, torch.zeros_like(r))


def cell_fractions(x: torch.Tensor, sigma: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Fraction of a 1D Gaussian N(x, sigma^2) inside each bin of ``edges``.

    Shape:
        x, sigma: (P,); edges: (B + 1,); returns (P, B).
    """
    cdf = 0.5 * (1 + torch.erf((edges[None, :] - x[:, None]) / (sigma[:, None] * math.sqrt(2.0))))
    return cdf[:, 1:] - cdf[:, :-1]


def window_offsets(eta: np.ndarray, phi: np.ndarray, detector: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Position of each candidate relative to its window's centre (0 unless ``grid_aligned``).

    With ``grid_aligned`` the window's edges sit on the detector's fixed HAD-cell grid (multiples of the
    HAD cell size in eta and in phi), at the placement that best centres the candidate; the offset is then
    within half a HAD cell.
    """
    if not detector.grid_aligned:
        return np.zeros_like(eta), np.zeros_like(phi)
    out = []
    for coord, width in ((eta, detector.window_eta), (phi, detector.window_phi)):
        step = width / detector.had_cells
        lower = np.round((coord - width / 2) / step) * step
        out.append(coord - (lower + width / 2))
    return out[0], out[1]


def gain_map(detector: DetectorConfig, cells: int, layer: str) -> torch.Tensor:
    """The fixed per-cell gains 1 + spread * N(0, 1) of one layer (all ones at zero spread)."""
    if detector.cell_gain_spread == 0:
        return torch.ones((cells, cells), dtype=_F64)
    gen = make_generator(detector.gain_seed, "cell-gain", layer)
    return 1 + detector.cell_gain_spread * torch.randn((cells, cells), generator=gen, dtype=_F64)


def neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """For each cell of the last two axes, the sum of its (up to four) side-neighbours inside the grid."""
    out = torch.zeros_like(x)
    out[..., 1:, :] += x[..., :-1, :]
    out[..., :-1, :] += x[..., 1:, :]
    out[..., :, 1:] += x[..., :, :-1]
    out[..., :, :-1] += x[..., :, 1:]
    return out


def neighbour_count(h: int, w: int, dtype: torch.dtype = _F64) -> torch.Tensor:
    """Number of side-neighbours of each cell of an h x w grid (4 inside, 3 on an edge, 2 in a corner)."""
    return neighbour_sum(torch.ones((h, w), dtype=dtype))


def apply_crosstalk(img: torch.Tensor, fraction: float) -> torch.Tensor:
    """Each cell's signal leaks ``fraction`` of itself into each side-neighbour and keeps the rest (energy kept)."""
    if fraction == 0:
        return img
    k = neighbour_count(img.shape[-2], img.shape[-1], dtype=img.dtype)
    return (1 - fraction * k) * img + fraction * neighbour_sum(img)


def correlate_noise(white: torch.Tensor, correlation: float) -> torch.Tensor:
    """Unit-variance cell noise from white noise ``white`` with side-neighbour correlation ``correlation``.

    ``(z + w * neighbour_sum(z)) / sqrt(1 + w^2 k)`` with ``w`` = :func:`ninr.hep.noise.neighbour_weight` and k the
    cell's number of neighbours: every cell keeps variance 1; two neighbours with four neighbours each have
    correlation exactly ``correlation`` (2 w / (1 + 4 w^2)), a little more on the grid's edge. At 0, ``white``
    itself.
    """
    w = neighbour_weight(correlation)
    if w == 0:
        return white
    k = neighbour_count(white.shape[-2], white.shape[-1], dtype=white.dtype)
    return (white + w * neighbour_sum(white)) / torch.sqrt(1 + w * w * k)


def cell_indices(coord: np.ndarray, offset: np.ndarray, width: float, cells: int) -> np.ndarray:
    """Index on the detector's fixed grid of cell size ``width / cells`` of each window cell along one axis.

    ``coord - offset`` is the window's centre (:func:`window_offsets`); returns int64 ``(N, cells)``.
    """
    size = width / cells
    lower = coord - offset - width / 2
    centres = lower[:, None] + (np.arange(cells) + 0.5)[None, :] * size
    return np.floor(centres / size).astype(np.int64)


_MASK64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 (wrapping arithmetic): a bijection that scrambles every bit."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def cell_uniforms(seed: int, layer: int, ieta: np.ndarray, iphi: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per detector cell, a fixed function of ``(seed, layer, ieta, iphi)``.

    ``ieta`` and ``iphi`` broadcast; the value of a cell depends on nothing else (no generator, no order).
    """
    h = _mix64(np.full(np.broadcast_shapes(ieta.shape, iphi.shape), seed & _MASK64, dtype=np.uint64))
    for key in (np.uint64(layer), ieta.astype(np.uint64), iphi.astype(np.uint64)):
        h = _mix64(h ^ key)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def dead_cells(
    eta: np.ndarray, phi: np.ndarray, detector: DetectorConfig, cells: int, layer: str
) -> torch.Tensor | None:
    """Which window cells of each candidate are dead (bool ``(N, cells, cells)``), or ``None`` when none can be.

    A cell of the detector's fixed grid (cell size ``window / cells``) is dead when its :func:`cell_uniforms`
    value lies below ``dead_cell_fraction``.
    """
    if detector.dead_cell_fraction == 0:
        return None
    off_eta, off_phi = window_offsets(eta, phi, detector)
    ieta = cell_indices(eta, off_eta, detector.window_eta, cells)
    iphi = cell_indices(phi, off_phi, detector.window_phi, cells)
    u = cell_uniforms(detector.dead_cell_seed, 0 if layer == "em" else 1, ieta[:, :, None], iphi[:, None, :])
    return torch.from_numpy(u < detector.dead_cell_fraction)


def simulate(
    candidates: Candidates,
    detector: DetectorConfig,
    *,
    generator: torch.Generator | None = None,
    block: int = 1024,
) -> torch.Tensor:
    """Calorimeter images of ``candidates`` seen by ``detector``.

    Args:
        candidates: photon candidates with their nearby particles.
        detector: the detector.
        generator: the stream of every random draw; the same generator state gives the same images.
        block: candidates deposited at a time (memory only; no effect on the result).

    Returns:
        float32 ``(N, 2, em_cells, em_cells)``: EM and HAD energy (GeV) per cell, eta along H, phi along W.
    """
    n = len(candidates)
    parts = _particles(candidates, detector, generator)
    em, had = _longitudinal(parts, detector, generator)
    em, had = _resolution(em, had, detector, generator)
    em, had = em * detector.em_scale, had * detector.had_scale
    noise_em = torch.randn((n, detector.em_cells, detector.em_cells), generator=generator, dtype=_F64)
    noise_had = torch.randn((n, detector.had_cells, detector.had_cells), generator=generator, dtype=_F64)
    out = torch.empty((n, 2, detector.em_cells, detector.em_cells), dtype=torch.float32)
    bounds = torch.searchsorted(parts["owner"], torch.arange(0, n + 1, dtype=torch.int64))
    eta, phi = np.asarray(candidates.eta, dtype=np.float64), np.asarray(candidates.phi, dtype=np.float64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = slice(int(bounds[start]), int(bounds[stop]))
        sub = {k: v[rows] for k, v in parts.items()}
        sub["owner"] = sub["owner"] - start
        img_em = _deposit(sub, em[rows], stop - start, detector, detector.em_cells)
        img_had = _deposit(sub, had[rows], stop - start, detector, detector.had_cells)
        img_em = _readout(
            apply_crosstalk(img_em, detector.em_crosstalk),
            noise_em[start:stop],
            detector.em_cell_noise_gev,
            gain_map(detector, img_em.shape[-1], "em"),
            detector,
            dead_cells(eta[start:stop], phi[start:stop], detector, detector.em_cells, "em"),
        )
        img_had = _readout(
            img_had,
            noise_had[start:stop],
            detector.had_cell_noise_gev,
            gain_map(detector, img_had.shape[-1], "had"),
            detector,
            dead_cells(eta[start:stop], phi[start:stop], detector, detector.had_cells, "had"),
        )
        k = detector.em_cells // detector.had_cells
        up = img_had.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1) / (k * k)
        out[start:stop, 0] = img_em.float()
        out[start:stop, 1] = up.float()
    return out


def _particles(c: Candidates, det: DetectorConfig, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Real and pileup particles, sorted by candidate, in window coordinates."""
    n = len(c)
    off_eta, off_phi = window_offsets(np.asarray(c.eta), np.asarray(c.phi), det)
    owner = torch.from_numpy(c.particle_owner)
    x = torch.from_numpy(c.p_d_eta.astype(np.float64)) + torch.from_numpy(off_eta)[owner]
    y = torch.from_numpy(c.p_d_phi.astype(np.float64)) + torch.from_numpy(off_phi)[owner]
    e = torch.from_numpy(c.p_e.astype(np.float64))
    kind = torch.from_numpy(c.p_kind.astype(np.int64))
    counts = torch.poisson(torch.full((n,), float(det.pileup_mu), dtype=_F64), generator=gen).long()
    q = int(counts.sum())
    pu_owner = torch.repeat_interleave(torch.arange(n), counts)
    pu_e = torch.empty(q, dtype=_F64).exponential_(1.0 / det.pileup_mean_gev, generator=gen)
    pu_kind = torch.where(torch.rand(q, generator=gen, dtype=_F64) < det.pileup_em_fraction, KIND_EM, KIND_HADRON)
    pu_xy = (torch.rand((q, 2), generator=gen, dtype=_F64) - 0.5) * torch.tensor([det.window_eta, det.window_phi])
    all_owner = torch.cat([owner, pu_owner])
    order = torch.argsort(all_owner, stable=True)
    return {
        "owner": all_owner[order],
        "x": torch.cat([x, pu_xy[:, 0]])[order],
        "y": torch.cat([y, pu_xy[:, 1]])[order],
        "e": torch.cat([e, pu_e])[order],
        "kind": torch.cat([kind, pu_kind.long()])[order],
    }


def _longitudinal(
    p: dict[str, torch.Tensor], det: DetectorConfig, gen: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    e, kind = p["e"], p["kind"]
    is_em = kind == KIND_EM
    mean = torch.where(is_em, det.em_particle_em_fraction, det.hadron_em_fraction).to(_F64)
    std = torch.where(is_em, det.em_particle_em_fraction_std, det.hadron_em_fraction_std).to(_F64)
    frac = (mean + std * torch.randn(e.shape, generator=gen, dtype=_F64)).clamp(0.0, 1.0)
    em, had = e * frac, e * (1 - frac)
    muon = kind == KIND_MUON
    mu_em = e.clamp(max=det.muon_em_gev)
    mu_had = torch.minimum(e - mu_em, torch.full_like(e, det.muon_had_gev))
    return torch.where(muon, mu_em, em), torch.where(muon, mu_had, had)


def _resolution(
    em: torch.Tensor, had: torch.Tensor, det: DetectorConfig, gen: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn((2, *em.shape), generator=gen, dtype=_F64)
    r_em = relative_resolution(em, det.em_stochastic, det.em_noise_term, det.em_constant)
    r_had = relative_resolution(had, det.had_stochastic, det.had_noise_term, det.had_constant)
    return (em * (1 + r_em * z[0])).clamp_min(0.0), (had * (1 + r_had * z[1])).clamp_min(0.0)


def _deposit(p: dict[str, torch.Tensor], energy: torch.Tensor, n: int, det: DetectorConfig, cells: int) -> torch.Tensor:
    """Spread each particle's layer deposit over ``cells x cells`` cells with its core + halo profile."""
    is_had = p["kind"] == KIND_HADRON
    core = torch.where(is_had, det.had_shower_core, det.em_shower_core).to(_F64)
    halo = torch.where(is_had, det.had_shower_halo, det.em_shower_halo).to(_F64)
    h = torch.where(is_had, det.had_shower_halo_fraction, det.em_shower_halo_fraction).to(_F64)
    edges_x = torch.linspace(-det.window_eta / 2, det.window_eta / 2, cells + 1, dtype=_F64)
    edges_y = torch.linspace(-det.window_phi / 2, det.window_phi / 2, cells + 1, dtype=_F64)
    owner = p["owner"]
    starts = torch.searchsorted(owner, torch.arange(n, dtype=owner.dtype))
    slot = torch.arange(len(owner)) - starts[owner]  # position of each particle within its candidate
    slots = int(slot.max()) + 1 if len(owner) else 1
    img = torch.zeros((n, cells, cells), dtype=_F64)
    for width, weight in ((core, 1 - h), (halo, h)):
        # image[n] = sum over its particles of (E fx) outer fy, as one batched matrix product over padded slots
        fx = torch.zeros((n, slots, cells), dtype=_F64)
        fy = torch.zeros((n, slots, cells), dtype=_F64)
        fx[owner, slot] = cell_fractions(p["x"], width, edges_x) * (energy * weight)[:, None]
        fy[owner, slot] = cell_fractions(p["y"], width, edges_y)
        img += torch.bmm(fx.transpose(1, 2), fy)
    return img


def _readout(
    img: torch.Tensor,
    noise: torch.Tensor,
    sigma: float,
    gains: torch.Tensor,
    det: DetectorConfig,
    dead: torch.Tensor | None,
) -> torch.Tensor:
    out = img * gains + sigma * correlate_noise(noise, det.cell_noise_correlation)
    if det.zero_suppress_sigma > 0 and sigma > 0:
        out = torch.where(out.abs() < det.zero_suppress_sigma * sigma, torch.zeros_like(out), out)
    if dead is not None:
        out = out.masked_fill(dead, 0.0)
    return out
