"""ninr's study parts; importing this package registers them (third-party parts: entry-point group ``ninr.parts``)."""

from ninr.studies.parts import evaluate, hep, phases, table

__all__ = ["evaluate", "hep", "phases", "table"]
