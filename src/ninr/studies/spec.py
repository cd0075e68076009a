"""One run of a study: :class:`RunSpec`, its labels, its typed options and its id.

A run's id is the hash of what it computes: its part, its typed options' identity and the identity of
the data it reads (``{"part": ..., "options": ..., "data": ...}``, canonical JSON, sha256, 12 hex digits).
Labels (study, architecture, row label, intended phase) do not enter it: renaming a row does not recompute
it. Where the run keeps its files (``artifacts``) does not enter it either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from ninr.schema import to_dict
from ninr.train.config import canonical_json

LABEL_FIELDS = ("study", "part", "arch", "label", "expected_phase")
"""The label fields every record of a run carries (not part of the run's id)."""


class RunOptions(Protocol):
    """What a part's typed run options provide: a frozen dataclass with its identity and its data's."""

    def identity(self) -> Mapping[str, Any]:
        """Everything that determines what the run computes, resolved (defaults filled in), JSON-ready."""
        ...

    def data_identity(self) -> Mapping[str, Any]:
        """What identifies the data the run reads (a registered data set's name and arguments, file hashes)."""
        ...


def spec_id(part: str, options: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """The run id of ``(part, options identity, data identity)``: 12 hex digits of a sha256."""
    document = {"part": part, "options": dict(options), "data": dict(data)}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunSpec:
    """Everything one run of a study needs: its part, labels, seed and typed options.

    Attributes:
        part: The study part that runs it (a name in :data:`ninr.studies.parts.PARTS`).
        study: The study (preset) name.
        arch: The architecture label (table rows), or another grouping label of the part.
        label: The row label shown in reports.
        seed: The run's seed (also inside ``options`` where the part's computation uses it).
        options: The part's typed run options (:class:`RunOptions`).
        phase: The phase the run is meant to train in (a label, not a verdict).
        artifacts: A directory where the run writes its files (a run directory), or ``None``.
    """

    part: str
    study: str
    arch: str
    label: str
    seed: int
    options: Any
    phase: str | None = None
    artifacts: str | None = None

    @cached_property
    def identity(self) -> dict[str, Any]:
        """The hashed document: the options' and the data's identities."""
        return {"options": dict(self.options.identity()), "data": dict(self.options.data_identity())}

    @cached_property
    def run_id(self) -> str:
        """The stable id: a hash of the part, the options and the data (not of the labels)."""
        return spec_id(self.part, self.identity["options"], self.identity["data"])

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
        """A JSON-ready dict: labels, seed, the options as data, the hashed identity and the run id."""
        return {
            **{k: v for k, v in self.labels().items() if k != "expected_phase"},
            "phase": self.phase,
            "seed": self.seed,
            "options": to_dict(self.options),
            "identity": self.identity,
            "run_id": self.run_id,
        }

    def relabeled(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` with this spec's label fields (for a finished run whose row was renamed)."""
        return {**record, **self.labels()}
