"""Study parts: the pieces of ``ninr reproduce`` (table, robustness, phases), looked up by name.

A part says how its section of a preset becomes runs (``expand``), how one run becomes records
(``run``, a picklable top-level function so pools and Dask workers can call it), optionally how a
group of runs becomes records at once (``run_many``: the table part trains a group as one stack), and
how records become tables and figures (``report``, named as ``"module:function"`` and imported only
when a report is built, so workers never import plotting code).

Adding a part (robustness, phases): in your own module, build a :class:`StudyPart` and
``register_part(name, part)``; then add the module's path to :data:`PART_MODULES` (a one-line edit).
:func:`load_parts` imports every module listed there, in the main process and in every worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ninr.registry import Registry

if TYPE_CHECKING:
    from ninr.studies.config import StudyConfig
    from ninr.studies.run import RunOutput
    from ninr.studies.sweep import RunSpec

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class StudyPart:
    """One part of a study.

    Attributes:
        title: Heading of the part in the report.
        run: ``run(spec) -> records``: a pure, picklable function.
        report: ``"module:function"`` of ``report(records, study) -> PartReport`` (see ninr.report).
        expand: ``expand(study_config, study_name) -> list[RunSpec]``; default: the arch x variant x seed grid.
        order: Position of the part in ``reproduce`` and in the report (lower first).
        run_many: ``run_many(specs) -> [RunOutput]``, one per spec in order: a group of specs the sweep
            planned together (:mod:`ninr.studies.tasks`: same hooks and options, and
            :func:`ninr.train.group_stackable` puts their configs in one stack), computed at once. Each
            output's records must equal ``run(spec)``'s to float tolerance. ``None`` (the default): the
            part's runs always go one by one, and ``stack`` in its section is an error.
    """

    title: str
    run: Callable[[RunSpec], Records]
    report: str
    expand: Callable[[StudyConfig, str], list[RunSpec]]
    order: int = 100
    run_many: Callable[[Sequence[RunSpec]], list[RunOutput]] | None = None

    def report_fn(self) -> Callable[..., Any]:
        """Import and return the report function."""
        module, _, name = self.report.partition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return fn


PARTS = Registry[StudyPart]("study part", group="ninr.parts")

# Modules that register study parts when imported. Others plug theirs in here.
PART_MODULES: tuple[str, ...] = ("ninr.studies.table", "ninr.studies.phases_part", "ninr.studies.hep_part")


def register_part(name: str, part: StudyPart) -> StudyPart:
    """Add ``part`` to :data:`PARTS` under ``name`` (its title is the one-line summary in ``ninr list``)."""
    PARTS.add(name, part, doc=part.title)
    return part


def load_parts() -> None:
    """Import every module in :data:`PART_MODULES` (idempotent)."""
    for module in PART_MODULES:
        importlib.import_module(module)


def get_part(name: str) -> StudyPart:
    """The part called ``name`` (did-you-mean on a miss)."""
    load_parts()
    return PARTS.get(name)


def ordered(names: list[str]) -> list[str]:
    """``names`` sorted by each part's ``order`` (stable)."""
    load_parts()
    return sorted(names, key=lambda n: PARTS.get(n).order if n in PARTS else 1000)
