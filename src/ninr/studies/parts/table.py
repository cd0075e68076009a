"""Grids of training runs: the ``table`` part (the poster's comparison table) and the ``train`` part.

Both expand a section into architectures x method rows x seeds, train each run (runs that share an
architecture as one stack, :func:`ninr.train.train_many`; ``stack = false`` or ``--no-stack`` turns it off)
with the section's run hooks, and record one row per epoch. The ``table`` part's report compares the mean
and std over seeds with the poster's published numbers; the ``train`` part's report shows the training
curves (it is also the one-run study behind ``ninr train``, which writes the run's directory). A section::

    [table]
    seeds = [0, 1]                       # or a count: seeds = 2 means [0, 1]
    hooks = ["phase", "robustness"]      # run hooks by name (ninr list hooks)
    stack = true                         # train runs that share an architecture as one stack (default)

    [table.train]                        # TrainConfig fields shared by every run
    dataset = "fashion-mnist"            # required: here, or in every architecture's or row's train table
    epochs = 1

    [table.arch.FC]                      # one entry per architecture: its label, then TrainConfig overrides
    model = "mlp"

    [[table.variant]]                    # one entry per method row
    label = "in-NINR (Decay)"            # the row label (matches the poster's row)
    phase = "decay"                      # the phase this row is meant to train in (data, not a verdict)
    methods = [{ name = "in-ninr", params = { sigma = 1.0 } }]
    train = { lr = 0.05 }                # optional TrainConfig overrides for this row
    per_arch.CNN = { methods = [...] }   # optional per-architecture overrides (methods and/or train)

    [table.options.robustness]           # the run hooks' settings, by hook name (they join the run ids)

Every run must name its data set (``dataset``, in ``[table.train]`` or an architecture's or row's train table):
a grid that names none is refused when it is expanded, naming the section, rather than silently training
:class:`TrainConfig`'s defaults (the full Fashion-MNIST, 5 epochs of the MLP). The other fields fall back to
those defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

from ninr.data.base import Dataset, load_dataset
from ninr.errors import ConfigError, did_you_mean, fail
from ninr.schema import parse
from ninr.studies.hook import RUN_HOOKS, RunHook
from ninr.studies.part import Part, Records, RunOutput, register_part
from ninr.studies.records import base_fields, to_records
from ninr.studies.section import METHODS, SEEDS
from ninr.studies.spec import RunSpec
from ninr.train.callbacks import EpochPrinter, StackProgress
from ninr.train.config import MethodSpec, TrainConfig, canonical_json
from ninr.train.run import TrainResult, train, train_many
from ninr.train.setup import resolve


@dataclass(frozen=True)
class PerArch:
    """A row's overrides for one architecture: its methods and TrainConfig fields."""

    methods: tuple[MethodSpec, ...] | None = field(default=None, metadata=METHODS)
    train: Mapping[str, Any] = field(default_factory=dict)


def _per_arch(value: Any, where: str) -> dict[str, PerArch]:
    if not isinstance(value, Mapping):
        raise fail(where, "a table of architecture labels", value)
    return {str(arch): parse(PerArch, entry, f"{where}.{arch}") for arch, entry in value.items()}


@dataclass(frozen=True)
class Variant:
    """A method row: label, methods, the intended phase, and overrides."""

    label: str
    methods: tuple[MethodSpec, ...] = field(default=(), metadata=METHODS)
    phase: str | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    per_arch: Mapping[str, PerArch] = field(default_factory=dict, metadata={"parse": _per_arch})
    """Overrides per architecture label (``per_arch.CNN = {methods = [...]}``)."""

    def __post_init__(self) -> None:
        if not self.label.strip():
            raise fail("label", "a non-empty string", self.label)


@dataclass(frozen=True)
class Arch:
    """An architecture axis entry: a label (``"FC"``), the TrainConfig fields it sets, and run-hook settings for
    its runs (``options``, by hook name, over the section's: ``[table.arch.CNN.options.phase] every = 100``)."""

    label: str
    train: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


def _archs(value: Any, where: str) -> tuple[Arch, ...]:
    if not isinstance(value, Mapping):
        raise fail(where, "a table of architectures ([table.arch.LABEL])", value)
    archs = []
    for label, entry in value.items():
        if not isinstance(entry, Mapping):
            raise fail(f"{where}.{label}", "a table of TrainConfig fields", entry)
        options = entry.get("options", {})
        if not isinstance(options, Mapping) or not all(isinstance(v, Mapping) for v in options.values()):
            raise fail(f"{where}.{label}.options", "a table of hook settings by hook name", options)
        train = {k: v for k, v in entry.items() if k != "options"}
        archs.append(Arch(str(label), train, dict(options)))
    return tuple(archs)


def hook_options(section: GridSection, arch: Arch) -> dict[str, Any]:
    """The run-hook settings of ``arch``'s runs: the section's, with the architecture's keys over them per hook."""
    merged = {name: dict(value) if isinstance(value, Mapping) else value for name, value in section.options.items()}
    for name, value in arch.options.items():
        base = merged.get(name, {})
        merged[name] = {**(base if isinstance(base, Mapping) else {}), **value}
    return merged


@dataclass(frozen=True)
class GridSection:
    """A section of a grid part: architectures x variants x seeds, with run hooks and their settings.

    ``stack``: whether runs that can share a stack train as one (:mod:`ninr.studies.tasks`); ``None`` (not
    set) means on. It never enters a run id: stacked and one-by-one records agree to float tolerance.
    """

    seeds: tuple[int, ...] = field(metadata=SEEDS)
    hooks: tuple[str, ...] = ()
    stack: bool | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    arch: tuple[Arch, ...] = field(default=(), metadata={"parse": _archs})
    variant: tuple[Variant, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def archs(self) -> tuple[Arch, ...]:
        """The architectures (default: one, labelled by the model name)."""
        return self.arch or (Arch(str(self.train.get("model", "mlp"))),)

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The method rows (default: one, ``None``)."""
        return self.variant or (Variant("None"),)

    def __post_init__(self) -> None:
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise fail("variant labels", "unique", labels)
        arch_labels = {a.label for a in self.archs}
        for v in self.variants:
            for arch in v.per_arch:
                if arch not in arch_labels:
                    raise ConfigError(
                        f"variant {v.label!r}: per_arch names unknown architecture {arch!r}"
                        f"{did_you_mean(arch, arch_labels)} (known: {', '.join(sorted(arch_labels))})"
                    )


@dataclass(frozen=True)
class TrainRun:
    """One training run of a grid: its config, the run hooks and their settings.

    ``progress``: print a line per epoch (and a bar on a terminal) while training; not part of the run's id.
    """

    train: TrainConfig
    hooks: tuple[str, ...] = ()
    hook_options: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = False

    def identity(self) -> dict[str, Any]:
        """The resolved training config (every method default filled in), the hooks and their settings."""
        return {"train": resolve(self.train)[0], "hooks": list(self.hooks), "hook_options": dict(self.hook_options)}

    def data_identity(self) -> dict[str, Any]:
        """A registered data set by name and arguments (its files are checksum-verified)."""
        return {"dataset": self.train.dataset, "dataset_kwargs": dict(self.train.dataset_kwargs)}


def train_config(section: GridSection, part: str, arch: Arch, variant: Variant, seed: int) -> TrainConfig:
    """The TrainConfig of one grid point: section, architecture, row and per-architecture fields, and the seed."""
    override = variant.per_arch.get(arch.label, PerArch())
    fields: dict[str, Any] = {**section.train, **arch.train, **variant.train, **dict(override.train)}
    methods = override.methods if override.methods is not None else variant.methods
    where = f"[{part}] {arch.label} | {variant.label}"
    if "methods" in fields or "seed" in fields:
        raise ConfigError(f"{where}: set `methods` on the variant and seeds with `seeds`, not in a train table")
    fields["methods"] = [{"name": m.name, "params": dict(m.params)} for m in methods]
    fields["seed"] = seed
    try:
        config = TrainConfig.from_dict(fields)
        resolve(config)  # unknown methods and bad hyperparameters fail here, before anything trains
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if "dataset" not in fields:
        defaults = TrainConfig()
        raise ConfigError(
            f"[{part}.train]: `dataset` is required (here, or in the train table of architecture {arch.label!r} or "
            f"of row {variant.label!r}), got none; without it the run would train the defaults, "
            f"{defaults.dataset!r} for {defaults.epochs} epochs"
        )
    return config


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


def expand_grid(section: GridSection, part: str, study: str) -> list[RunSpec]:
    """The runs of a grid section: architectures x variants x seeds, in that nesting order.

    Every config is resolved here (method names and hyperparameters checked), and so are the hooks'
    settings, so a bad file fails before anything trains.
    """
    for name in section.hooks:
        try:
            factory = RUN_HOOKS.get(name)
        except ConfigError as exc:
            raise ConfigError(f"[{part}].hooks: {exc}") from None
        for arch in section.archs:
            where = f"[{part}.arch.{arch.label}.options.{name}]" if name in arch.options else f"[{part}.options.{name}]"
            try:
                getattr(factory, "check_options", lambda options: None)(hook_options(section, arch))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    for arch in section.archs:
        unknown = [name for name in arch.options if name not in section.hooks]
        if unknown:
            raise ConfigError(
                f"[{part}.arch.{arch.label}.options]: settings for {unknown[0]!r}, which is not among the section's "
                f"hooks {list(section.hooks)}{did_you_mean(unknown[0], section.hooks)}"
            )
    specs = []
    for arch in section.archs:
        options = hook_options(section, arch)
        for variant in section.variants:
            for seed in section.seeds:
                run = TrainRun(train_config(section, part, arch, variant, seed), section.hooks, options)
                specs.append(RunSpec(part, study, arch.label, variant.label, seed, run, variant.phase))
    check_unique(specs)
    return specs


def record_fields(spec: RunSpec) -> dict[str, Any]:
    """The model and method names every record of a training run carries."""
    config: TrainConfig = spec.options.train
    return {"model": config.model, "methods": "+".join(m.name for m in config.methods) or "none"}


def hooked_records(spec: RunSpec, hooks: Sequence[RunHook], result: TrainResult, data: Dataset) -> Records:
    """The tidy records of a trained run: its epochs, the hooks' final fields, then the hooks' own rows."""
    extra: dict[str, Any] = {}
    for hook in hooks:
        extra.update(hook.summary(result))
    fields = record_fields(spec)
    rows = to_records(spec, result.records, result.status, extra, **fields)
    base = {**base_fields(spec, **fields), "run_status": result.status}
    for hook in hooks:
        rows += [{**base, **row, "final": False} for row in hook.records(result, data)]
    return rows


def _hooks_of(spec: RunSpec) -> list[RunHook]:
    return [RUN_HOOKS.get(name)(spec) for name in spec.options.hooks]


def _load(config: TrainConfig) -> Dataset:
    return load_dataset(config.dataset, **dict(config.dataset_kwargs))


class GridPart(Part):
    """A part whose runs are a grid of training runs (see the module docstring)."""

    Section: ClassVar[type] = GridSection

    def expand(self, section: GridSection, study: str) -> list[RunSpec]:
        return expand_grid(section, self.name, study)

    def run(self, spec: RunSpec) -> Records:
        """Train ``spec``'s config with its hooks (writing its run directory when it has ``artifacts``)."""
        return self.run_output(spec).records

    def run_output(self, spec: RunSpec) -> RunOutput:
        """:meth:`run`, with the precision an ``"auto"`` run computed in as ``meta["precision"]``."""
        hooks = _hooks_of(spec)
        data = _load(spec.options.train)  # loaded here so hooks evaluate on the same data without a reload
        out = Path(spec.artifacts) if spec.artifacts else None
        shown = [EpochPrinter()] if spec.options.progress else []
        result = train(
            spec.options.train, data=data, callbacks=[*hooks, *shown], out_dir=out, overwrite=out is not None
        )
        return RunOutput(hooked_records(spec, hooks, result, data), run_meta(result.setup))

    def stack_config(self, spec: RunSpec) -> TrainConfig | None:
        return None if spec.artifacts else spec.options.train

    def stack_family(self, spec: RunSpec) -> Any:
        return [list(spec.options.hooks), dict(spec.options.hook_options)]

    def run_many(self, specs: Sequence[RunSpec], *, progress: TextIO | None = None) -> list[RunOutput]:
        """Train the specs with :func:`ninr.train.train_many` (as one stack where they share one), each with its
        own hooks. Each output's records are what :meth:`run` gives for its spec alone, to float tolerance;
        ``meta["stacked"] = {"runs": K, "index": k}`` says which runs were trained in a stack of K. With
        ``progress``, a :class:`~ninr.train.callbacks.StackProgress` line per epoch of the stack goes there."""
        hooks = [_hooks_of(spec) for spec in specs]
        callbacks: list[list[Any]] = [list(h) for h in hooks]
        if progress is not None:
            more = f" and {len(specs) - 1} more" if len(specs) > 1 else ""
            shown = StackProgress(f"   {specs[0].describe()}{more}", progress)
            callbacks = [[*c, shown] for c in callbacks]
        keys = [canonical_json(spec.identity["data"]) for spec in specs]
        datasets: dict[str, Dataset] = {}
        for spec, key in zip(specs, keys, strict=True):  # one load per data set, shared by training and hooks
            if key not in datasets:
                datasets[key] = _load(spec.options.train)
        data = datasets[keys[0]] if len(datasets) == 1 else None
        # min_stack=1: a stack of one (a group split across workers, or resumed part-way) computes what it does
        # in the whole stack (composition_invariant), where the one-by-one loop would differ in the last bits.
        configs = [spec.options.train for spec in specs]
        results = train_many(configs, data, callbacks=callbacks, max_stack=len(specs), min_stack=1)
        outputs = []
        for spec, spec_hooks, result, key in zip(specs, hooks, results, keys, strict=True):
            records = hooked_records(spec, spec_hooks, result, datasets[key])
            outputs.append(RunOutput(records, run_meta(result.setup)))
        return outputs


def run_meta(setup: Mapping[str, Any]) -> dict[str, Any]:
    """What a trained run's ``setup`` says about how it ran, for its run file's ``meta``: the stack it shared
    (``stacked``) and the precision an ``"auto"`` run resolved to (``precision``)."""
    return {key: setup[key] for key in ("stacked", "precision") if setup.get(key)}


@register_part
class TablePart(GridPart):
    """The poster's comparison table: clean accuracy per (architecture, method row) over seeds."""

    name: ClassVar[str] = "table"
    title: ClassVar[str] = "Clean accuracy compared with the poster"
    order: ClassVar[int] = 10


@register_part
class TrainPart(GridPart):
    """Training runs with their curves (``ninr train`` is a one-run study of this part)."""

    name: ClassVar[str] = "train"
    title: ClassVar[str] = "Training runs"
    order: ClassVar[int] = 20
