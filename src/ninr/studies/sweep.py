"""A sweep: the grid of a study's architectures x variants x seeds, as frozen :class:`RunSpec` objects.

A run's id is the hash of what it computes: :func:`ninr.train.config.run_id` of the resolved
training config (every method hyperparameter filled in). Run hooks and part options also change
what a run produces, so when present they join the hashed document. Labels do not: renaming a
row does not recompute it. Two grid points that would compute the same thing are an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ninr.errors import ConfigError
from ninr.studies.config import Arch, Preset, StudyConfig, Variant
from ninr.train.config import MethodSpec, TrainConfig, run_id
from ninr.train.setup import resolve

LABEL_FIELDS = ("study", "part", "arch", "label", "expected_phase")


@dataclass(frozen=True)
class RunSpec:
    """Everything one run of a study needs: its labels, seed, training config, hooks and options."""

    part: str
    study: str
    arch: str
    label: str
    seed: int
    train: TrainConfig
    phase: str | None = None
    hooks: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def resolved(self) -> dict[str, Any]:
        """The resolved training config (method defaults filled in)."""
        return resolve(self.train)[0]

    @cached_property
    def run_id(self) -> str:
        """The stable id: a hash of what the run computes (not of its labels)."""
        if not self.hooks and not self.options:
            return run_id(self.resolved)
        return run_id({"train": self.resolved, "hooks": list(self.hooks), "options": dict(self.options)})

    def labels(self) -> dict[str, Any]:
        """The label fields every record of this run carries."""
        return {
            "study": self.study,
            "part": self.part,
            "arch": self.arch,
            "label": self.label,
            "expected_phase": self.phase,
        }

    def describe(self) -> str:
        """``"table FC | in-NINR (Decay) | seed 1"``."""
        return f"{self.part} {self.arch} | {self.label} | seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (inverse: :meth:`from_dict`)."""
        return {
            "part": self.part,
            "study": self.study,
            "arch": self.arch,
            "label": self.label,
            "seed": self.seed,
            "train": self.train.to_dict(),
            "phase": self.phase,
            "hooks": list(self.hooks),
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Rebuild a spec written by :meth:`to_dict`."""
        d = dict(data)
        d["train"] = TrainConfig.from_dict(d["train"])
        d["hooks"] = tuple(d.get("hooks", ()))
        d["options"] = dict(d.get("options", {}))
        return cls(**d)


def _train_config(study: StudyConfig, arch: Arch, variant: Variant, seed: int) -> TrainConfig:
    override = variant.per_arch.get(arch.label, {})
    fields: dict[str, Any] = {**study.train, **arch.train, **variant.train, **dict(override.get("train", {}))}
    methods: tuple[MethodSpec, ...] = override.get("methods", variant.methods)
    where = f"[{study.part}] {arch.label} | {variant.label}"
    if "methods" in fields or "seed" in fields:
        raise ConfigError(f"{where}: set `methods` on the variant and seeds with `seeds`, not in a train table")
    fields["methods"] = [{"name": m.name, "params": dict(m.params)} for m in methods]
    fields["seed"] = seed
    try:
        return TrainConfig.from_dict(fields)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def expand_grid(study: StudyConfig, study_name: str) -> list[RunSpec]:
    """The runs of ``study``: architectures x variants x seeds, in that nesting order.

    Every config is resolved here (method names and hyperparameters checked), so a bad file fails
    before anything trains.
    """
    from ninr.studies.run import get_hook

    for name in study.hooks:
        try:
            factory = get_hook(name)
        except ConfigError as exc:
            raise ConfigError(f"[{study.part}].hooks: {exc}") from None
        try:  # a hook's settings (in [part.options.<hook>]) fail here, before anything trains
            getattr(factory, "check_options", lambda options: None)(study.options)
        except ConfigError as exc:
            raise ConfigError(f"[{study.part}.options.{name}]: {exc}") from None
    specs = []
    for arch in study.archs:
        for variant in study.variants:
            for seed in study.seeds:
                train = _train_config(study, arch, variant, seed)
                spec = RunSpec(
                    study.part,
                    study_name,
                    arch.label,
                    variant.label,
                    seed,
                    train,
                    variant.phase,
                    study.hooks,
                    dict(study.options),
                )
                try:
                    spec.resolved  # noqa: B018 (resolve now: unknown methods and bad hyperparameters fail early)
                except ConfigError as exc:
                    raise ConfigError(f"[{study.part}] {arch.label} | {variant.label}: {exc}") from None
                specs.append(spec)
    check_unique(specs)
    return specs


def check_unique(specs: Sequence[RunSpec]) -> None:
    """Two grid points with one run id would silently share results: refuse them, naming both."""
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        other = seen.setdefault(spec.run_id, spec)
        if other is not spec:
            raise ConfigError(
                f"runs {other.describe()!r} and {spec.describe()!r} have the same resolved config "
                f"(run id {spec.run_id}); make them differ or drop one"
            )


def expand_preset(preset: Preset) -> dict[str, list[RunSpec]]:
    """Every part's runs, by part name, through each part's own ``expand`` (and its ``stack`` setting checked)."""
    from ninr.studies.parts import get_part
    from ninr.studies.tasks import stacking

    runs = {}
    for study in preset.studies:
        part = get_part(study.part)
        stacking(study, part.run_many is not None)
        runs[study.part] = part.expand(study, preset.name)
    return runs


def relabel(record: Mapping[str, Any], spec: RunSpec) -> dict[str, Any]:
    """``record`` with the label fields of ``spec`` (for a resumed run whose row was renamed)."""
    return {**record, **spec.labels()}
