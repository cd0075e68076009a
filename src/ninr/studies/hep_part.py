"""The ``hep`` study part: the prompt-photon study (docs/hep.md) as one run of ``ninr reproduce``.

The section of a preset names a photon-study TOML (:func:`ninr.hep.studyconfig.load_study_config`) and
the seeds; ``[hep.options.overrides]`` may override that file's ``[study]`` settings (epochs, model_kwargs, ...)::

    [hep]
    seeds = [0, 1]                        # replace the study file's seeds

    [hep.options]
    study = "configs/hep-quick.toml"      # relative: to the working directory, then the checkout
    # events = "runs/hep/events.h5"       # optional: keep the generated events between sessions

    [hep.options.overrides]               # optional overrides of the study file's [study] table
    epochs = 2

The whole study is **one** run (generation, imaging, every method x seed): the events are generated once
and shared by every method and seed, as :func:`ninr.hep.study.run_hep_study` does. The run's options hold the
study's full resolved configuration, so its id changes with any setting and ``--resume`` reuses it otherwise.

Records: :func:`run_hep_study`'s one record per (method, seed, test set), each with the run's label fields
and ``final = True`` (ROC curves on the 20-point grid are kept: they are small). The report is
:func:`ninr.report.hep.hep_part_report`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ninr.errors import ConfigError, did_you_mean, fail
from ninr.studies.config import Arch, StudyConfig, Variant
from ninr.studies.parts import StudyPart, register_part
from ninr.studies.run import Records, base_fields
from ninr.studies.sweep import RunSpec
from ninr.train.config import TrainConfig

if TYPE_CHECKING:
    from ninr.hep.studyconfig import StudyConfig as HepStudyConfig

OPTION_KEYS = ("study", "events", "overrides")
SECTIONS = ("generation", "simulation", "shift", "methods", "root")


def _resolve_path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise fail("[hep.options].study", "the path of a photon-study TOML file", value)
    path = Path(value)
    if path.is_absolute():
        return path
    from ninr.studies.config import config_dirs

    bases = list(dict.fromkeys([Path.cwd(), *(d.parent for d in config_dirs()[1:])]))
    for base in bases:
        if (base / path).is_file():
            return base / path
    raise ConfigError(f"[hep.options].study: no file {value!r} (looked in {', '.join(str(b) for b in bases)})")


def hep_study_config(study: StudyConfig) -> HepStudyConfig:
    """The :class:`ninr.hep.studyconfig.StudyConfig` of a ``[hep]`` section (seeds and overrides applied)."""
    from ninr.hep.studyconfig import load_study_config

    if study.train or study.hooks:
        raise ConfigError("[hep]: the study is set by its TOML file ([hep.options].study), not train or hooks")
    if study.variants != (Variant("None"),) or study.archs != (Arch("mlp"),):
        raise ConfigError("[hep]: `arch` and `variant` belong to the table part; set methods in the study file")
    options = dict(study.options)
    for key in options:
        if key not in OPTION_KEYS:
            hint = did_you_mean(key, OPTION_KEYS)
            raise ConfigError(f"[hep.options]: unknown key {key!r}{hint} (allowed: {', '.join(OPTION_KEYS)})")
    if "study" not in options:
        raise ConfigError('[hep.options]: `study` is required (a photon-study TOML, e.g. "configs/hep-quick.toml")')
    overrides = options.get("overrides", {})
    if not isinstance(overrides, Mapping):
        raise fail("[hep.options].overrides", "a table of [study] settings", overrides)
    config = load_study_config(_resolve_path(options["study"]), **dict(overrides))
    events = options.get("events", config.events)
    if not isinstance(events, str):
        raise fail("[hep.options].events", "a path string", events)
    return dataclasses.replace(config, seeds=tuple(study.seeds), events=events)


def config_to_tables(config_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A study config's ``to_dict()`` regrouped into TOML tables (inverse of ``study_config_from_dict``)."""
    tables: dict[str, Any] = {k: config_dict[k] for k in SECTIONS if config_dict.get(k) is not None}
    tables["study"] = {k: v for k, v in config_dict.items() if k not in SECTIONS}
    return tables


def expand_hep(study: StudyConfig, study_name: str) -> list[RunSpec]:
    """One run: the whole photon study with the section's seeds."""
    config = hep_study_config(study)
    # A stand-in TrainConfig: the run id hashes the study's full configuration, carried in the options.
    train = TrainConfig(dataset="hep-photons", model=config.model, epochs=config.epochs, seed=config.seeds[0])
    options = {"hep_study": config_to_tables(config.to_dict())}
    return [RunSpec(study.part, study_name, "hep", "photon study", config.seeds[0], train, None, (), options)]


def run_hep(spec: RunSpec) -> Records:
    """The records of the photon study of ``spec`` (the part's run function; pure and picklable)."""
    from ninr.hep.study import run_hep_study, study_config_from_dict

    config = study_config_from_dict(spec.options["hep_study"])
    base = {**base_fields(spec), "methods": "hep"}
    rows = []
    for rec in run_hep_study(config):
        row = {**base, **{k: v for k, v in rec.items() if k not in ("study",)}, "hep_study": rec.get("study")}
        row.update({"run_status": "completed", "final": True})
        rows.append(row)
    return rows


HEP_PART = register_part(
    "hep",
    StudyPart(
        title="Prompt photons: background rejection on simulation and shifted 'data'",
        run=run_hep,
        report="ninr.report.hep:hep_part_report",
        expand=expand_hep,
        order=40,
    ),
)
