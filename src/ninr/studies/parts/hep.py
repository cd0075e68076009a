"""The ``hep`` part: the prompt-photon study (docs/hep.md), one run per method and seed.

The section names a photon-study TOML (:func:`ninr.hep.studyconfig.load_study_config`) and the seeds;
``[hep.options.overrides]`` may override that file's ``[study]`` settings (epochs, model_kwargs, ...)::

    [hep]
    seeds = [0, 1]                        # replace the study file's seeds

    [hep.options]
    study = "configs/hep-quick.toml"      # relative: to the working directory, then the checkout
    # events = "runs/hep/events.h5"       # optional: where the generated events live

    [hep.options.overrides]               # optional overrides of the study file's [study] table
    epochs = 2

The events are generated once, before any run (:meth:`HepPart.prepare`, in the calling process), into the
events file: the section's ``events``, else the study file's, else a file in the cache named by the
generation settings' hash (``$NINR_CACHE_DIR`` or ``~/.cache/ninr``, ``hep/events-<hash>.h5``), so every
run, worker and later session reads the same events. A run's data identity is the hash of the generation
settings and of both detectors (or the ROOT files it reads); its id changes with any setting.

Records: one per test set, keyed by ``test_set`` ("simulation", "data", then any further test set the study's data
hold, :func:`ninr.hep.study.evaluation_sets`), each with ``final = True``: the candidates per class (``n_signal``,
``n_background``), the AUC, eps_B and the rejection 1/eps_B at each signal efficiency with its stratified bootstrap
percentile interval over the test events and the replicates it came from (:func:`ninr.hep.study.evaluate_scores`),
and the ROC on a 20-point grid. The report (:mod:`ninr.report.hep`) forms the seed spread, the paired differences
with ``none`` and the data/simulation ratios from them.

NINR rows may ask for a calibrated sigma (``params = { phase = "decay" }``): each run trains through
:func:`ninr.train.train`, which calibrates on a pilot of the plain model (:mod:`ninr.methods.calibrate`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ninr.hep.config import apply_shift, config_hash
from ninr.hep.datasets import load_or_generate
from ninr.hep.study import StudyData, prepare_data, train_one
from ninr.hep.studyconfig import StudyConfig, load_study_config, study_config_from_dict
from ninr.methods.base import METHODS
from ninr.studies.part import Part, Records, register_part
from ninr.studies.preset import find_file
from ninr.studies.records import base_fields
from ninr.studies.section import SEEDS
from ninr.studies.spec import RunSpec

SECTIONS = ("generation", "simulation", "shift", "methods", "root")
"""The study file's tables other than ``[study]``."""


@dataclass(frozen=True)
class HepOptions:
    """The study file, where its events live, and overrides of its ``[study]`` table."""

    study: str
    events: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HepSection:
    """The ``[hep]`` section."""

    seeds: tuple[int, ...] = field(metadata=SEEDS)
    options: HepOptions
    stack: bool | None = None


def config_to_tables(config: StudyConfig) -> dict[str, Any]:
    """A study config as TOML-shaped tables (inverse of :func:`ninr.hep.studyconfig.study_config_from_dict`)."""
    config_dict = config.to_dict()
    tables: dict[str, Any] = {k: config_dict[k] for k in SECTIONS if config_dict.get(k) is not None}
    tables["study"] = {k: v for k, v in config_dict.items() if k not in SECTIONS}
    return tables


def cache_dir() -> Path:
    """Where generated events are cached: ``$NINR_CACHE_DIR`` or ``~/.cache/ninr``."""
    return Path(os.environ.get("NINR_CACHE_DIR") or Path.home() / ".cache" / "ninr")


def events_path(config: StudyConfig) -> str:
    """The events file of ``config``: its ``events``, else the cache file named by the generation hash."""
    if config.events:
        return config.events
    return str(cache_dir() / "hep" / f"events-{config_hash(config.generation)}.h5")


def study_config(section: HepSection) -> StudyConfig:
    """The section's study config: the study file with the section's overrides, seeds and events file."""
    options = section.options
    path = find_file(options.study, "[hep.options].study")
    config = load_study_config(path, **dict(options.overrides))
    config = dataclasses.replace(config, seeds=tuple(section.seeds), events=options.events or config.events)
    for entry in config.methods:  # unknown method names fail before anything is generated
        METHODS.get(entry.name)
    return config


@dataclass(frozen=True)
class HepRun:
    """One method and seed of a photon study."""

    study: Mapping[str, Any]
    method: str
    seed: int

    def config(self) -> StudyConfig:
        """The study config of this run: its one method and seed."""
        config = study_config_from_dict(self.study)
        entry = next(m for m in config.methods if m.label == self.method)
        return dataclasses.replace(config, methods=(entry,), seeds=(self.seed,))

    def identity(self) -> dict[str, Any]:
        """The study's settings (but where its events live, and generation workers), the method and seed."""
        study = {k: v for k, v in self.study["study"].items() if k not in ("events", "workers", "seeds")}
        methods = [m for m in self.study.get("methods", []) if m["label"] == self.method]
        return {"study": study, "method": methods, "seed": self.seed}

    def data_identity(self) -> dict[str, Any]:
        """The hashes of the generation settings and both detectors, or the ROOT files read."""
        config = study_config_from_dict(self.study)
        # normalised images are other data; "none" stays out, so the ids of studies without it do not change
        scaled = {"normalise": config.normalise} if config.normalise != "none" else {}
        if config.root is not None:
            return {"root": dataclasses.asdict(config.root), "split_seed": config.split_seed, **scaled}
        return {
            "events": config_hash(config.generation),
            "simulation": config_hash(config.simulation),
            "data": config_hash(apply_shift(config.simulation, config.shift)),
            "split": [config.test_fraction, config.split_seed],
            "calo_seed": config.calo_seed,
            **scaled,
        }


DATA_FIELDS = (
    "events", "workers", "test_fraction", "split_seed", "calo_seed", "normalise", "single_effect_tests",
    "exclude_origins",
)  # fmt: skip
"""The ``[study]`` settings the images depend on, test sets included (with the generation, detector and ROOT
tables): the cache key of the prepared data, so it must name every setting :func:`ninr.hep.study.prepare_data`
reads."""


@functools.lru_cache(maxsize=1)
def _prepared(tables_json: str) -> StudyData:
    """The images of a study (cached per process: every method and seed a worker runs reads them once)."""
    return prepare_data(study_config_from_dict(json.loads(tables_json)))


def _data_tables(config: StudyConfig) -> str:
    """The tables :func:`ninr.hep.study.prepare_data` reads, as the cache key of :func:`_prepared`."""
    tables = config_to_tables(config)
    tables.pop("methods", None)
    tables["study"] = {k: v for k, v in tables["study"].items() if k in DATA_FIELDS}
    return json.dumps(tables, sort_keys=True)


def study_specs(config: StudyConfig, study: str = "hep", artifacts: str | None = None) -> list[RunSpec]:
    """The runs of a study config: every method x seed (``artifacts``: where their run directories go)."""
    config = dataclasses.replace(config, events=events_path(config))
    tables = config_to_tables(config)
    return [
        RunSpec("hep", study, "hep", entry.label, seed, HepRun(tables, entry.label, seed), artifacts=artifacts)
        for entry in config.methods
        for seed in config.seeds
    ]


@register_part
class HepPart(Part):
    """Prompt photons: background rejection on simulation and shifted "data", per method and seed."""

    name: ClassVar[str] = "hep"
    title: ClassVar[str] = "Prompt photons: background rejection on simulation and shifted 'data'"
    order: ClassVar[int] = 40
    Section: ClassVar[type] = HepSection

    def expand(self, section: HepSection, study: str) -> list[RunSpec]:
        """Every method of the study file x the section's seeds."""
        return study_specs(study_config(section), study)

    def prepare(self, specs: Sequence[RunSpec], store_root: Path) -> None:
        """Generate the events every run reads (once; an existing file made with these settings is reused)."""
        done = set()
        for spec in specs:
            config = spec.options.config()
            if config.root is not None or config.events in done:
                continue
            done.add(config.events)
            Path(config.events).parent.mkdir(parents=True, exist_ok=True)
            load_or_generate(config.events, config.generation, workers=config.workers)

    def run(self, spec: RunSpec) -> Records:
        """Train the run's method with its seed on "simulation"; one record per test set (every one the data hold)."""
        config = spec.options.config()
        data = _prepared(_data_tables(config))
        out = Path(spec.artifacts) if spec.artifacts else None
        rows = train_one(config, config.methods[0], spec.seed, data, out=out)
        base = base_fields(spec, model=config.model, methods=config.methods[0].name)
        return [
            {**base, **{k: v for k, v in row.items() if k != "study"}, "hep_study": row.get("study")}
            | {"run_status": row["status"], "final": True}
            for row in rows
        ]
