"""The registry of report sections: a part's (or a run hook's) records -> its section of the report.

A section function ``fn(records, study) -> PartReport`` is registered under the name of the study part or
run hook whose records it presents (``"table"``, ``"phases"``, ``"robustness"``, ...); the report builder
looks it up by that name. A third-party part registers its section in the same way, or through the
``ninr.sections`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ninr.registry import Registry
from ninr.report.document import PartReport

SectionFn = Callable[[Sequence[Mapping[str, Any]], Mapping[str, Any]], PartReport]

SECTIONS = Registry[SectionFn]("section", group="ninr.sections")
