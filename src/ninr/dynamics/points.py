"""One point of the phase diagram: a noise scale, a noise mode and a seed, run and measured.

:func:`linear_point` simulates the linear-regression model (:mod:`ninr.dynamics.theory`),
:func:`linear2_point` the two-layer linear toy (:mod:`ninr.dynamics.theory.two_layer`), and
:func:`mlp_point` trains the 3-hidden-layer ReLU MLP with in-NINR (a node on ``fc1``) or full-NINR (a node at every
layer) through :func:`ninr.train.train` with probe callbacks, for noise redrawn every step or fixed per example.
Each returns the point's record (sigma, k, phase, decay times with errors, ...) and its trajectories; the ``phases``
study part (:mod:`ninr.studies.parts.phases`) sweeps the points, and tables and plots are functions of the records.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ninr.data.base import Dataset
from ninr.dynamics.decay import fit_decay
from ninr.dynamics.fixed_noise import FixedExampleNoise
from ninr.dynamics.niw import LossProbe, NIWProbe
from ninr.dynamics.observe import OBSERVE_EVERY, NodeObserver
from ninr.dynamics.phases import NodeSeries, Series, classify, classify_nodes
from ninr.dynamics.theory.linear import decay_time, phase_boundaries
from ninr.dynamics.theory.simulate import LinearSetup, simulate_linear
from ninr.dynamics.theory.two_layer import (
    TwoLayerBoundaries,
    TwoLayerSetup,
    map_peak_growth,
    map_phase,
    measure_two_layer_boundaries,
    predicted_boundaries,
    setup_from_weights,
    simulate_two_layer,
    simulation_phase,
)
from ninr.errors import check_choice, check_positive, check_positive_int
from ninr.methods.calibrate import nin_curvature
from ninr.models.layers import channel_stats
from ninr.rng import make_generator
from ninr.train.config import MethodSpec, TrainConfig
from ninr.train.run import train
from ninr.train.setup import build_setup

NOISE_MODES = ("redrawn", "fixed")
MLP_SIGMAS = tuple(float(s) for s in np.geomspace(1.0, 4096.0, 7))
"""Default MLP grid: 1 to 4096 by factors of 4 (k = lr sigma^2 lambda_max spans ~1e-5 to ~200)."""
LINEAR_SIGMAS = tuple(float(s) for s in np.geomspace(0.1, 20.0, 25))
"""Default linear grid (eta = 0.01): k from 1e-4 to 4 covers all four phases."""
LINEAR_DEFAULTS = {"eta": 0.01, "steps": 300, "n_train": 256, "dim": 4}
"""Linear model defaults: full-batch GD with a small eta, where the neglected w-a coupling is
O(k^2 eta d / B^2) and the closed form holds to ~1% (docs/dynamics.md)."""
LINEAR2_SIGMAS = tuple(float(s) for s in np.geomspace(0.1, 30.0, 26))
"""Default two-layer grid (eta = 0.01, |v|^2 + |theta|^2 = 1, so k0 = 0.01 sigma^2 from 1e-4 to 9): decoupled
(k0 < 7.3e-4 at 300 steps: sigma < 0.27, five points), decay, catapult (2 < k0 < 4: sigma 14.1-20, the points
15.1 and 19.0 at k0 = 2.29 and 3.61) and divergent (23.9 and 30 at k0 = 5.7 and 9)."""
LINEAR2_DEFAULTS = {"eta": 0.01, "steps": 300, "phi0": 0.01, "norm_sq": 1.0, "n_train": 256, "width": 8, "dim": 4}
"""Two-layer defaults: full-batch GD; initial weights with |v|^2 + |theta|^2 = 1 and v . theta = 0.01, so
psi0 = 0.01 k0: small enough that the decay|catapult edge sits within ~2% of 2 (the map's peak growth at
k0 = 2 + e is about e / psi0), large enough that a catapult at k0 = 3 peaks at ~30x within ~10 steps."""
LINEAR2_BOUNDARY_SEEDS = 5
"""Seeds of the measured boundaries recorded with each two-layer point (majority vote; odd, so no ties)."""
LINEAR_FIT_FLOOR = 1e-3
"""The linear NIW's decay is fitted until |a| first falls below 1e-3 |a0|: below that the w-a coupling
(a slower mode at rate ~eta) takes over the trajectory."""


def _decay_fields(prefix: str, t: Series, v: Series, *, floor: float | None = None) -> dict[str, Any]:
    fit = fit_decay(t, v, floor=floor)
    return {
        f"tau_{prefix}": fit.tau,
        f"tau_{prefix}_err": fit.tau_err,
        f"tau_{prefix}_ok": fit.ok,
        f"tau_{prefix}_reason": fit.reason,
    }


def linear_point(setup: LinearSetup) -> tuple[dict[str, Any], dict[str, Any]]:
    """Simulate the linear model at one point; returns ``(record, trajectory)``.

    The NIW's decay is fitted until ``|a|`` first falls below :data:`LINEAR_FIT_FLOOR` of its start; the
    record carries the measured phase, the closed form's predicted phase and decay time at the point's ``k``.
    """
    eta, steps, noise = setup.eta, setup.steps, setup.noise
    bounds = phase_boundaries(steps, setup.batch_size or setup.n_train)
    traj = simulate_linear(setup)
    a = np.abs(traj.niw)
    below = a < LINEAR_FIT_FLOOR * a[0]
    stop = int(np.argmax(below)) if below.any() else len(a)
    t = np.arange(len(a))
    k = setup.k if noise == "redrawn" else eta * traj.extra["fixed_noise_power"]
    phase = classify(linear_series(traj.niw, k), status=traj.status)
    record = {
        "model": "linear",
        "noise": noise,
        "sigma": setup.sigma,
        "seed": setup.seed,
        "lr": eta,
        "k": k,
        "batch_size": setup.batch_size,
        "steps": steps,
        "status": traj.status,
        "phase": phase.phase,
        "phase_reason": phase.reason,
        "oscillating": phase.oscillating,
        "rho": phase.rho,
        "linear_phase": linear_label(phase.phase, bool(phase.oscillating)),
        "predicted_phase": bounds.phase(k),
        "tau_theory": decay_time(k, theory_batch(setup.batch_size, noise, setup.n_train)),
        "growth_rate": -traj.log_slope() if traj.status == "diverged" else math.nan,
        **_decay_fields("niw", t[: max(stop, 4)], a[: max(stop, 4)], floor=0.0),
        **_decay_fields("train_loss", t, traj.loss),
    }
    trajectory = {"step": t.tolist(), "niw": traj.niw.tolist(), "train_loss": traj.loss.tolist()}
    return record, trajectory


def linear_series(niw: np.ndarray, k: float) -> NodeSeries:
    """The one-layer model's observables: its NIW is its top mode, ``k`` is exact (curvature 1)."""
    steps = np.arange(len(niw), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        energy = 0.5 * k * niw**2
    return NodeSeries(steps, niw, energy, np.array([0.0]), np.array([k]))


def theory_batch(batch_size: int | None, noise: str, n_train: int) -> int | None:
    """The batch size of the closed form: full-batch GD with fixed noise has no step-to-step fluctuation."""
    if batch_size is None or batch_size >= n_train:
        return None if noise == "fixed" else n_train
    return batch_size


def linear_label(phase: str, oscillating: bool) -> str:
    """The linear model's phase name: a decaying run that flips sign is ``oscillating``."""
    return "oscillating" if phase == "decay" and oscillating else phase


def linear2_series(run: dict[str, np.ndarray], k_key: str = "k") -> NodeSeries:
    """The two-layer toy's observables for the classifier: the NIW's top-mode projection ``theta . v / |v|``, its
    noise energy, the noise-averaged loss, and ``k`` exact at every step (``run[k_key]``: ``"k"``, the
    ``(v, theta)`` block's ``eta sigma^2 (|v|^2 + |theta|^2)``, which sets the toy's stability, or ``"k_niw"``,
    the NIW block's ``eta sigma^2 |v|^2``)."""
    steps = np.asarray(run["step"], dtype=np.float64)
    return NodeSeries(steps, run["top_projection"], run["noise_energy"], steps, run[k_key], run["loss"])


@dataclass(frozen=True)
class Linear2Point:
    """One two-layer point: the sweep's initial weights (``norm_sq = |v|^2 + |theta|^2``, ``phi0 = v . theta``) at
    noise scale ``sigma``, so ``k0 = lr sigma^2 norm_sq`` and ``psi0 = lr sigma^2 phi0``."""

    sigma: float
    seed: int
    lr: float = float(LINEAR2_DEFAULTS["eta"])
    steps: int = int(LINEAR2_DEFAULTS["steps"])
    batch_size: int | None = None
    noise: str = "redrawn"
    phi0: float = float(LINEAR2_DEFAULTS["phi0"])
    norm_sq: float = float(LINEAR2_DEFAULTS["norm_sq"])
    niw_share: float = 0.5
    label_noise: float = 0.0
    teacher: str = "zero"
    n_train: int = int(LINEAR2_DEFAULTS["n_train"])
    width: int = int(LINEAR2_DEFAULTS["width"])
    dim: int = int(LINEAR2_DEFAULTS["dim"])
    boundary_seeds: int = LINEAR2_BOUNDARY_SEEDS

    def setup(self) -> TwoLayerSetup:
        return setup_from_weights(
            self.sigma, self.lr, self.norm_sq, self.phi0, steps=self.steps, batch_size=self.batch_size,
            n_train=self.n_train, width=self.width, dim=self.dim, niw_share=self.niw_share, teacher=self.teacher,
            label_noise=self.label_noise, noise=self.noise,
        )  # fmt: skip


def measured_two_layer_boundaries(point: Linear2Point) -> TwoLayerBoundaries:
    """The boundaries measured at ``point``'s initial weights (its sigma and seed play no part).

    Bisection in ``k0`` with a majority over ``range(point.boundary_seeds)``
    (:func:`ninr.dynamics.theory.two_layer.measure_two_layer_boundaries`, 0.5% relative), so every point of a
    sweep carries the same numbers; cached per process.
    """
    return _measured_boundaries(replace(point, sigma=1.0, seed=0))


@functools.lru_cache(maxsize=16)
def _measured_boundaries(reference: Linear2Point) -> TwoLayerBoundaries:
    return measure_two_layer_boundaries(reference.setup(), tuple(range(reference.boundary_seeds)), rel_tol=5e-3)


def linear2_point(point: Linear2Point) -> tuple[dict[str, Any], dict[str, Any]]:
    """Simulate the two-layer toy at one point; returns ``(record, trajectory)``.

    The record carries these labels: ``rule_phase`` (:func:`ninr.dynamics.theory.two_layer.simulation_phase` on
    ``phi``); ``phase`` and ``phase_niw_block`` (the phase classifier, :func:`ninr.dynamics.phases.classify`, on
    :func:`linear2_series` with the exact ``k`` of the ``(v, theta)`` block and with the NIW block's ``k_niw``);
    ``predicted_phase`` (the predicted boundaries in ``k0``); the map's own phase and peak growth at the point's
    ``k0`` and ``psi0`` over the horizon (``map_phase``, ``map_peak_growth``); the predicted and the measured
    boundaries (``predicted_*``, ``measured_*``; NaN with fixed noise or when ``boundary_seeds`` is 0); and the
    NIW decay time of ``|phi|`` after its peak, with the one-layer closed form's ``tau_theory`` at ``k0`` (the
    small-``psi`` decay factor is ``1 - u k``).
    """
    setup = point.setup()
    traj = simulate_two_layer(setup, (point.seed,))
    run = traj.run(0)
    status = traj.status[0]
    phi = np.abs(run["phi"])
    k0 = float(run["k"][0])  # eta sigma^2 norm_sq, with fixed noise the table's mean eps^2 for sigma^2
    psi0 = k0 * point.phi0 / point.norm_sq
    theory_b = theory_batch(point.batch_size, point.noise, point.n_train)
    predicted = predicted_boundaries(point.steps, theory_b)
    # Measured in k0 = eta sigma^2 norm_sq with redrawn noise only: a fixed table's power differs by seed.
    measured = (
        measured_two_layer_boundaries(point)
        if point.boundary_seeds and point.noise == "redrawn"
        else TwoLayerBoundaries(math.nan, math.nan, math.nan)
    )
    classified = classify(linear2_series(run, "k"), status=status)
    niw_block = classify(linear2_series(run, "k_niw"), status=status)
    peak = int(np.argmax(phi))
    below = phi[peak:] < LINEAR_FIT_FLOOR * phi[peak]
    stop = peak + (int(np.argmax(below)) if below.any() else len(phi) - peak)
    t = np.arange(len(phi))
    record = {
        "model": "linear2",
        "noise": point.noise,
        "sigma": point.sigma,
        "seed": point.seed,
        "lr": point.lr,
        "k": k0,
        "psi0": psi0,
        "phi0": point.phi0,
        "norm_sq": point.norm_sq,
        "batch_size": point.batch_size,
        "steps": point.steps,
        "status": status,
        "rule_phase": simulation_phase(traj)[0],
        "phase": classified.phase,
        "phase_reason": classified.reason,
        "phase_niw_block": niw_block.phase,
        "predicted_phase": predicted.phase(k0),
        "map_phase": map_phase(k0, psi0, point.steps),
        "peak_growth": float(phi.max() / phi[0]),
        "map_peak_growth": map_peak_growth(k0, psi0, point.steps),
        "peak_step": peak,
        "final_ratio": float(phi[-1] / phi[0]),
        "k_min": float(np.min(run["k"])),
        "k_final": float(run["k"][-1]),
        "tau_theory": decay_time(k0, theory_b),
        **{f"predicted_{name}": value for name, value in predicted.as_dict().items()},
        "measured_decay_catapult": measured.decay_catapult,
        "measured_catapult_divergent": measured.catapult_divergent,
        "boundary_seeds": point.boundary_seeds,
        **_decay_fields("niw", t[peak : max(stop, peak + 4)] - peak, phi[peak : max(stop, peak + 4)], floor=0.0),
    }
    trajectory = {key: value.tolist() for key, value in run.items()}
    return record, trajectory


MLP_WHERE = {"input": "in-ninr", "all": "full-ninr"}
"""Where the MLP's nodes go (``ninr.nn.attach.attach_nins``' ``where``) and the NINR method that puts them there:
``"input"`` one node on ``fc1`` (in-NINR), ``"all"`` a node on every layer, ``fc1 .. fc3`` and ``out`` (full-NINR)."""


@dataclass(frozen=True)
class MLPPoint:
    """One MLP point: in-NINR (``where="input"``) or full-NINR (``"all"``) at ``sigma``, trained with the config's
    SGD settings."""

    config: TrainConfig
    noise: str
    sigma: float
    niw_every: int = 1
    loss_every: int = 25
    probe_size: int = 1000
    observe_every: int = OBSERVE_EVERY
    where: str = "input"

    def __post_init__(self) -> None:
        check_choice("noise", self.noise, NOISE_MODES)
        check_choice("where", self.where, tuple(MLP_WHERE))
        check_positive("sigma", self.sigma)
        for name in ("niw_every", "loss_every", "probe_size", "observe_every"):
            check_positive_int(name, getattr(self, name))

    @property
    def method(self) -> str:
        """The NINR method that puts the nodes ``where`` says."""
        return MLP_WHERE[self.where]


def probe_splits(data: Dataset, size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed train and test batches the loss probe and the curvature estimate read (their own stream)."""
    gen = make_generator(0, "phase-probe-batches")
    tr_idx = torch.randperm(len(data.x_train), generator=gen)[:size]
    te_idx = torch.randperm(len(data.x_test), generator=gen)[:size]
    return {"train": (data.x_train[tr_idx], data.y_train[tr_idx]), "test": (data.x_test[te_idx], data.y_test[te_idx])}


def mlp_point(point: MLPPoint, data: Dataset) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the NINR MLP at one point; returns ``(record, trajectory)``.

    ``curvature`` is the largest ``lambda_max`` over the nodes ``point.where`` attaches (``curvature_node``; every
    node's in ``curvatures``), of the plain model at initialisation (:func:`ninr.methods.calibrate.nin_curvature`)
    on the probe batch, and ``k`` is ``lr sigma^2 curvature``. The phase comes from the nodes' dynamics along the
    run (:class:`~ninr.dynamics.observe.NodeObserver`: ``k(t)`` of the noisy loss; :func:`classify_nodes`):
    ``phase_node`` decided it, and the record carries that node's maximum, final and accumulated ``k`` and
    ``k_after``, the median of its ``k`` over the second half of the measurements (after the sharpening
    transient). The NIW decay time ``tau_niw`` and the trajectory's ``niw_norm`` are those of the deciding node
    (``niw_node``): with full-NINR the nodes' curvatures differ by orders of magnitude, and the node that decided
    the phase is the one whose dynamics the verdict describes.
    """
    base = point.config
    splits = probe_splits(data, point.probe_size)
    plain, _ = build_setup(base, data.input_shape, data.num_classes, [], channel_stats(data.x_train))
    curvatures = nin_curvature(plain, *splits["train"], where=point.where, seed=base.seed)
    top = max(curvatures, key=lambda name: curvatures[name])
    cfg = base.replace(methods=(MethodSpec(point.method, {"sigma": point.sigma}),))
    niw_probe, loss_probe = NIWProbe(every=point.niw_every), LossProbe(splits, every=point.loss_every)
    observer = NodeObserver(*splits["train"], every=point.observe_every, seed=base.seed)
    callbacks: list[Any] = [niw_probe, loss_probe, observer]
    if point.noise == "fixed":
        callbacks.append(FixedExampleNoise(data, cfg))
    result = train(cfg, data=data, callbacks=callbacks)
    verdict = classify_nodes(observer.series(), status=result.status)
    node = verdict.node
    t_niw, norms = niw_probe.series(f"niw_norm/{node}")
    t_loss, train_loss = loss_probe.series("train_loss")
    _, test_loss = loss_probe.series("test_loss")
    phase = verdict.result
    final, lr = result.final, base.lr
    record = {
        "model": "mlp",
        "where": point.where,
        "noise": point.noise,
        "sigma": point.sigma,
        "seed": base.seed,
        "lr": lr,
        "curvature": curvatures[top],
        "curvature_node": top,
        "curvatures": dict(curvatures),
        "k": lr * point.sigma**2 * curvatures[top],
        "k_max": phase.k_max,
        "k_final": phase.k_final,
        "k_sum": phase.k_sum,
        "k_after": k_after_transient(observer.k_records(), node),
        "energy_rise": phase.energy_rise,
        "rho": phase.rho,
        "status": result.status,
        "steps": final.get("step", 0),
        "phase": phase.phase,
        "phase_reason": phase.reason,
        "phase_node": node,
        "phase_nodes": dict(verdict.nodes),
        "niw_node": node,
        "niw_norm_initial": norms[0],
        "niw_norm_final": norms[-1],
        "test_acc": final.get("test_acc", math.nan),
        "test_loss": final.get("test_loss", math.nan),
        "train_loss": final.get("train_loss", math.nan),
        **_decay_fields("niw", t_niw, norms),
        **_decay_fields("train_loss", t_loss, train_loss),
        **_decay_fields("test_loss", t_loss, test_loss),
    }
    trajectory = {"niw_step": t_niw, "niw_norm": norms, "loss_step": t_loss, "train_loss": train_loss}
    return record, {**trajectory, "test_loss": test_loss, "k_rows": observer.k_records()}


def k_after_transient(k_rows: Sequence[Mapping[str, Any]], node: str) -> float:
    """The median of ``node``'s measured ``k`` over the second half of its measurements (NaN without any): the
    curvature a node sits at once the sharpening of the first hundreds of steps is over (docs/dynamics.md
    section 6), as the ``phase`` hook's report reads it."""
    ks = [float(r["k"]) for r in k_rows if r.get("node") == node]
    return float(np.median(ks[len(ks) // 2 :])) if ks else math.nan
