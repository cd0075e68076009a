"""Study parts: the pieces of a study (the table, the phase diagrams, the detector study, one training run, one
evaluation), each a registered plugin with a typed section.

A part turns its section of a preset (a TOML table, parsed into the part's ``Section`` dataclass by
:func:`ninr.schema.parse`: an unknown key gets a did-you-mean naming the section) into run specs
(``expand``), computes one run's records (``run``: called in a worker, so it must only read its spec), and
optionally trains a group of runs as one stack (``run_many``, for parts whose runs train one model each:
``stack_config`` says which training config a run stacks by). ``prepare`` runs once in the calling process
before any run (the detector study generates its events there). Records become report sections in
:mod:`ninr.report`, keyed by the part's name.

Adding a part: subclass :class:`Part` in a module of your own, decorate it with :func:`register_part`, and
import the module (ninr's own parts are imported by :mod:`ninr.studies`; a third-party package names its
module in the ``ninr.parts`` entry-point group).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO, TypeVar

from ninr.errors import ConfigError
from ninr.registry import Registry
from ninr.schema import parse
from ninr.studies.spec import RunSpec
from ninr.train.config import TrainConfig

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class RunOutput:
    """One spec's records from a task, and facts about how it ran for the run file's ``meta``.

    Attributes:
        records: The run's tidy records (what ``run`` returns for it alone, to float tolerance).
        meta: Merged into the run file's ``meta``, e.g. ``{"stacked": {"runs": 8, "index": 3}}`` for a run
            trained in a stack of 8. Not part of the records: how a run was computed is not what it computed.
    """

    records: Records
    meta: Mapping[str, Any] = field(default_factory=dict)


class Part(ABC):
    """One kind of study section (see the module docstring).

    Attributes:
        name: The section name in a preset (``[table]``) and the part's name in records and reports.
        title: Heading of the part in the report; its summary in ``ninr list parts``.
        order: Position of the part in ``reproduce`` and in the report (lower first).
        Section: The dataclass a section parses into; it has at least ``seeds`` and ``stack``.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    order: ClassVar[int] = 100
    Section: ClassVar[type]

    def parse_section(self, data: Any) -> Any:
        """The typed section from its TOML table."""
        return parse(self.Section, data, f"[{self.name}]")

    @abstractmethod
    def expand(self, section: Any, study: str) -> list[RunSpec]:
        """The runs of ``section`` in study ``study``, in a stable order; bad settings fail here."""

    @abstractmethod
    def run(self, spec: RunSpec) -> Records:
        """The records of one run: a pure function of ``spec``."""

    def run_output(self, spec: RunSpec) -> RunOutput:
        """One run alone, with facts about how it ran (:class:`RunOutput`); by default :meth:`run`'s records and
        no facts. Executors call this for a lone spec."""
        return RunOutput(self.run(spec))

    def stack_config(self, spec: RunSpec) -> TrainConfig | None:
        """The training config by which ``spec`` may share a stack with other runs; ``None``: it never does."""
        return None

    def stack_family(self, spec: RunSpec) -> Any:
        """What runs sharing a stack must agree on beyond their training configs (e.g. the run hooks)."""
        return None

    def run_many(self, specs: Sequence[RunSpec], *, progress: TextIO | None = None) -> list[RunOutput]:
        """The outputs of runs planned into one stack, one per spec in order (each equal to ``run``'s records
        to float tolerance). Only called for parts whose :meth:`stack_config` returns configs. ``progress``: a
        stream for a line per epoch of the stack (:class:`ninr.train.callbacks.StackProgress`), or ``None``."""
        raise ConfigError(f"part {self.name!r} runs its specs one by one")

    def prepare(self, specs: Sequence[RunSpec], store_root: Path) -> None:  # noqa: B027 (most parts need nothing)
        """Work done once in the calling process before the runs execute (e.g. generating shared data)."""

    def stackable(self) -> bool:
        """Whether this part's runs can share stacks at all."""
        return type(self).stack_config is not Part.stack_config


PARTS = Registry["Part"]("part", group="ninr.parts")

P = TypeVar("P", bound=type[Part])


def register_part(cls: P) -> P:
    """Class decorator: register one instance of ``cls`` under its ``name`` (its ``title`` is its summary)."""
    PARTS.add(cls.name, cls(), doc=cls.title)
    return cls


def ordered(names: Sequence[str]) -> list[str]:
    """``names`` sorted by each part's ``order`` (stable)."""
    return sorted(names, key=lambda n: PARTS.get(n).order if n in PARTS else 1000)
