"""Published reference numbers: the poster's table (``ninr/reference/*.csv``) and outside Fashion-MNIST results.

A reference file is CSV with ``#`` comment lines first (where the numbers come from), then a header
``arch,method,mean,std`` and one row per (architecture, method row label).

:data:`OUTSIDE_RESULTS` are Fashion-MNIST test accuracies that no one here produced, each with its source, for
the report to set our None rows beside: whether a network of that size lands where the literature says.
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


OUTSIDE_SOURCE = "shared/reference/fashion-mnist-outside-results.md"
"""The reference sheet the outside numbers were copied from (each number checked against it)."""

XIAO_2017 = (
    "Xiao, Rasul, Vollgraf, 'Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms', "
    "arXiv:1708.07747, Table 3 (scikit-learn classifiers, mean over 5 runs; the grid is in zalandoresearch/"
    "fashion-mnist, benchmark/baselines.json)"
)
README = "the README of zalandoresearch/fashion-mnist, results submitted by users (not verified by its maintainers)"
CITES = {XIAO_2017: "Xiao et al. 2017, Table 3", README: "fashion-mnist README"}


@dataclass(frozen=True)
class PublishedResult:
    """A published Fashion-MNIST test accuracy (a fraction, as published) and where it comes from.

    ``beside`` names the architecture of ours whose None row it is compared with (``"FC"``: our
    784-256-256-256-10 ReLU MLP; ``"CNN"``: two 3x3 convolutions (32, 64) with max-pooling and a 128-unit dense
    layer), or ``None`` for a result shown for context only (another size or another kind of model).
    """

    model: str
    accuracy: float
    source: str
    beside: str | None

    @property
    def cite(self) -> str:
        """A short name of the source (the full one is :attr:`source`)."""
        return CITES.get(self.source, self.source)


OUTSIDE_RESULTS: tuple[PublishedResult, ...] = (
    # FC: multilayer perceptrons with at least 100 units in their first hidden layer. [10, 10] is left out of the
    # comparison: about 8k weights against our FC's 335k, so it says where a much smaller network lands.
    PublishedResult("MLPClassifier, relu, hidden [100]", 0.871, XIAO_2017, "FC"),
    PublishedResult("MLPClassifier, relu, hidden [100, 10]", 0.870, XIAO_2017, "FC"),
    PublishedResult("MLPClassifier, tanh, hidden [100]", 0.868, XIAO_2017, "FC"),
    PublishedResult("MLPClassifier, relu, hidden [10, 10]", 0.850, XIAO_2017, None),
    PublishedResult("SVC, C=10, rbf kernel", 0.897, XIAO_2017, None),
    PublishedResult("LogisticRegression", 0.842, XIAO_2017, None),
    PublishedResult("MLP 256-128-100", 0.8833, README, "FC"),
    # CNN: networks with two convolutional layers, like ours; deeper ones are context.
    PublishedResult("2 conv + pooling (Keras)", 0.876, README, "CNN"),
    PublishedResult("2 conv + ELU (PyTorch)", 0.903, README, "CNN"),
    PublishedResult("2 conv, under 100k parameters", 0.925, README, "CNN"),
    PublishedResult("3 conv + 2 FC", 0.907, README, None),
    PublishedResult("3 conv + pooling + 2 FC + dropout", 0.926, README, None),
    PublishedResult("ResNet18 with augmentation", 0.949, README, None),
)
"""Published Fashion-MNIST test accuracies, copied from :data:`OUTSIDE_SOURCE`."""


def outside_results(arch: str | None = None) -> tuple[PublishedResult, ...]:
    """The published results compared with our ``arch`` row (every one for ``None``)."""
    return tuple(r for r in OUTSIDE_RESULTS if arch is None or r.beside == arch)
