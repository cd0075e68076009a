"""The ``eval`` part: the robustness of trained runs, one run per (trained run, evaluation settings).

``ninr eval RUN_DIR`` is a one-run study of this part, stored beside the trained run (``RUN_DIR/eval``); a
preset section evaluates several run directories::

    [eval]
    seeds = [0]                      # seeds of the evaluation's randomness (noise draws, attack starts)
    runs = ["runs/in-ninr", "runs/none"]
    suite = "all"                    # clean, gaussian, noise, fmnist-c, attacks, shift or all
    # also: severities, epsilons, stds, noise, draws, eot, limit, shift_datasets, batch_size, device

A run's identity is the trained run's id (from its ``config.json``) and the evaluation settings; its data
identity is the trained run's data set (the shifted sets named join it). The data set is reloaded by name,
so only a run trained on a registered data set can be evaluated: the data's sha256 recorded in
``config.json`` must match what the name loads now (:func:`training_data`), and a run trained on data given
in Python is refused with the way to register it. A run whose weights are not finite (it diverged) is
refused too: there is no trained model to evaluate. Records: one per condition, level
and noise mode (:func:`ninr.robustness.evaluate`), each with ``kind = "robustness"``, the trained run's id
(``trained_run_id``), method, seed and model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

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

NOT_IDENTITY = ("run_dir", "batch_size", "attack_batch_size", "device", "data_sha256")
"""Settings that do not change the records (where the run is read from, batch sizes, the device), and the
data's fingerprint (a check: the data set's name and arguments identify it)."""


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
    data_sha256: str | None = None
    """The fingerprint of the data the run trained on (``config.json``), which the reloaded data must have."""

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
    config = rundir.read_config(path)
    rundir.load_checkpoint(path / rundir.CHECKPOINT)  # a damaged checkpoint is refused before any store is made
    return config


IN_PYTHON = (
    "or evaluate the model in Python on the data you have: `model, _ = ninr.train.load_run(run_dir)`, then "
    "`ninr.robustness.evaluate(model, (x_test, y_test))`"
)


def how_to_register(name: str) -> str:
    """How to make data given in Python, called ``name``, loadable by ``ninr eval``."""
    return (
        f"register a loader that returns that data, called without arguments, under its name {name!r} "
        f"(`ninr.data.register_dataset({name!r}, loader)` in Python; an entry point in the group `ninr.datasets` "
        f"for the command line), {IN_PYTHON}"
    )


def training_data(run_dir: str | Path, meta: Mapping[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """The data set to reload for the run in ``run_dir`` (``config.json`` ``meta``): its registered name, the
    loader's arguments, and the sha256 the loaded data must have (``None`` for a run directory that records none).

    A run trained on data given in Python is reloaded from the data set registered under the data's name, called
    without arguments, if there is one (:func:`check_same_data` then checks it is the same data).

    Raises:
        ConfigError: The run was trained on data given in Python whose name is not registered; the message says
            how to register it.
    """
    config = meta["config"]
    data = meta.get("data")
    if not isinstance(data, Mapping):  # a run directory without a data record: its config names its data
        return str(config["dataset"]), dict(config.get("dataset_kwargs", {})), None
    sha = data.get("sha256")
    sha = str(sha) if sha is not None else None
    if data.get("registered"):
        return str(config["dataset"]), dict(config.get("dataset_kwargs", {})), sha
    name = str(data.get("name", ""))
    if name and name in DATASETS:
        return name, {}, sha
    raise unregistered(run_dir, name, sha, "no data set is registered under that name")


def unregistered(run_dir: str | Path, name: str, sha: str | None, why: str) -> ConfigError:
    """The refusal of a run trained on data given in Python that ``ninr eval`` cannot reload (``why``)."""
    return ConfigError(
        f"`run_dir` must hold a run trained on a registered data set, got {str(run_dir)!r}, trained on data given "
        f"in Python (name {name!r}, sha256 {sha}; {why}): `ninr eval` reloads the data by name, so "
        f"{how_to_register(name)}"
    )


PROBE_IMAGES = 256
"""Test images a trained model's outputs are checked on before it is evaluated (a diverged model's are not
finite on practically every image, so a few hundred show it)."""


@functools.lru_cache(maxsize=8)
def _data_facts(name: str, kwargs_json: str) -> tuple[str, torch.Tensor]:
    """The fingerprint of ``load_dataset(name, **kwargs)`` and its first test images (loaded once per data set
    for a preset evaluating many runs)."""
    data = load_dataset(name, **json.loads(kwargs_json))
    return data.fingerprint, data.x_test[:PROBE_IMAGES].clone()


def check_same_data(run_dir: str | Path, name: str, actual: str, expected: str | None) -> None:
    """Refuse to evaluate on data whose fingerprint ``actual`` is not the ``expected`` one the run trained on."""
    if expected is None or actual == expected:
        return
    raise ConfigError(
        f"`run_dir` must be evaluated on the data it was trained on, got {str(run_dir)!r}, trained on data with "
        f"sha256 {expected}, while the data set {name!r} now loads data with sha256 {actual} (another loader, "
        f"other files or another split): register the loader that returns the training data, {IN_PYTHON}"
    )


def nonfinite_tensors(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of ``state_dict`` holding a NaN or an infinity."""
    return [k for k, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _how_it_ended(run_dir: str | Path) -> str:
    summary = Path(run_dir) / rundir.SUMMARY
    try:
        info = rundir.read_json(summary)
        return f"; the run ended {info.get('status', '?')} after {info.get('epochs_completed', '?')} epoch(s)"
    except (OSError, ValueError, AttributeError):
        return ""


def check_model(run_dir: str | Path, model: nn.Module, images: torch.Tensor) -> None:
    """Refuse a model whose weights are not finite, or whose outputs on ``images`` (a few test images) are not:
    a diverged run. Its accuracy would be that of a constant guess, reported as if it were the model's.
    """
    state = model.state_dict()
    bad = nonfinite_tensors(state)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ConfigError(
            f"`run_dir` must hold a model with finite weights, got {str(run_dir)!r}, whose weights are not finite "
            f"(NaN or infinity in {len(bad)} of {len(state)} tensors: {shown}){_how_it_ended(run_dir)}: there is no "
            "trained model to evaluate"
        )
    if not len(images):
        return
    device = next((t.device for t in state.values()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            finite = bool(torch.isfinite(model(images.to(device))).all())
    finally:
        model.train(was_training)
    if not finite:
        largest = max((float(t.abs().max()) for t in state.values() if t.is_floating_point() and t.numel()), default=0)
        raise ConfigError(
            f"`run_dir` must hold a model whose outputs are finite, got {str(run_dir)!r}, whose outputs on the first "
            f"{len(images)} test images are not finite (NaN or infinity; its largest weight is {largest:.3g})"
            f"{_how_it_ended(run_dir)}: there is no trained model to evaluate"
        )


def eval_spec(run_dir: str | Path, evaluation: Evaluation, seed: int, study: str = "eval") -> RunSpec:
    """The spec evaluating the run in ``run_dir`` with ``evaluation`` under ``seed``.

    Raises:
        ConfigError: ``run_dir`` is not a run directory, its data cannot be reloaded as it was
            (:func:`training_data`, :func:`check_same_data`), or its model diverged (:func:`check_model`), all
            before anything is written.
    """
    check_nonneg_int("seed", seed)
    meta = trained_run(run_dir)
    config = meta["config"]
    name, kwargs, sha = training_data(run_dir, meta)
    try:
        fingerprint, probe = _data_facts(name, json.dumps(kwargs, sort_keys=True, default=str))
    except (TypeError, ConfigError) as exc:
        if not isinstance(meta.get("data"), Mapping) or meta["data"].get("registered"):
            raise
        why = f"the data set {name!r} does not load without arguments: {exc}"
        raise unregistered(run_dir, name, sha, why) from None
    check_same_data(run_dir, name, fingerprint, sha)
    check_model(run_dir, load_run(run_dir)[0], probe)
    run = EvalRun(
        **{f.name: getattr(evaluation, f.name) for f in dataclasses.fields(Evaluation)},
        run_dir=str(run_dir),
        trained=str(meta["run_id"]),
        dataset=name,
        dataset_kwargs=kwargs,
        seed=seed,
        data_sha256=sha,
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
        data = load_dataset(o.dataset, **dict(o.dataset_kwargs))
        if o.data_sha256 is not None:
            check_same_data(o.run_dir, o.dataset, data.fingerprint, o.data_sha256)
        check_model(o.run_dir, model, data.x_test[:PROBE_IMAGES])
        x, y = data.x_test, data.y_test
        if o.limit is not None:
            x, y = x[: o.limit], y[: o.limit]
        shifts = {name: load_dataset(name) for name in o.shift_datasets}
        methods = "+".join(m.name for m in config.methods) or "none"
        meta = {"trained_run_id": o.trained, "method": methods, "model": config.model, "dataset": o.dataset}
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
