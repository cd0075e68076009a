"""The photon study's configuration: :class:`StudyConfig`, read from TOML by :func:`load_study_config`.

TOML tables map one to one onto dataclass fields: ``[generation]`` (:class:`GenerationConfig`, or with
``source = "gun"`` the particle gun's :class:`~ninr.hep.gun.GunConfig`), ``[simulation]``
(:class:`DetectorConfig`), ``[shift]`` (:class:`DetectorShift`), ``[[methods]]`` (:class:`MethodEntry`),
``[root]`` (:class:`RootInputs`) and ``[study]`` (the remaining fields of :class:`StudyConfig`). Unknown
tables and keys are errors with close matches.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ninr.errors import (
    ConfigError,
    check_choice,
    check_nonneg_int,
    check_positive,
    check_positive_int,
    check_probability,
    fail,
)
from ninr.hep.config import (
    OMITTED_AT_DEFAULT,
    DetectorConfig,
    DetectorShift,
    GenerationConfig,
    from_mapping,
    to_dict,
)
from ninr.hep.events import ORIGIN_NAMES
from ninr.hep.gun import GunConfig

GENERATION_SOURCES = ("pythia", "gun")
"""Values of ``[generation] source``: Pythia 8 events (the default) or the particle gun."""


@dataclass(frozen=True)
class MethodEntry:
    """One row of the comparison: a registered method (``name``) with hyperparameters, shown as ``label``."""

    label: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RootInputs:
    """User-supplied cell images instead of generated events (branch layout: :mod:`ninr.hep.datasets`).

    Attributes:
        simulation: ROOT file of simulated images; split into train and "simulation" test by ``test_fraction``.
        data: ROOT file of real-data images, all used as the "data" test set (labels from a tag-and-probe
            or control-region selection, for example).
        tree, em_branch, had_branch, label_branch: where the arrays are.
    """

    simulation: str
    data: str
    tree: str = "photons"
    em_branch: str = "em"
    had_branch: str = "had"
    label_branch: str = "label"


NORMALISE_MODES = ("none", "energy")
EXCLUDABLE_ORIGINS = tuple(o for o in ORIGIN_NAMES if o != "hard")
"""Origins a study may drop (every one but the signal's)."""
"""Per-image input normalisation of the photon study (:attr:`StudyConfig.normalise`)."""

DEFAULT_METHODS = (
    MethodEntry("none", "none"),
    MethodEntry("l2", "l2"),
    MethodEntry("dropout", "dropout"),
    MethodEntry("in-ninr", "in-ninr", {"sigma": 1.0, "per": "pixel", "conv_mode": "channel"}),
    MethodEntry("full-ninr", "full-ninr", {"sigma": 0.5, "per": "pixel", "conv_mode": "channel"}),
    MethodEntry(
        "full-ninr-correlated",
        "full-ninr",
        {"sigma": 0.5, "per": "pixel", "distribution": "correlated", "conv_mode": "channel"},
    ),
    MethodEntry(
        "full-ninr-pileup",
        "full-ninr",
        {"sigma": 0.5, "per": "pixel", "distribution": "pileup", "conv_mode": "channel"},
    ),
)


@dataclass(frozen=True)
class StudyConfig:
    """Everything that determines a photon study. TOML tables: ``[generation]``, ``[simulation]``
    (a :class:`DetectorConfig`), ``[shift]``, ``[[methods]]``, ``[root]`` and ``[study]`` (the rest).

    Attributes:
        generation: event generation and candidate selection (Pythia), or the particle gun.
        simulation: the detector the models are trained on.
        shift: how the "data" detector differs.
        methods: the compared methods (``l2`` and ``dropout`` must be registered by ``ninr.methods``).
        model: model name (``resnet18``).
        model_kwargs: model builder arguments (``width``: channels of the first ResNet stage).
        seeds: training seeds; each method trains once per seed.
        epochs, lr, momentum, batch_size: SGD settings.
        test_fraction: fraction of candidates held out as test sets.
        signal_efficiencies: working points of the background rejection.
        split_seed: seed of the train/test split.
        calo_seed: seed of the calorimeter's random draws.
        workers: generation processes.
        device: torch device.
        events: events HDF5 path ("" = ``<out_dir>/events.h5``, or in memory without an out_dir).
        root: read images from ROOT files instead of generating.
        normalise: ``"none"`` (images in GeV, the model standardises each channel over the training set) or
            ``"energy"`` (each image divided by its total energy, both layers: the classifier reads the shower's
            shape, not its energy; the particle gun's 20-640 GeV range needs it, docs/hep.md section 7).
        single_effect_tests: also test on one set per effect of the shift (``"data: energy scale only"``, ...,
            :func:`ninr.hep.config.shift_effects`): the test events through the "simulation" detector with that
            effect alone, so a report can show the size of each effect. Off by default (left out of the config's
            dict while off, so the run ids of studies without it do not change); needs generated events.
        exclude_origins: candidate origins (:data:`ninr.hep.events.ORIGIN_NAMES` but ``"hard"``, the signal)
            dropped before the train/test split, e.g. ``["isr"]``: photons radiated in the initial-state shower
            are neither fragmentation nor decay photons, yet pass isolation and would count as background (16% of
            the isolated dijet background, docs/hep.md section 1). Left out of the config's dict while empty.
    """

    generation: GenerationConfig | GunConfig = field(default_factory=GenerationConfig)
    simulation: DetectorConfig = field(default_factory=DetectorConfig)
    shift: DetectorShift = field(default_factory=DetectorShift)
    methods: tuple[MethodEntry, ...] = DEFAULT_METHODS
    model: str = "resnet18"
    model_kwargs: Mapping[str, Any] = field(default_factory=lambda: {"width": 16})
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 10
    lr: float = 0.02
    momentum: float = 0.9
    batch_size: int = 64
    test_fraction: float = 0.3
    signal_efficiencies: tuple[float, ...] = (0.5, 0.7, 0.9)
    split_seed: int = 0
    calo_seed: int = 0
    workers: int = 2
    device: str = "cpu"
    events: str = ""
    root: RootInputs | None = None
    normalise: str = "none"
    single_effect_tests: bool = field(default=False, metadata=OMITTED_AT_DEFAULT)
    exclude_origins: tuple[str, ...] = field(default=(), metadata=OMITTED_AT_DEFAULT)

    def __post_init__(self) -> None:
        check_choice("normalise", self.normalise, NORMALISE_MODES)
        object.__setattr__(self, "exclude_origins", tuple(self.exclude_origins))
        for origin in self.exclude_origins:
            check_choice("exclude_origins", origin, EXCLUDABLE_ORIGINS)
        if len(set(self.exclude_origins)) != len(self.exclude_origins):
            raise fail("exclude_origins", "a list without repeats", list(self.exclude_origins))
        if self.exclude_origins and self.root is not None:
            raise fail("exclude_origins", "empty with [root] images (they carry no origin)", list(self.exclude_origins))
        if not isinstance(self.single_effect_tests, bool):
            raise fail("single_effect_tests", "true or false", self.single_effect_tests)
        if self.single_effect_tests and self.root is not None:
            raise fail("single_effect_tests", "false with [root] images (no detector to shift)", True)
        labels = [m.label for m in self.methods]
        if not labels or len(set(labels)) != len(labels):
            raise fail("methods", "a non-empty list with distinct labels", labels)
        if not self.seeds:
            raise fail("seeds", "a non-empty list of integers >= 0", self.seeds)
        for s in self.seeds:
            check_nonneg_int("seeds", s)
        check_positive_int("epochs", self.epochs)
        check_positive("lr", self.lr)
        check_probability("momentum", self.momentum)
        check_positive_int("batch_size", self.batch_size)
        if not 0 < self.test_fraction < 1:
            raise fail("test_fraction", "a number in (0, 1)", self.test_fraction)
        if not self.signal_efficiencies or not all(0 < e <= 1 for e in self.signal_efficiencies):
            raise fail("signal_efficiencies", "a non-empty list of numbers in (0, 1]", self.signal_efficiencies)
        check_positive_int("workers", self.workers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as written to ``study_config.json``)."""
        return to_dict(self)


def study_config_from_dict(data: Mapping[str, Any]) -> StudyConfig:
    """A :class:`StudyConfig` from TOML-shaped tables; unknown tables and keys are errors."""
    known = {"generation", "simulation", "shift", "methods", "root", "study"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown table [{unknown[0]}] (tables: {', '.join(sorted(known))})")
    kw: dict[str, Any] = {}
    if "generation" in data:
        kw["generation"] = generation_from_mapping(data["generation"])
    for key, cls in (("simulation", DetectorConfig), ("shift", DetectorShift)):
        if key in data:
            kw[key] = from_mapping(cls, data[key], key)
    if "methods" in data:
        kw["methods"] = tuple(from_mapping(MethodEntry, m, "methods") for m in data["methods"])
    if data.get("root"):
        kw["root"] = from_mapping(RootInputs, data["root"], "root")
    study = dict(data.get("study", {}))
    return from_mapping(StudyConfig, {**study, **kw}, "study")


def generation_from_mapping(table: Any) -> GenerationConfig | GunConfig:
    """The ``[generation]`` table: a :class:`GenerationConfig`, or a :class:`GunConfig` when ``source = "gun"``.

    ``source`` defaults to ``"pythia"``; a particle-gun setting in a Pythia table (or the reverse) is an
    error that says which source it belongs to.
    """
    if not isinstance(table, Mapping):
        raise fail("generation", "a table of settings", table)
    source = check_choice("source", table.get("source", "pythia"), GENERATION_SOURCES)
    own, other = (GunConfig, GenerationConfig) if source == "gun" else (GenerationConfig, GunConfig)
    own_fields = {f.name for f in dataclasses.fields(own)}
    for key in table:
        if key != "source" and key not in own_fields and key in {f.name for f in dataclasses.fields(other)}:
            other_source = "gun" if source == "pythia" else "pythia"
            raise ConfigError(
                f"[generation] setting {key!r} belongs to source = {other_source!r}, not to source = {source!r}"
            )
    if source == "gun":
        return from_mapping(GunConfig, table, "generation")
    return from_mapping(GenerationConfig, {k: v for k, v in table.items() if k != "source"}, "generation")


def load_study_config(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read a study TOML file (``configs/hep-quick.toml``); ``overrides`` replace ``[study]`` settings."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read study config {path}: {exc}") from None
    config = study_config_from_dict(data)
    return dataclasses.replace(config, **overrides) if overrides else config
