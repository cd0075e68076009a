"""Experiment files: TOML resolved once into frozen dataclasses.

A *preset* file (``configs/quick.toml``) names a study and holds one section per study part
(``[table]``, ``[robustness]``, ``[phases]``). A part's section is a grid::

    name = "quick"
    description = "..."

    [table]
    seeds = [0, 1]                       # or a count: seeds = 2 means [0, 1]
    hooks = []                           # run hooks by name (see ninr.studies.run.RUN_HOOKS)
    stack = true                         # train runs that share an architecture as one stack (default)

    [table.train]                        # TrainConfig fields shared by every run
    dataset = "fashion-mnist"
    epochs = 1

    [table.arch.FC]                      # one entry per architecture: its label, then TrainConfig overrides
    model = "mlp"

    [[table.variant]]                    # one entry per method row
    label = "in-NINR (Decay)"           # the row label (matches the poster's row)
    phase = "decay"                      # the phase this row is meant to train in (data, not a verdict)
    methods = [{ name = "in-ninr", params = { sigma = 1.0 } }]
    train = { lr = 0.05 }                # optional TrainConfig overrides for this row
    per_arch.CNN = { methods = [...] }   # optional per-architecture overrides (methods and/or train)

    [table.options]                      # part-specific settings, passed to the part's run function

Unknown keys are errors that name the key and the keys allowed there.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ninr.errors import ConfigError, check_nonneg_int, did_you_mean, fail
from ninr.train.config import MethodSpec

PRESET_KEYS = ("name", "description")
STUDY_KEYS = ("seeds", "hooks", "stack", "train", "arch", "variant", "options")
VARIANT_KEYS = ("label", "methods", "phase", "train", "per_arch")
PER_ARCH_KEYS = ("methods", "train")


@dataclass(frozen=True)
class Arch:
    """An architecture axis entry: a label (``"FC"``) and the TrainConfig fields it sets."""

    label: str
    train: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """A method row: label, methods, the intended phase, and overrides."""

    label: str
    methods: tuple[MethodSpec, ...] = ()
    phase: str | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    per_arch: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    """One part of a preset: a grid of architectures x variants x seeds.

    ``stack``: whether runs that can share a stack are trained as one (``ninr.studies.tasks``);
    ``None`` (not set) means the part's default: on where the part can (the table part). It never
    enters a run id: stacked and one-by-one records agree to float tolerance.
    """

    part: str
    seeds: tuple[int, ...]
    train: Mapping[str, Any] = field(default_factory=dict)
    archs: tuple[Arch, ...] = ()
    variants: tuple[Variant, ...] = ()
    hooks: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    stack: bool | None = None


@dataclass(frozen=True)
class Preset:
    """A whole preset file: a name, a description and its study parts in file order."""

    name: str
    studies: tuple[StudyConfig, ...]
    description: str = ""
    source: str = ""
    text: str = ""

    def parts(self) -> list[str]:
        """The part names, in file order."""
        return [s.part for s in self.studies]

    def study(self, part: str) -> StudyConfig:
        """The section of ``part``."""
        for s in self.studies:
            if s.part == part:
                return s
        raise ConfigError(
            f"`only` must be a part of preset {self.name!r}, got {part!r}{did_you_mean(part, self.parts())}"
        )

    def select(self, only: Sequence[str] | None) -> Preset:
        """A copy keeping only the parts in ``only`` (all parts when ``None``)."""
        if not only:
            return self
        keep = tuple(self.study(p) for p in only)
        return Preset(self.name, keep, self.description, self.source, self.text)


def _check_keys(where: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r}{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})"
            )


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(where, "a table", value)
    return dict(value)


def _label(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(where, "a non-empty string", value)
    return value


def parse_seeds(value: Any) -> tuple[int, ...]:
    """``seeds = 3`` means ``(0, 1, 2)``; a list is taken as is (integers >= 0, no repeats)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise fail("seeds", "an integer >= 1 or a non-empty list of integers >= 0", value)
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        raise fail("seeds", "an integer >= 1 or a non-empty list of integers >= 0", value)
    seeds = tuple(check_nonneg_int("seeds", s) for s in value)
    if len(set(seeds)) != len(seeds):
        raise fail("seeds", "a list without repeats", list(seeds))
    return seeds


def parse_methods(where: str, value: Any) -> tuple[MethodSpec, ...]:
    """``["in-ninr"]`` or ``[{name = "in-ninr", params = {sigma = 1.0}}]``; ``"none"`` entries are dropped."""
    if not isinstance(value, list):
        raise fail(where, "a list of method names or {name, params} tables", value)
    specs = []
    for item in value:
        if isinstance(item, str):
            item = {"name": item}
        item = _table(where, item)
        _check_keys(where, item, ("name", "params"))
        name = _label(f"{where}.name", item.get("name"))
        if name != "none":
            specs.append(MethodSpec(name, _table(f"{where}.params", item.get("params", {}))))
    return tuple(specs)


def _parse_variant(part: str, i: int, data: Any) -> Variant:
    where = f"[[{part}.variant]] #{i + 1}"
    data = _table(where, data)
    _check_keys(where, data, VARIANT_KEYS)
    per_arch = {}
    for arch, entry in _table(f"{where}.per_arch", data.get("per_arch", {})).items():
        entry = _table(f"{where}.per_arch.{arch}", entry)
        _check_keys(f"{where}.per_arch.{arch}", entry, PER_ARCH_KEYS)
        if "methods" in entry:
            entry["methods"] = parse_methods(f"{where}.per_arch.{arch}.methods", entry["methods"])
        per_arch[arch] = entry
    phase = data.get("phase")
    return Variant(
        label=_label(f"{where}.label", data.get("label")),
        methods=parse_methods(f"{where}.methods", data.get("methods", [])),
        phase=None if phase is None else _label(f"{where}.phase", phase),
        train=_table(f"{where}.train", data.get("train", {})),
        per_arch=per_arch,
    )


def parse_study(part: str, data: Any) -> StudyConfig:
    """One part's section as a :class:`StudyConfig` (the part name is not checked here)."""
    data = _table(f"[{part}]", data)
    _check_keys(f"[{part}]", data, STUDY_KEYS)
    if "seeds" not in data:
        raise ConfigError(f"[{part}]: `seeds` is required (a count or a list of integers)")
    train = _table(f"[{part}.train]", data.get("train", {}))
    archs = tuple(
        Arch(_label(f"[{part}.arch]", k), _table(f"[{part}.arch.{k}]", v)) for k, v in data.get("arch", {}).items()
    )
    if not archs:
        archs = (Arch(str(train.get("model", "mlp"))),)
    raw_variants = data.get("variant", [])
    if not isinstance(raw_variants, list):
        raise fail(f"[{part}].variant", "an array of tables ([[...variant]])", raw_variants)
    variants = tuple(_parse_variant(part, i, v) for i, v in enumerate(raw_variants)) or (Variant("None"),)
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise fail(f"[{part}] variant labels", "unique", labels)
    arch_labels = {a.label for a in archs}
    for v in variants:
        for arch in v.per_arch:
            if arch not in arch_labels:
                raise ConfigError(
                    f"[{part}] variant {v.label!r}: per_arch names unknown architecture {arch!r}"
                    f"{did_you_mean(arch, arch_labels)} (known: {', '.join(sorted(arch_labels))})"
                )
    hooks = data.get("hooks", [])
    if not isinstance(hooks, list) or not all(isinstance(h, str) for h in hooks):
        raise fail(f"[{part}].hooks", "a list of hook names", hooks)
    options = _table(f"[{part}.options]", data.get("options", {}))
    stack = data.get("stack")
    if stack is not None and not isinstance(stack, bool):
        raise fail(f"[{part}].stack", "true or false", stack)
    return StudyConfig(part, parse_seeds(data["seeds"]), train, archs, variants, tuple(hooks), options, stack)


def parse_preset(data: Mapping[str, Any], *, name: str = "", source: str = "", text: str = "") -> Preset:
    """A parsed TOML document as a :class:`Preset`; every section other than ``name``/``description`` is a part."""
    from ninr.studies.parts import PARTS, load_parts

    load_parts()
    studies = []
    for key, value in data.items():
        if key in PRESET_KEYS:
            continue
        if key not in PARTS:
            allowed = [*PRESET_KEYS, *PARTS.names()]
            where = source or "preset"
            hint = did_you_mean(key, allowed)
            raise ConfigError(f"{where}: unknown section {key!r}{hint} (allowed: {', '.join(allowed)})")
        studies.append(parse_study(key, value))
    if not studies:
        raise ConfigError(f"{source or 'preset'}: no study part (expected a section such as [table])")
    preset_name = _label("name", data.get("name", name))
    return Preset(preset_name, tuple(studies), str(data.get("description", "")), source, text)


def load_preset(path: str | Path) -> Preset:
    """Read and resolve a preset file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"`config` must be a readable TOML file, got {str(path)!r} ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_preset(data, name=path.stem, source=str(path), text=text)


def config_dirs(extra: str | Path | None = None) -> list[Path]:
    """Where ``--preset NAME`` is looked up: ``extra``, ``./configs``, then the source checkout's ``configs/``."""
    dirs = [Path(extra)] if extra is not None else []
    dirs.append(Path.cwd() / "configs")
    dirs.append(Path(__file__).resolve().parents[3] / "configs")  # src/ninr/experiments -> repo root
    return dirs


def find_preset(name: str, config_dir: str | Path | None = None) -> Path:
    """The file of preset ``name`` (a name such as ``quick``, or a path to a ``.toml`` file)."""
    direct = Path(name)
    if direct.suffix == ".toml" and direct.is_file():
        return direct
    tried = []
    for d in config_dirs(config_dir):
        candidate = d / f"{name}.toml"
        if candidate.is_file():
            return candidate
        tried.append(str(d))
    known = sorted({p.stem for d in config_dirs(config_dir) if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(
        f"`preset` must name a file in configs/, got {name!r}{did_you_mean(name, known)} "
        f"(known: {', '.join(known) or 'none'}; looked in {', '.join(tried)})"
    )
