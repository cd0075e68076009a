"""One point of the phase diagram: a noise scale, a noise mode and a seed, run and measured.

:func:`linear_point` simulates the linear-regression model (:mod:`ninr.dynamics.theory`) and
:func:`mlp_point` trains the 3-hidden-layer ReLU MLP with in-NINR through :func:`ninr.train.train` with probe
callbacks, for noise redrawn every step or fixed per example. Each returns the point's record (sigma, k,
phase, decay times with errors, ...) and its trajectories; the ``phases`` study part
(:mod:`ninr.studies.parts.phases`) sweeps the points, and tables and plots are functions of the records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ninr.data.base import Dataset
from ninr.dynamics.decay import fit_decay
from ninr.dynamics.fixed_noise import FixedExampleNoise
from ninr.dynamics.niw import LossProbe, NIWProbe
from ninr.dynamics.phases import Series, classify_phase
from ninr.dynamics.theory.linear import decay_time, phase_boundaries
from ninr.dynamics.theory.simulate import LinearSetup, simulate_linear
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
    phase = classify_phase(a[: max(stop, 2)], status=traj.status, signed=traj.niw[: max(stop, 2)])
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
        "linear_phase": linear_label(phase.phase, bool(phase.oscillating)),
        "predicted_phase": bounds.phase(k),
        "tau_theory": decay_time(k, theory_batch(setup.batch_size, noise, setup.n_train)),
        "growth_rate": -traj.log_slope() if traj.status == "diverged" else math.nan,
        **_decay_fields("niw", t[: max(stop, 4)], a[: max(stop, 4)], floor=0.0),
        **_decay_fields("train_loss", t, traj.loss),
    }
    trajectory = {"step": t.tolist(), "niw": traj.niw.tolist(), "train_loss": traj.loss.tolist()}
    return record, trajectory


def theory_batch(batch_size: int | None, noise: str, n_train: int) -> int | None:
    """The batch size of the closed form: full-batch GD with fixed noise has no step-to-step fluctuation."""
    if batch_size is None or batch_size >= n_train:
        return None if noise == "fixed" else n_train
    return batch_size


def linear_label(phase: str, oscillating: bool) -> str:
    """The linear model's phase name: a decaying run that flips sign is ``oscillating``."""
    return "oscillating" if phase == "decay" and oscillating else phase


@dataclass(frozen=True)
class MLPPoint:
    """One MLP point: in-NINR at ``sigma`` on ``fc1`` of the MLP, trained with the config's SGD settings."""

    config: TrainConfig
    noise: str
    sigma: float
    niw_every: int = 1
    loss_every: int = 25
    probe_size: int = 1000

    def __post_init__(self) -> None:
        check_choice("noise", self.noise, NOISE_MODES)
        check_positive("sigma", self.sigma)
        for name in ("niw_every", "loss_every", "probe_size"):
            check_positive_int(name, getattr(self, name))


def probe_splits(data: Dataset, size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed train and test batches the loss probe and the curvature estimate read (their own stream)."""
    gen = make_generator(0, "phase-probe-batches")
    tr_idx = torch.randperm(len(data.x_train), generator=gen)[:size]
    te_idx = torch.randperm(len(data.x_test), generator=gen)[:size]
    return {"train": (data.x_train[tr_idx], data.y_train[tr_idx]), "test": (data.x_test[te_idx], data.y_test[te_idx])}


def mlp_point(point: MLPPoint, data: Dataset) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the in-NINR MLP at one point; returns ``(record, trajectory)``.

    ``k`` is ``lr sigma^2 lambda_max`` with ``lambda_max`` the fc1 node's curvature of the plain model at
    initialisation (:func:`ninr.methods.calibrate.nin_curvature`) on the probe batch.
    """
    base = point.config
    splits = probe_splits(data, point.probe_size)
    plain, _ = build_setup(base, data.input_shape, data.num_classes, [], channel_stats(data.x_train))
    curvature = nin_curvature(plain, *splits["train"], where="input", seed=base.seed)["fc1"]
    cfg = base.replace(methods=(MethodSpec("in-ninr", {"sigma": point.sigma}),))
    niw_probe, loss_probe = NIWProbe(every=point.niw_every), LossProbe(splits, every=point.loss_every)
    callbacks: list[Any] = [niw_probe, loss_probe]
    if point.noise == "fixed":
        callbacks.append(FixedExampleNoise(data, cfg))
    result = train(cfg, data=data, callbacks=callbacks)
    t_niw, norms = niw_probe.series("niw_norm/fc1")
    t_loss, train_loss = loss_probe.series("train_loss")
    _, test_loss = loss_probe.series("test_loss")
    phase = classify_phase(norms, train_loss, status=result.status)
    final, lr = result.final, base.lr
    record = {
        "model": "mlp",
        "noise": point.noise,
        "sigma": point.sigma,
        "seed": base.seed,
        "lr": lr,
        "curvature": curvature,
        "k": lr * point.sigma**2 * curvature,
        "status": result.status,
        "steps": final.get("step", 0),
        "phase": phase.phase,
        "phase_reason": phase.reason,
        "peak_ratio": phase.peak_ratio,
        "final_ratio": phase.final_ratio,
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
    return record, {**trajectory, "test_loss": test_loss}
