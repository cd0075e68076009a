"""The ``phases`` part: NIN decay times and phases against sigma, for linear regression, the two-layer toy and the MLP.

Each run is one point (model, noise mode, sigma, seed) of the phase diagram (:mod:`ninr.dynamics.points`).
A preset's section (``ninr phases`` builds the same section from its flags)::

    [phases]
    seeds = [0]

    [phases.options.linear]          # the linear-regression model (ninr.dynamics.theory); omit to skip it
    noise = ["redrawn", "fixed"]     # default: both
    # sigmas = [...]                 # default: the 25-point grid from 0.1 to 20
    steps = 300                      # also: lr (eta, default 0.01), batch_size (default: full batch)

    [phases.options.linear2]         # the two-layer linear toy (ninr.dynamics.theory.two_layer); omit to skip it
    # sigmas = [...]                 # default: 26 points from 0.1 to 30 (k0 = 0.01 sigma^2: all four phases)
    # noise = ["redrawn", "fixed"]   # default: both
    steps = 300                      # also: lr, batch_size, noise, phi0, norm_sq, niw_share, label_noise,
                                     # teacher, boundary_seeds

    [phases.options.mlp]             # NINR on the 784-256-256-256-10 MLP; omit to skip it
    where = "input"                  # "input": in-NINR, a node on fc1 (default); "all": full-NINR, one on every layer
    sigmas = [4.0, 16.0, 64.0, 256.0, 1024.0]   # default: 1 to 4096 by factors of 4
    epochs = 4
    train_examples = 6400            # a seeded subset of the training set (default: all of it)
    # also: lr, batch_size, niw_every, loss_every, probe_size, dataset, dataset_kwargs

Records: per run, a few rows of its NIW-norm trajectory (``step``, ``niw_norm``; at most
:data:`TRAJECTORY_POINTS`) and a ``final`` row carrying the point's record (sigma, k, phase, decay times with
errors, the predicted phase and theory decay time for the linear model; for the two-layer toy its rule, classifier,
predicted and map phases, peak growth and the predicted and measured boundaries; for the MLP its ``where``, the
deciding node and its ``k_max`` / ``k_after``, losses and test accuracy). The two-layer toy's ``niw_norm`` rows are
its NIW's top-mode projection ``|theta . v / |v||``; the MLP's are the NIW norm of the node that decided the phase
(``niw_node``; with in-NINR, ``fc1``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from ninr.data.base import Dataset, load_dataset
from ninr.dynamics.points import (
    LINEAR2_BOUNDARY_SEEDS,
    LINEAR2_DEFAULTS,
    LINEAR2_SIGMAS,
    LINEAR_DEFAULTS,
    LINEAR_SIGMAS,
    MLP_SIGMAS,
    MLP_WHERE,
    NOISE_MODES,
    Linear2Point,
    MLPPoint,
    linear2_point,
    linear_point,
    mlp_point,
)
from ninr.dynamics.theory.simulate import LinearSetup
from ninr.dynamics.theory.two_layer import TEACHERS
from ninr.errors import (
    ConfigError,
    check_choice,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
    fail,
)
from ninr.rng import make_generator
from ninr.studies.part import Part, Records, register_part
from ninr.studies.records import to_records
from ninr.studies.section import SEEDS
from ninr.studies.spec import RunSpec
from ninr.train.config import TrainConfig

Noise = Literal["redrawn", "fixed"]

TRAJECTORY_POINTS = 60
"""NIW-norm samples kept per run in the records (evenly spaced, first and last included): enough to
draw the decay, growth or catapult of a trajectory, few enough to keep the records small."""


def _check_grid(sigmas: tuple[float, ...], noise: tuple[str, ...]) -> None:
    if not sigmas:
        raise fail("sigmas", "a non-empty list of numbers", list(sigmas))
    for s in sigmas:
        check_positive("sigmas", s)
    if not noise:
        raise fail("noise", f"a non-empty list of {', '.join(NOISE_MODES)}", list(noise))
    if len(set(sigmas)) != len(sigmas) or len(set(noise)) != len(noise):
        raise fail("the grid", "free of repeated sigmas and noise modes", {"sigmas": sigmas, "noise": noise})


@dataclass(frozen=True)
class LinearSweep:
    """The linear model's grid and settings (full-batch GD unless ``batch_size`` is set)."""

    sigmas: tuple[float, ...] = LINEAR_SIGMAS
    noise: tuple[Noise, ...] = NOISE_MODES  # type: ignore[assignment]
    lr: float = float(LINEAR_DEFAULTS["eta"])
    steps: int = int(LINEAR_DEFAULTS["steps"])
    batch_size: int | None = None

    def __post_init__(self) -> None:
        _check_grid(self.sigmas, self.noise)
        check_positive("lr", self.lr)
        check_positive_int("steps", self.steps)
        if self.batch_size is not None:
            check_positive_int("batch_size", self.batch_size)


@dataclass(frozen=True)
class Linear2Sweep:
    """The two-layer toy's grid and settings: fixed initial weights (``norm_sq = |v|^2 + |theta|^2``,
    ``phi0 = v . theta``), so ``k0 = lr sigma^2 norm_sq``; full-batch GD unless ``batch_size`` is set."""

    sigmas: tuple[float, ...] = LINEAR2_SIGMAS
    noise: tuple[Noise, ...] = NOISE_MODES  # type: ignore[assignment]
    lr: float = float(LINEAR2_DEFAULTS["eta"])
    steps: int = int(LINEAR2_DEFAULTS["steps"])
    batch_size: int | None = None
    phi0: float = float(LINEAR2_DEFAULTS["phi0"])
    norm_sq: float = float(LINEAR2_DEFAULTS["norm_sq"])
    niw_share: float = 0.5
    label_noise: float = 0.0
    teacher: str = "zero"
    boundary_seeds: int = LINEAR2_BOUNDARY_SEEDS

    def __post_init__(self) -> None:
        _check_grid(self.sigmas, self.noise)
        check_positive("lr", self.lr)
        check_positive_int("steps", self.steps)
        if self.batch_size is not None:
            check_positive_int("batch_size", self.batch_size)
        check_positive("norm_sq", self.norm_sq)
        if not 0 < self.niw_share < 1:
            raise fail("niw_share", "in (0, 1)", self.niw_share)
        limit = (self.niw_share * (1 - self.niw_share)) ** 0.5 * self.norm_sq
        if not 0 < abs(self.phi0) <= limit:
            raise fail("phi0", f"non-zero and at most sqrt(niw_share (1 - niw_share)) norm_sq = {limit:.4g} in size",
                       self.phi0)  # fmt: skip
        check_nonneg("label_noise", self.label_noise)
        check_choice("teacher", self.teacher, TEACHERS)
        check_nonneg_int("boundary_seeds", self.boundary_seeds)


@dataclass(frozen=True)
class MLPSweep:
    """The MLP's grid and settings; ``where``: ``"input"`` (in-NINR, a node on ``fc1``) or ``"all"`` (full-NINR, a
    node on every layer), as :func:`ninr.nn.attach.attach_nins` reads it."""

    sigmas: tuple[float, ...] = MLP_SIGMAS
    where: Literal["input", "all"] = "input"
    noise: tuple[Noise, ...] = NOISE_MODES  # type: ignore[assignment]
    lr: float = 0.05
    epochs: int = 2
    batch_size: int = 64
    train_examples: int | None = None
    niw_every: int = 1
    loss_every: int = 25
    probe_size: int = 1000
    dataset: str = "fashion-mnist"
    dataset_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_grid(self.sigmas, self.noise)
        check_choice("where", self.where, tuple(MLP_WHERE))
        check_positive("lr", self.lr)
        for name in ("epochs", "batch_size", "niw_every", "loss_every", "probe_size"):
            check_positive_int(name, getattr(self, name))
        if self.train_examples is not None:
            check_positive_int("train_examples", self.train_examples)


@dataclass(frozen=True)
class PhasesOptions:
    """The models to sweep, in this order: ``linear``, ``linear2`` and/or ``mlp``."""

    linear: LinearSweep | None = None
    linear2: Linear2Sweep | None = None
    mlp: MLPSweep | None = None


@dataclass(frozen=True)
class PhasesSection:
    """The ``[phases]`` section: seeds and the sweeps of ``[phases.options.MODEL]``."""

    seeds: tuple[int, ...] = field(metadata=SEEDS)
    options: PhasesOptions = field(default_factory=PhasesOptions)
    stack: bool | None = None

    def __post_init__(self) -> None:
        if self.options.linear is None and self.options.linear2 is None and self.options.mlp is None:
            raise ConfigError(
                "no model to sweep; add [phases.options.linear], [phases.options.linear2] and/or [phases.options.mlp]"
            )


@dataclass(frozen=True)
class LinearRun:
    """One linear point: the simulation's settings (its teacher data derive from the seed)."""

    noise: str
    sigma: float
    seed: int
    lr: float
    steps: int
    batch_size: int | None
    n_train: int = int(LINEAR_DEFAULTS["n_train"])
    dim: int = int(LINEAR_DEFAULTS["dim"])

    def identity(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_identity(self) -> dict[str, Any]:
        return {"teacher": "linear", "n_train": self.n_train, "dim": self.dim, "seed": self.seed}

    def setup(self) -> LinearSetup:
        return LinearSetup(
            sigma=self.sigma, eta=self.lr, steps=self.steps, batch_size=self.batch_size, n_train=self.n_train,
            dim=self.dim, noise=self.noise, seed=self.seed,
        )  # fmt: skip


@dataclass(frozen=True)
class Linear2Run:
    """One two-layer point: the simulation's settings (its data, initial weights and noise derive from the seed)."""

    noise: str
    sigma: float
    seed: int
    lr: float
    steps: int
    batch_size: int | None
    phi0: float
    norm_sq: float
    niw_share: float
    label_noise: float
    teacher: str
    boundary_seeds: int
    n_train: int = int(LINEAR2_DEFAULTS["n_train"])
    width: int = int(LINEAR2_DEFAULTS["width"])
    dim: int = int(LINEAR2_DEFAULTS["dim"])

    def identity(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_identity(self) -> dict[str, Any]:
        return {
            "teacher": f"two-layer {self.teacher}", "n_train": self.n_train, "dim": self.dim, "width": self.width,
            "label_noise": self.label_noise, "seed": self.seed,
        }  # fmt: skip

    def point(self) -> Linear2Point:
        return Linear2Point(
            sigma=self.sigma, seed=self.seed, lr=self.lr, steps=self.steps, batch_size=self.batch_size,
            noise=self.noise, phi0=self.phi0, norm_sq=self.norm_sq, niw_share=self.niw_share,
            label_noise=self.label_noise, teacher=self.teacher, n_train=self.n_train, width=self.width, dim=self.dim,
            boundary_seeds=self.boundary_seeds,
        )  # fmt: skip


@dataclass(frozen=True)
class MLPRun:
    """One MLP point: in-NINR (``where="input"``) or full-NINR (``"all"``) at ``sigma`` on a (seeded subset of a)
    registered data set. ``where`` is one of the options, so it is in the run id."""

    noise: str
    sigma: float
    seed: int
    lr: float
    epochs: int
    batch_size: int
    train_examples: int | None
    niw_every: int
    loss_every: int
    probe_size: int
    dataset: str
    dataset_kwargs: Mapping[str, Any]
    where: str = "input"

    def identity(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        return {k: v for k, v in fields.items() if k not in ("dataset", "dataset_kwargs", "train_examples")}

    def data_identity(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "dataset_kwargs": dict(self.dataset_kwargs), "subset": self.train_examples}

    def point(self) -> MLPPoint:
        config = TrainConfig(
            dataset=self.dataset, dataset_kwargs=self.dataset_kwargs, lr=self.lr, epochs=self.epochs,
            seed=self.seed, batch_size=self.batch_size,
        )  # fmt: skip
        return MLPPoint(
            config, self.noise, self.sigma, self.niw_every, self.loss_every, self.probe_size, where=self.where
        )


@functools.lru_cache(maxsize=2)
def training_data(dataset: str, kwargs_json: str, train_examples: int | None) -> Dataset:
    """The MLP's data: ``dataset`` with a seeded subset of ``train_examples`` training images.

    The subset is drawn from its own fixed stream (not the run's seed), so every seed and sigma sees the
    same examples. Cached per process: loading Fashion-MNIST takes longer than a short run's setup.
    """
    data = load_dataset(dataset, **json.loads(kwargs_json))
    if train_examples is None:
        return data
    n = len(data.x_train)
    if train_examples > n:
        raise fail("train_examples", f"at most the {n} training images of {dataset}", train_examples)
    idx = torch.randperm(n, generator=make_generator(0, "phases-train-subset"))[:train_examples]
    return dataclasses.replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])


def thin(steps: Sequence[float], values: Sequence[float]) -> list[dict[str, Any]]:
    """At most :data:`TRAJECTORY_POINTS` evenly spaced samples, first and last included."""
    n = len(values)
    keep = sorted({round(i) for i in np.linspace(0, n - 1, min(n, TRAJECTORY_POINTS))}) if n else []
    return [{"step": int(steps[i]), "niw_norm": float(values[i])} for i in keep]


@register_part
class PhasesPart(Part):
    """The phase diagrams: one run per (model, noise mode, sigma, seed)."""

    name: ClassVar[str] = "phases"
    title: ClassVar[str] = "Phases of NIN dynamics: decay time against sigma"
    order: ClassVar[int] = 30
    Section: ClassVar[type] = PhasesSection

    def expand(self, section: PhasesSection, study: str) -> list[RunSpec]:
        """Per model (linear, linear2, then mlp), noise mode, sigma and seed."""
        specs = []
        options = section.options
        for model, sweep in (("linear", options.linear), ("linear2", options.linear2), ("mlp", options.mlp)):
            if sweep is None:
                continue
            for noise in sweep.noise:
                for sigma in sweep.sigmas:
                    for seed in section.seeds:
                        run = _run_options(model, sweep, noise, sigma, seed)
                        label = f"{noise} sigma={sigma:.4g}"
                        if isinstance(run, MLPRun) and run.where != "input":
                            label = f"{MLP_WHERE[run.where]} {label}"
                        specs.append(RunSpec(self.name, study, model, label, seed, run))
        return specs

    def run(self, spec: RunSpec) -> Records:
        """The records of one point."""
        options = spec.options
        # Fits of diverged trajectories overflow on the way to "no decay": expected, not worth a warning.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if isinstance(options, LinearRun):
                record, traj = linear_point(options.setup())
                rows = thin(traj["step"], [abs(a) for a in traj["niw"]])
                extra = {"n_train": options.n_train, "dim": options.dim}
                model = "linear"
            elif isinstance(options, Linear2Run):
                record, traj = linear2_point(options.point())
                rows = thin(traj["step"], [abs(a) for a in traj["top_projection"]])
                extra = {"n_train": options.n_train, "dim": options.dim, "width": options.width}
                model = "linear2"
            else:
                kwargs = json.dumps(dict(options.dataset_kwargs), sort_keys=True)
                data = training_data(options.dataset, kwargs, options.train_examples)
                record, traj = mlp_point(options.point(), data)
                rows = thin(traj["niw_step"], traj["niw_norm"])
                extra = {"batch_size": options.batch_size, "train_examples": len(data.x_train)}
                extra["dataset"] = options.dataset
                model = "mlp"
        if isinstance(options, MLPRun):  # every row says where its run's nodes are
            fields = {"model": model, "methods": MLP_WHERE[options.where], "where": options.where}
        else:
            fields = {"model": model, "methods": "in-ninr"}
        return to_records(spec, rows, str(record["status"]), {**record, **extra}, **fields)


def _run_options(model: str, sweep: Any, noise: str, sigma: float, seed: int) -> LinearRun | Linear2Run | MLPRun:
    if model == "linear":
        return LinearRun(noise, sigma, seed, sweep.lr, sweep.steps, sweep.batch_size)
    if model == "linear2":
        return Linear2Run(
            noise, sigma, seed, sweep.lr, sweep.steps, sweep.batch_size, sweep.phi0, sweep.norm_sq, sweep.niw_share,
            sweep.label_noise, sweep.teacher, sweep.boundary_seeds,
        )  # fmt: skip
    return MLPRun(
        noise, sigma, seed, sweep.lr, sweep.epochs, sweep.batch_size, sweep.train_examples, sweep.niw_every,
        sweep.loss_every, sweep.probe_size, sweep.dataset, dict(sweep.dataset_kwargs), sweep.where,
    )  # fmt: skip
