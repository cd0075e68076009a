"""The ``phases`` study part: NIN decay times and phases against sigma, for linear regression and the MLP.

Each run is one grid point (model, noise mode, sigma, seed) of the phase-diagram experiment of
``ninr phases``: :func:`ninr.dynamics.experiment.run_linear` or :func:`~ninr.dynamics.experiment.run_mlp`
called on a one-point :class:`~ninr.dynamics.experiment.SweepConfig`, so the dynamics, fits and phase
labels are exactly those of ``ninr phases``. Runs go through the results store like the table's (one
file per run, ``--resume``, any executor). The section of a preset::

    [phases]
    seeds = [0]

    [phases.options.linear]          # the linear-regression model (ninr.dynamics.theory); omit to skip it
    noise = ["redrawn", "fixed"]     # default: both
    # sigmas = [...]                 # default: the 25-point grid of `ninr phases --model linear`
    steps = 300                      # also: lr (eta), batch_size (default: full batch)

    [phases.options.mlp]             # in-NINR on fc1 of the 784-256-256-256-10 MLP; omit to skip it
    sigmas = [4.0, 16.0, 64.0, 256.0, 1024.0]   # default: 1 to 4096 by factors of 4
    epochs = 4
    train_examples = 6400            # a seeded subset of the training set (default: all of it)
    # also: lr, batch_size, niw_every, loss_every, probe_size, dataset, dataset_kwargs

Records: per run, a few rows of its NIW-norm trajectory (``step``, ``niw_norm``; at most
``TRAJECTORY_POINTS``) and a ``final`` row carrying the run's record from ``ninr phases`` (sigma, k,
phase, decay times with errors, the predicted phase and theory decay time for the linear model,
losses and test accuracy for the MLP), without its wall time. The report is
:func:`ninr.report.phases.phases_part_report`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ninr.data.base import Dataset
from ninr.dynamics.experiment import LINEAR_DEFAULTS, LINEAR_SIGMAS, MLP_SIGMAS, NOISE_MODES, SweepConfig
from ninr.errors import ConfigError, check_positive_int, did_you_mean, fail
from ninr.perf import num_threads
from ninr.rng import make_generator
from ninr.studies.config import Arch, StudyConfig, Variant
from ninr.studies.parts import StudyPart, register_part
from ninr.studies.run import RUN_THREADS, Records, to_records
from ninr.studies.sweep import RunSpec, check_unique
from ninr.train.config import MethodSpec, TrainConfig

MODELS = ("linear", "mlp")
MLP_PROBE_KEYS = ("niw_every", "loss_every", "probe_size")
COMMON_KEYS = ("sigmas", "noise", "lr", "batch_size")
MODEL_KEYS = {
    "linear": (*COMMON_KEYS, "steps"),
    "mlp": (
        *COMMON_KEYS,
        "epochs",
        "train_examples",
        "niw_every",
        "loss_every",
        "probe_size",
        "dataset",
        "dataset_kwargs",
    ),
}
DEFAULT_GRIDS = {"linear": LINEAR_SIGMAS, "mlp": MLP_SIGMAS}
TRAJECTORY_POINTS = 60
"""NIW-norm samples kept per run in the records (evenly spaced, first and last included): enough to
draw the decay, growth or catapult of a trajectory, few enough to keep the records small."""


def _check_keys(where: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r}{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})"
            )


def _floats(where: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int | float) for v in value):
        raise fail(where, "a non-empty list of numbers", value)
    return tuple(float(v) for v in value)


def model_settings(model: str, raw: Any) -> tuple[tuple[float, ...], tuple[str, ...], dict[str, Any]]:
    """One model's sweep from its ``[phases.options.MODEL]`` table: ``(sigmas, noise modes, settings)``.

    ``settings`` holds every scalar setting with its default filled in (they join each run's id);
    the grid and noise modes do not, so adding a sigma keeps the finished runs.
    """
    where = f"[phases.options.{model}]"
    if not isinstance(raw, Mapping):
        raise fail(where, "a table", raw)
    _check_keys(where, raw, MODEL_KEYS[model])
    sigmas = _floats(f"{where}.sigmas", raw["sigmas"]) if "sigmas" in raw else DEFAULT_GRIDS[model]
    noise = raw.get("noise", list(NOISE_MODES))
    if not isinstance(noise, list) or not noise:
        raise fail(f"{where}.noise", f"a non-empty list of {', '.join(NOISE_MODES)}", noise)
    fields = {k: v for k, v in raw.items() if k in ("lr", "batch_size", "steps", "epochs", *MLP_PROBE_KEYS)}
    try:
        sweep = SweepConfig(model=model, sigmas=sigmas, noise=tuple(noise), **fields)
        if sweep.batch_size is not None:
            check_positive_int("batch_size", sweep.batch_size)
        if sweep.steps is not None:
            check_positive_int("steps", sweep.steps)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if len(set(sigmas)) != len(sigmas) or len(set(noise)) != len(noise):
        raise fail(where, "free of repeated sigmas and noise modes", {"sigmas": sigmas, "noise": noise})
    settings: dict[str, Any]
    if model == "linear":
        settings = {
            "lr": sweep.learning_rate,
            "steps": sweep.steps or int(LINEAR_DEFAULTS["steps"]),
            "batch_size": sweep.batch_size,
            "n_train": int(LINEAR_DEFAULTS["n_train"]),
            "dim": int(LINEAR_DEFAULTS["dim"]),
        }
    else:
        n = raw.get("train_examples")
        kwargs = raw.get("dataset_kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise fail(f"{where}.dataset_kwargs", "a table", kwargs)
        settings = {
            "lr": sweep.learning_rate,
            "epochs": sweep.epochs,
            "batch_size": sweep.batch_size or 64,
            "train_examples": None if n is None else check_positive_int(f"{where}.train_examples", n),
            "dataset": str(raw.get("dataset", "fashion-mnist")),
            "dataset_kwargs": dict(kwargs),
            **{k: getattr(sweep, k) for k in MLP_PROBE_KEYS},
        }
    return sigmas, tuple(noise), settings


def _check_study(study: StudyConfig) -> None:
    """The phases section is seeds plus per-model options: a table part's keys there are mistakes."""
    if study.train or study.hooks:
        raise ConfigError(
            "[phases]: set the sweep in [phases.options.linear] / [phases.options.mlp], not train or hooks"
        )
    if study.variants != (Variant("None"),) or study.archs != (Arch(str(study.train.get("model", "mlp"))),):
        raise ConfigError("[phases]: `arch` and `variant` belong to the table part; use [phases.options.MODEL]")
    if not study.options:
        raise ConfigError("[phases]: no model to sweep; add [phases.options.linear] and/or [phases.options.mlp]")
    _check_keys("[phases.options]", study.options, MODELS)


def _train_config(model: str, sigma: float, seed: int, settings: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of a grid point: the MLP's is the one ``run_mlp`` trains; the linear model's names its
    lr, steps, seed and sigma only (the simulation itself is described by the run's options)."""
    methods = (MethodSpec("in-ninr", {"sigma": sigma}),)
    if model == "linear":
        batch = settings["batch_size"] or settings["n_train"]
        steps = settings["steps"]
        return TrainConfig(
            dataset="synthetic", model="linear", lr=settings["lr"], batch_size=batch, epochs=1, max_steps=steps,
            seed=seed, methods=methods,
        )  # fmt: skip
    return TrainConfig(
        dataset=settings["dataset"],
        dataset_kwargs=settings["dataset_kwargs"],
        lr=settings["lr"],
        epochs=settings["epochs"],
        seed=seed,
        batch_size=settings["batch_size"],
        methods=methods,
    )


def expand_phases(study: StudyConfig, study_name: str) -> list[RunSpec]:
    """The runs of the phases section: per model (file order), noise mode, sigma and seed."""
    _check_study(study)
    specs = []
    for model, raw in study.options.items():
        sigmas, noises, settings = model_settings(model, raw)
        for noise in noises:
            for sigma in sigmas:
                for seed in study.seeds:
                    options = {"model": model, "noise": noise, "sigma": sigma, **settings}
                    train = _train_config(model, sigma, seed, settings)
                    label = f"{noise} sigma={sigma:.4g}"
                    specs.append(RunSpec(study.part, study_name, model, label, seed, train, None, (), options))
    check_unique(specs)
    return specs


@functools.lru_cache(maxsize=2)
def training_data(dataset: str, kwargs_json: str, train_examples: int | None) -> Dataset:
    """The MLP's data: ``dataset`` with a seeded subset of ``train_examples`` training images.

    The subset is drawn from its own fixed stream (not the run's seed), so every seed and sigma sees the
    same examples. Cached per process: loading Fashion-MNIST takes longer than a short run's setup.
    """
    from ninr.data import load_dataset

    data = load_dataset(dataset, **json.loads(kwargs_json))
    if train_examples is None:
        return data
    n = len(data.x_train)
    if train_examples > n:
        raise fail("train_examples", f"at most the {n} training images of {dataset}", train_examples)
    idx = torch.randperm(n, generator=make_generator(0, "phases-train-subset"))[:train_examples]
    return dataclasses.replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])


def _sweep_config(spec: RunSpec) -> SweepConfig:
    o = spec.options
    common = {"sigmas": (float(o["sigma"]),), "seeds": (spec.seed,), "noise": (str(o["noise"]),), "lr": o["lr"]}
    if o["model"] == "linear":
        return SweepConfig(model="linear", steps=o["steps"], batch_size=o["batch_size"], **common)
    probes = {k: o[k] for k in MLP_PROBE_KEYS}
    return SweepConfig(model="mlp", epochs=o["epochs"], batch_size=o["batch_size"], **probes, **common)


def _thin(steps: Sequence[float], values: Sequence[float]) -> list[dict[str, Any]]:
    """At most ``TRAJECTORY_POINTS`` evenly spaced samples, first and last included."""
    n = len(values)
    keep = sorted({round(i) for i in np.linspace(0, n - 1, min(n, TRAJECTORY_POINTS))}) if n else []
    return [{"step": int(steps[i]), "niw_norm": float(values[i])} for i in keep]


def run_phase(spec: RunSpec) -> Records:
    """The records of one grid point (the part's run function; pure and picklable)."""
    from ninr.dynamics.experiment import run_linear, run_mlp

    o = spec.options
    config = _sweep_config(spec)
    # Fits of diverged trajectories overflow on the way to "no decay": expected, not worth a warning.
    with num_threads(RUN_THREADS), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if o["model"] == "linear":
            records, trajectories = run_linear(config)
            traj = trajectories[0]
            rows = _thin(traj["step"], [abs(a) for a in traj["niw"]])
            extra = {"n_train": int(LINEAR_DEFAULTS["n_train"]), "dim": int(LINEAR_DEFAULTS["dim"])}
        else:
            kwargs = json.dumps(dict(o["dataset_kwargs"]), sort_keys=True)
            data = training_data(str(o["dataset"]), kwargs, o["train_examples"])
            records, trajectories = run_mlp(config, data)
            traj = trajectories[0]
            rows = _thin(traj["niw_step"], traj["niw_norm"])
            extra = {"batch_size": o["batch_size"], "train_examples": len(data.x_train), "dataset": o["dataset"]}
    summary = {k: v for k, v in records[0].items() if k != "wall_s"}  # wall-clock: kept beside the records
    return to_records(spec, rows, str(summary["status"]), {**summary, **extra})


PHASES_PART = register_part(
    "phases",
    StudyPart(
        title="Phases of NIN dynamics: decay time against sigma",
        run=run_phase,
        report="ninr.report.phases:phases_part_report",
        expand=expand_phases,
        order=30,
    ),
)
