"""Preset files: a study as TOML, one section per part, each parsed into its part's typed section.

A preset (``configs/quick.toml``) has a ``name``, a ``description`` and one table per study part
(``[table]``, ``[phases]``, ``[hep]``, ...), in the order the parts run. Each table is parsed by its part
(:meth:`ninr.studies.part.Part.parse_section`): an unknown key gets a did-you-mean naming its section, a wrong
type a message naming the key, the rule and the value. Nothing trains before the whole file resolves.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ninr.errors import ConfigError, did_you_mean, fail
from ninr.studies.part import PARTS

PRESET_KEYS = ("name", "description")


@dataclass(frozen=True)
class Preset:
    """A whole preset file: a name, a description and its parts' typed sections in file order."""

    name: str
    sections: tuple[tuple[str, Any], ...]
    description: str = ""
    source: str = ""
    text: str = ""

    def parts(self) -> list[str]:
        """The part names, in file order."""
        return [part for part, _ in self.sections]

    def section(self, part: str) -> Any:
        """The typed section of ``part``."""
        for name, section in self.sections:
            if name == part:
                return section
        raise ConfigError(
            f"`only` must be a part of preset {self.name!r}, got {part!r}{did_you_mean(part, self.parts())}"
        )

    def select(self, only: Sequence[str] | None) -> Preset:
        """A copy keeping only the parts in ``only`` (all parts when ``None``), each once."""
        if not only:
            return self
        keep = tuple((p, self.section(p)) for p in dict.fromkeys(only))  # `--only table --only table`: once
        return Preset(self.name, keep, self.description, self.source, self.text)


def parse_preset(data: Mapping[str, Any], *, name: str = "", source: str = "", text: str = "") -> Preset:
    """A parsed TOML document as a :class:`Preset`; every table other than ``name``/``description`` is a part."""
    sections = []
    for key, value in data.items():
        if key in PRESET_KEYS:
            continue
        if key not in PARTS:
            allowed = [*PRESET_KEYS, *PARTS.names()]
            hint = did_you_mean(key, allowed)
            raise ConfigError(f"{source or 'preset'}: unknown section {key!r}{hint} (allowed: {', '.join(allowed)})")
        sections.append((key, PARTS.get(key).parse_section(value)))
    if not sections:
        raise ConfigError(f"{source or 'preset'}: no study part (expected a section such as [table])")
    preset_name = data.get("name", name)
    if not isinstance(preset_name, str) or not preset_name.strip():
        raise fail("name", "a non-empty string", preset_name)
    return Preset(preset_name, tuple(sections), str(data.get("description", "")), source, text)


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
    dirs.append(Path(__file__).resolve().parents[3] / "configs")  # src/ninr/studies -> the checkout's root
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


def find_file(value: str, key: str) -> Path:
    """A file a section names (e.g. ``[hep.options].study``): absolute, or relative to the working directory
    or to the checkout holding ``configs/``."""
    path = Path(value)
    if path.is_absolute():
        return path
    bases = list(dict.fromkeys([Path.cwd(), *(d.parent for d in config_dirs()[1:])]))
    for base in bases:
        if (base / path).is_file():
            return base / path
    raise ConfigError(f"{key}: no file {value!r} (looked in {', '.join(str(b) for b in bases)})")
