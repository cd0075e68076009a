"""The ``eval`` part: the robustness of trained runs, one run per (trained run, evaluation settings).

``ninr eval RUN_DIR`` is a one-run study of this part, stored beside the trained run (``RUN_DIR/eval``); a
preset section evaluates several run directories::

    [eval]
    seeds = [0]                      # seeds of the evaluation's randomness (noise draws, attack starts)
    runs = ["runs/in-ninr", "runs/none"]
    suite = "all"                    # clean, gaussian, noise, fmnist-c, attacks, shift or all
    # also: severities, epsilons, stds, noise, draws, eot, limit, shift_datasets, batch_size, device

A run's identity is the trained run's id (from its ``config.json``) and the evaluation settings; its data
identity is the trained run's data set (the shifted sets named join it). Records: one per condition, level
and noise mode (:func:`ninr.robustness.evaluate`), each with ``kind = "robustness"``, the trained run's id
(``trained_run_id``), method, seed and model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ninr.data.base import DATASETS, load_dataset
from ninr.errors import ConfigError, check_choice, check_nonneg_int, check_positive_int
from ninr.robustness.evaluate import evaluate
from ninr.robustness.suites import get_suite
from ninr.studies.part import Part, Records, register_part
from ninr.studies.records import base_fields
from ninr.studies.section import SEEDS
from ninr.studies.spec import RunSpec
from ninr.train import rundir
from ninr.train.run import load_run

NOISE_CHOICES = ("auto", "off", "on", "both")
"""The model's noise at test time (:func:`ninr.robustness.evaluate`)."""

NOT_IDENTITY = ("run_dir", "batch_size", "attack_batch_size", "device")
"""Settings that do not change the records (where the run is read from, batch sizes, the device)."""


@dataclass(frozen=True)
class Evaluation:
    """What to evaluate and how (the fields of ``ninr eval``'s options)."""

    suite: str = "all"
    severities: tuple[int, ...] | None = None
    epsilons: tuple[float, ...] | None = None
    stds: tuple[float, ...] | None = None
    noise: str = "auto"
    draws: int = 5
    eot: int | None = None
    limit: int | None = None
    shift_datasets: tuple[str, ...] = ()
    batch_size: int = 1000
    attack_batch_size: int = 500
    device: str = "cpu"

    def __post_init__(self) -> None:
        # The suite, its grids and the shifted data sets' names fail here, before a store records anything.
        get_suite(self.suite, severities=self.severities, intensities=self.stds, epsilons=self.epsilons)
        for name in self.shift_datasets:
            DATASETS.get(name)
        check_choice("noise", self.noise, NOISE_CHOICES)
        check_positive_int("draws", self.draws)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("attack_batch_size", self.attack_batch_size)
        if self.limit is not None:
            check_positive_int("limit", self.limit)
        if self.eot is not None:
            check_positive_int("eot", self.eot)


@dataclass(frozen=True)
class EvalSection(Evaluation):
    """The ``[eval]`` section: run directories, seeds and the evaluation settings."""

    seeds: tuple[int, ...] = field(default=(0,), metadata=SEEDS)
    runs: tuple[str, ...] = ()
    stack: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.runs:
            raise ConfigError("`runs` must name at least one run directory (written by `ninr train --out`)")


@dataclass(frozen=True)
class EvalRun(Evaluation):
    """One evaluation of one trained run."""

    run_dir: str = ""
    trained: str = ""
    dataset: str = ""
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def identity(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        drop = (*NOT_IDENTITY, "dataset", "dataset_kwargs")
        return {k: v for k, v in fields.items() if k not in drop}

    def data_identity(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "dataset_kwargs": self.dataset_kwargs, "shifts": list(self.shift_datasets)}


def trained_run(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run directory (its id and resolved config); a clear error if it is not one."""
    path = Path(run_dir)
    if not (path / rundir.CHECKPOINT).is_file() or not (path / rundir.CONFIG).is_file():
        raise ConfigError(
            f"`run_dir` must be a run directory holding {rundir.CHECKPOINT} and {rundir.CONFIG}, got {str(path)!r}"
        )
    meta: dict[str, Any] = json.loads((path / rundir.CONFIG).read_text(encoding="utf-8"))
    return meta


def eval_spec(run_dir: str | Path, evaluation: Evaluation, seed: int, study: str = "eval") -> RunSpec:
    """The spec evaluating the run in ``run_dir`` with ``evaluation`` under ``seed``."""
    check_nonneg_int("seed", seed)
    meta = trained_run(run_dir)
    config = meta["config"]
    run = EvalRun(
        **{f.name: getattr(evaluation, f.name) for f in dataclasses.fields(Evaluation)},
        run_dir=str(run_dir),
        trained=str(meta["run_id"]),
        dataset=str(config["dataset"]),
        dataset_kwargs=dict(config.get("dataset_kwargs", {})),
        seed=seed,
    )
    methods = "+".join(m["name"] for m in config.get("methods", [])) or "none"
    return RunSpec("eval", study, str(config.get("model", "?")), methods, seed, run)


@register_part
class EvalPart(Part):
    """Robustness of trained runs: corruptions by severity, noise curves, attacks, shifted test sets."""

    name: ClassVar[str] = "eval"
    title: ClassVar[str] = "Robustness of trained runs"
    order: ClassVar[int] = 50
    Section: ClassVar[type] = EvalSection

    def expand(self, section: EvalSection, study: str) -> list[RunSpec]:
        evaluation = Evaluation(**{f.name: getattr(section, f.name) for f in dataclasses.fields(Evaluation)})
        return [eval_spec(run, evaluation, seed, study) for run in section.runs for seed in section.seeds]

    def run(self, spec: RunSpec) -> Records:
        """Load the trained model and evaluate it; one record per condition, level and noise mode."""
        o: EvalRun = spec.options
        model, config = load_run(o.run_dir, device=o.device)
        data = load_dataset(config.dataset, **dict(config.dataset_kwargs))
        x, y = data.x_test, data.y_test
        if o.limit is not None:
            x, y = x[: o.limit], y[: o.limit]
        shifts = {name: load_dataset(name) for name in o.shift_datasets}
        methods = "+".join(m.name for m in config.methods) or "none"
        meta = {"trained_run_id": o.trained, "method": methods, "model": config.model, "dataset": config.dataset}
        rows = evaluate(
            model,
            (x.to(o.device), y.to(o.device)),
            o.suite,
            severities=o.severities,
            intensities=o.stds,
            epsilons=o.epsilons,
            shift_data=shifts,
            noise=o.noise,
            draws=o.draws,
            eot_samples=o.eot,
            batch_size=o.batch_size,
            attack_batch_size=o.attack_batch_size,
            seed=o.seed,
            meta=meta,
        )
        base = base_fields(spec, methods=methods)
        return [{**base, "kind": "robustness", **row, "final": False} for row in rows]
