"""The pieces of a report: figures (PNG bytes), one section per study part, and the whole report.

Each study part's ``report(records, study) -> PartReport`` function builds its section from records
alone; :mod:`ninr.report.builder` adds what the stores know (configuration, seeds, versions, wall
time) and renders Markdown and self-contained HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ninr.report.tables import Table


@dataclass(frozen=True)
class Figure:
    """A rendered figure: a file stem, a caption and PNG bytes."""

    name: str
    caption: str
    png: bytes


@dataclass
class PartReport:
    """The section of one study part: tables, figures and notes built from its records."""

    part: str
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Section:
    """A part's section plus what its store says about how it was run."""

    body: PartReport
    store: str
    n_runs: int
    n_expected: int
    seeds: list[int]
    wall_time_s: float
    compute_time_s: float
    sessions: int
    executors: list[str]
    versions: list[Mapping[str, Any]]
    machines: list[str] = field(default_factory=list)
    precisions: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A whole report: title, preset, configuration text, the claims sheet (rendered first) and sections in part
    order."""

    title: str
    preset: str
    description: str
    config_source: str
    config_text: str
    generated_at: str
    sections: list[Section]
    versions: Mapping[str, Any]
    claims: PartReport | None = None


def _versions_text(section: Section) -> str:
    return "; ".join(", ".join(f"{k} {v}" for k, v in sorted(vs.items())) for vs in section.versions) or "n/a"


def run_facts(section: Section) -> list[tuple[str, str]]:
    """The facts about how a part ran, as (name, value) pairs."""
    return [
        ("runs", f"{section.n_runs} of {section.n_expected}"),
        ("seeds", ", ".join(map(str, section.seeds)) or "n/a"),
        ("wall time", f"{section.wall_time_s:.1f} s over {section.sessions} session(s)"),
        ("compute time (sum over runs)", f"{section.compute_time_s:.1f} s"),
        ("executor", "; ".join(section.executors) or "n/a"),
        ("machine", "; ".join(section.machines) or "n/a (not recorded)"),
        ("precision", ", ".join(section.precisions) or "n/a"),
        ("versions", _versions_text(section)),
        ("store", section.store),
    ]
