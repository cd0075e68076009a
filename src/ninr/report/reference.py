"""Published reference numbers kept in the package (``ninr/reference/*.csv``) and their loader.

A reference file is CSV with ``#`` comment lines first (where the numbers come from), then a header
``arch,method,mean,std`` and one row per (architecture, method row label).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from importlib import resources

from ninr.errors import DataError

POSTER_CLEAN_ACCURACY = "poster_clean_accuracy.csv"
COLUMNS = ("arch", "method", "mean", "std")


@dataclass(frozen=True)
class ReferenceValue:
    """A published mean and std (in the unit of the source, e.g. accuracy in %)."""

    arch: str
    method: str
    mean: float
    std: float


@dataclass(frozen=True)
class Reference:
    """A table of published values and the text that says where they come from."""

    name: str
    source: str
    values: tuple[ReferenceValue, ...]

    def get(self, arch: str, method: str) -> ReferenceValue | None:
        """The value of ``(arch, method)``, or ``None``."""
        for v in self.values:
            if v.arch == arch and v.method == method:
                return v
        return None


def parse_reference_csv(text: str, name: str = "reference") -> Reference:
    """Parse a reference file's text (comment lines, header, rows)."""
    lines = text.splitlines()
    source = "\n".join(line[1:].strip() for line in lines if line.startswith("#"))
    body = [line for line in lines if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(body)))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise DataError(f"{name}: header must be {','.join(COLUMNS)}, got {reader.fieldnames}")
    values = []
    for i, row in enumerate(reader, start=2):
        try:
            mean, std = float(row["mean"]), float(row["std"])
        except (TypeError, ValueError):
            raise DataError(f"{name}: row {i}: mean and std must be numbers, got {row}") from None
        if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
            raise DataError(f"{name}: row {i}: mean must be finite and std finite and >= 0, got {row}")
        values.append(ReferenceValue(row["arch"], row["method"], mean, std))
    return Reference(name, source, tuple(values))


def load_reference(filename: str = POSTER_CLEAN_ACCURACY) -> Reference:
    """A reference file shipped in ``ninr/reference/``."""
    path = resources.files("ninr").joinpath("reference", filename)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"reference file {filename!r} is not installed with ninr (package data missing)") from None
    return parse_reference_csv(text, filename)


def load_poster_reference() -> Reference:
    """Clean Fashion-MNIST test accuracy (%) of the poster's comparison table, with its source."""
    return load_reference(POSTER_CLEAN_ACCURACY)
