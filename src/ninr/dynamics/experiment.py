"""The phase-diagram experiment: sweep sigma on a log grid, record decay times and phases.

``run_linear`` simulates the linear-regression model (ninr.dynamics.theory) and ``run_mlp`` trains the
3-hidden-layer ReLU MLP on Fashion-MNIST with in-NINR through :func:`ninr.train.train` with probe
callbacks, for noise redrawn every step and noise fixed per example. Both return tidy records (one per
run) and trajectories; tables and plots are functions of the records (:mod:`ninr.dynamics.report`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ninr.data.base import Dataset
from ninr.dynamics.decay import fit_decay
from ninr.dynamics.fixed_noise import FixedExampleNoise
from ninr.dynamics.niw import LossProbe, NIWProbe
from ninr.dynamics.phases import Series, classify_phase
from ninr.errors import check_choice, check_positive, check_positive_int
from ninr.methods.calibrate import nin_curvature
from ninr.rng import make_generator

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


@dataclass(frozen=True)
class SweepConfig:
    """One phase sweep."""

    model: str = "linear"
    sigmas: tuple[float, ...] = ()
    seeds: tuple[int, ...] = (0,)
    noise: tuple[str, ...] = NOISE_MODES
    lr: float | None = None  # default: 0.05 (MLP, the TrainConfig default) or LINEAR_DEFAULTS["eta"]
    epochs: int = 2  # MLP epochs
    steps: int | None = None  # linear steps (default LINEAR_DEFAULTS["steps"])
    batch_size: int | None = None  # MLP: 64; linear: None = full batch
    niw_every: int = 1
    loss_every: int = 25
    probe_size: int = 1000

    def __post_init__(self) -> None:
        check_choice("model", self.model, ("linear", "mlp"))
        for n in self.noise:
            check_choice("noise", n, NOISE_MODES)
        for s in self.sigmas:
            check_positive("sigmas", s)
        if self.lr is not None:
            check_positive("lr", self.lr)
        check_positive_int("epochs", self.epochs)
        for name in ("niw_every", "loss_every", "probe_size"):
            check_positive_int(name, getattr(self, name))

    @property
    def grid(self) -> tuple[float, ...]:
        return self.sigmas or (LINEAR_SIGMAS if self.model == "linear" else MLP_SIGMAS)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.05 if self.model == "mlp" else LINEAR_DEFAULTS["eta"])


Progress = Callable[[str], None]


def _decay_fields(prefix: str, t: Series, v: Series, *, floor: float | None = None) -> dict[str, Any]:
    fit = fit_decay(t, v, floor=floor)
    return {
        f"tau_{prefix}": fit.tau,
        f"tau_{prefix}_err": fit.tau_err,
        f"tau_{prefix}_ok": fit.ok,
        f"tau_{prefix}_reason": fit.reason,
    }


def run_linear(
    config: SweepConfig, progress: Progress | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Simulate the linear model over the grid; returns ``(records, trajectories)``."""
    from ninr.dynamics.theory.linear import decay_time, phase_boundaries
    from ninr.dynamics.theory.simulate import LinearSetup, simulate_linear

    eta = config.learning_rate
    steps = config.steps or int(LINEAR_DEFAULTS["steps"])
    n_train = int(LINEAR_DEFAULTS["n_train"])
    bounds = phase_boundaries(steps, config.batch_size or n_train)
    records, trajectories = [], []
    for seed in config.seeds:
        for noise in config.noise:
            for sigma in config.grid:
                setup = LinearSetup(
                    sigma=sigma,
                    eta=eta,
                    steps=steps,
                    batch_size=config.batch_size,
                    n_train=n_train,
                    dim=int(LINEAR_DEFAULTS["dim"]),
                    noise=noise,
                    seed=seed,
                )
                start = time.perf_counter()
                traj = simulate_linear(setup)
                a = np.abs(traj.niw)
                stop = int(np.argmax(a < LINEAR_FIT_FLOOR * a[0])) if (a < LINEAR_FIT_FLOOR * a[0]).any() else len(a)
                t = np.arange(len(a))
                k = setup.k if noise == "redrawn" else eta * traj.extra["fixed_noise_power"]
                phase = classify_phase(a[: max(stop, 2)], status=traj.status, signed=traj.niw[: max(stop, 2)])
                rec = {
                    "model": "linear",
                    "noise": noise,
                    "sigma": sigma,
                    "seed": seed,
                    "lr": eta,
                    "k": k,
                    "batch_size": config.batch_size,
                    "steps": steps,
                    "status": traj.status,
                    "phase": phase.phase,
                    "phase_reason": phase.reason,
                    "oscillating": phase.oscillating,
                    "linear_phase": _linear_label(phase.phase, bool(phase.oscillating)),
                    "predicted_phase": bounds.phase(k),
                    "tau_theory": decay_time(k, _theory_batch(config.batch_size, noise, n_train)),
                    "growth_rate": -traj.log_slope() if traj.status == "diverged" else math.nan,
                    **_decay_fields("niw", t[: max(stop, 4)], a[: max(stop, 4)], floor=0.0),
                    **_decay_fields("train_loss", t, traj.loss),
                    "wall_s": time.perf_counter() - start,
                }
                records.append(rec)
                trajectories.append(
                    {
                        "noise": noise,
                        "sigma": sigma,
                        "seed": seed,
                        "step": t.tolist(),
                        "niw": traj.niw.tolist(),
                        "train_loss": traj.loss.tolist(),
                    }
                )
                if progress:
                    progress(f"linear {noise} sigma={sigma:.4g} k={k:.3g}: {rec['linear_phase']}")
    return records, trajectories


def _theory_batch(batch_size: int | None, noise: str, n_train: int) -> int | None:
    """The batch size of the closed form: full-batch GD with fixed noise has no step-to-step fluctuation."""
    if batch_size is None or batch_size >= n_train:
        return None if noise == "fixed" else n_train
    return batch_size


def _linear_label(phase: str, oscillating: bool) -> str:
    """The linear model's phase name: a decaying run that flips sign is ``oscillating``."""
    return "oscillating" if phase == "decay" and oscillating else phase


def run_mlp(
    config: SweepConfig, data: Dataset, progress: Progress | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train the in-NINR MLP over the grid; returns ``(records, trajectories)``."""
    from ninr.models.layers import channel_stats
    from ninr.train import MethodSpec, TrainConfig, build_setup, train

    lr = config.learning_rate
    records, trajectories = [], []
    probe_gen = make_generator(0, "phase-probe-batches")
    tr_idx = torch.randperm(len(data.x_train), generator=probe_gen)[: config.probe_size]
    te_idx = torch.randperm(len(data.x_test), generator=probe_gen)[: config.probe_size]
    splits = {"train": (data.x_train[tr_idx], data.y_train[tr_idx]), "test": (data.x_test[te_idx], data.y_test[te_idx])}
    for seed in config.seeds:
        base = TrainConfig(lr=lr, epochs=config.epochs, seed=seed, batch_size=config.batch_size or 64)
        plain, _ = build_setup(base, data.input_shape, data.num_classes, [], channel_stats(data.x_train))
        curvature = nin_curvature(plain, *splits["train"], where="input", seed=seed)["fc1"]
        for noise in config.noise:
            for sigma in config.grid:
                cfg = base.replace(methods=(MethodSpec("in-ninr", {"sigma": sigma}),))
                niw_probe, loss_probe = NIWProbe(every=config.niw_every), LossProbe(splits, every=config.loss_every)
                callbacks: list[Any] = [niw_probe, loss_probe]
                if noise == "fixed":
                    callbacks.append(FixedExampleNoise(data, cfg))
                start = time.perf_counter()
                result = train(cfg, data=data, callbacks=callbacks)
                rec, traj = _mlp_record(result, niw_probe, loss_probe, sigma, noise, seed, lr, curvature)
                rec["wall_s"] = time.perf_counter() - start
                records.append(rec)
                trajectories.append(traj)
                if progress:
                    progress(
                        f"mlp {noise} sigma={sigma:.4g} k={rec['k']:.3g}: {rec['phase']} "
                        f"(test_acc {rec['test_acc']:.3f}, {rec['wall_s']:.0f}s)"
                    )
    return records, trajectories


def _mlp_record(
    result: Any,
    niw_probe: NIWProbe,
    loss_probe: LossProbe,
    sigma: float,
    noise: str,
    seed: int,
    lr: float,
    curvature: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    t_niw, norms = niw_probe.series("niw_norm/fc1")
    t_loss, train_loss = loss_probe.series("train_loss")
    _, test_loss = loss_probe.series("test_loss")
    phase = classify_phase(norms, train_loss, status=result.status)
    final = result.final
    rec = {
        "model": "mlp",
        "noise": noise,
        "sigma": sigma,
        "seed": seed,
        "lr": lr,
        "curvature": curvature,
        "k": lr * sigma**2 * curvature,
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
    traj = {
        "noise": noise,
        "sigma": sigma,
        "seed": seed,
        "niw_step": t_niw,
        "niw_norm": norms,
        "loss_step": t_loss,
        "train_loss": train_loss,
        "test_loss": test_loss,
    }
    return rec, traj
