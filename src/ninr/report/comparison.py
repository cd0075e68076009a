"""The comparison table: our clean accuracy per (architecture, method row) beside the poster's.

Rules (also printed under the table):

* Ours is the mean and sample standard deviation (ddof=1) over seeds of the final test accuracy,
  in %; with a single seed the std is 0.
* Diverged runs (status ``diverged``, or a non-finite accuracy) are excluded from the mean and
  counted in their own column, never dropped silently.
* "within error bars" is ``|ours - poster| <= sqrt(std_ours^2 + std_poster^2)``: the difference is
  no larger than the combined (quadrature) error bar. ``n/a`` when either side is missing.
* The phase column is the phase classifier's verdict from the records (``phase`` field of each
  run's final record; counts when seeds disagree), ``n/a`` when no classifier ran.
* "in phase" compares that verdict with the phase the row is meant to train in (the variant's
  ``phase``, carried by each record as ``expected_phase``): ``yes`` when every run's verdict is it,
  ``no`` when none is, ``k of n`` in between, ``n/a`` for rows with no intended phase.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ninr.report.document import Figure, PartReport
from ninr.report.figures import curves_figure, new_figure, to_png
from ninr.report.reference import Reference, load_poster_reference
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table, fmt_mean_std

METRIC = "test_acc"
SCALE = 100.0  # records hold fractions; the poster prints %
_ROUNDOFF = 1e-9  # relative slack so that a difference exactly equal to the error bar counts as within

RULE = (
    "Ours: mean ± sample std (ddof=1) over seeds of the final clean test accuracy in % (one seed: std 0). "
    "Diverged runs are excluded from the mean and counted. Within error bars: |ours - poster| <= "
    "sqrt(std_ours² + std_poster²). Phase: the phase classifier's verdict from the records (n/a: none ran); "
    "in phase: whether it is the phase the row is meant to train in (the config's `phase`), run by run."
)


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation with ddof=1; 0 for fewer than two values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def within_error_bars(mean: float, std: float, ref_mean: float, ref_std: float) -> bool:
    """Whether ``|mean - ref_mean| <= sqrt(std**2 + ref_std**2)`` (combined error bars)."""
    bar = math.hypot(std, ref_std)
    return abs(mean - ref_mean) <= bar + _ROUNDOFF * max(1.0, abs(ref_mean))


@dataclass(frozen=True)
class ComparisonRow:
    """One row: our summary over seeds and the reference value of the same (arch, method)."""

    arch: str
    method: str
    phase: str
    n_runs: int
    n_diverged: int
    mean: float | None
    std: float | None
    poster_mean: float | None = None
    poster_std: float | None = None
    expected_phase: str | None = None  # the phase the row is meant to train in
    n_in_phase: int = 0  # runs whose verdict is ``expected_phase``
    n_judged: int = 0  # runs with a phase verdict (the ``phase`` run hook ran)

    @property
    def diff(self) -> float | None:
        """Ours minus the poster's mean."""
        return None if self.mean is None or self.poster_mean is None else self.mean - self.poster_mean

    @property
    def combined_error(self) -> float | None:
        """``sqrt(std_ours^2 + std_poster^2)``."""
        return None if self.mean is None or self.poster_std is None else math.hypot(self.std or 0.0, self.poster_std)

    @property
    def within(self) -> bool | None:
        """Whether ours falls within the combined error bars (``None``: nothing to compare)."""
        if self.mean is None or self.poster_mean is None or self.poster_std is None:
            return None
        return within_error_bars(self.mean, self.std or 0.0, self.poster_mean, self.poster_std)

    @property
    def in_phase(self) -> bool | None:
        """Whether every run is in the intended phase (``None``: the row names none, or no run has a verdict)."""
        if self.expected_phase is None or self.n_judged == 0:
            return None
        return self.n_in_phase == self.n_runs

    def in_phase_text(self) -> str:
        """``yes``, ``no (meant: decay)``, ``1 of 2 (meant: decay)``, ``n/a`` or ``n/a (no verdict)``."""
        if self.expected_phase is None:
            return "n/a"
        if self.n_judged == 0:
            return "n/a (no verdict: the phase hook did not run)"
        if self.in_phase:
            return "yes"
        share = "no" if self.n_in_phase == 0 else f"{self.n_in_phase} of {self.n_runs}"
        return f"{share} (meant: {self.expected_phase})"


def _phase_text(phases: Sequence[str | None]) -> str:
    """One verdict if every run agrees, else counts (runs with no verdict count as n/a)."""
    counts = Counter(p or "n/a" for p in phases)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{p} {n}" for p, n in counts.most_common())


def _diverged(rec: Mapping[str, Any], value: Any) -> bool:
    return rec.get("run_status") == "diverged" or not isinstance(value, int | float) or not math.isfinite(value)


def summarize(
    records: Sequence[Mapping[str, Any]], *, metric: str = METRIC, scale: float = SCALE
) -> list[ComparisonRow]:
    """Our rows from records: one per (arch, label), in order of first appearance, final records only."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        if rec.get("final"):
            groups.setdefault((str(rec.get("arch")), str(rec.get("label"))), []).append(rec)
    rows = []
    for (arch, label), finals in groups.items():
        values = [float(r[metric]) * scale for r in finals if not _diverged(r, r.get(metric))]
        n_div = len(finals) - len(values)
        mean = sum(values) / len(values) if values else None
        std = sample_std(values) if values else None
        phases = [r.get("phase") for r in finals]
        expected = next((str(r["expected_phase"]) for r in finals if r.get("expected_phase")), None)
        n_in = sum(p == expected for p in phases) if expected else 0
        rows.append(
            ComparisonRow(
                arch,
                label,
                _phase_text(phases),
                len(finals),
                n_div,
                mean,
                std,
                expected_phase=expected,
                n_in_phase=n_in,
                n_judged=sum(p is not None for p in phases),
            )
        )
    return rows


def compare(
    records: Sequence[Mapping[str, Any]],
    reference: Reference | None = None,
    *,
    metric: str = METRIC,
    scale: float = SCALE,
) -> list[ComparisonRow]:
    """Our rows with the reference values of the same (arch, method label) filled in."""
    reference = reference if reference is not None else load_poster_reference()
    rows = []
    for row in summarize(records, metric=metric, scale=scale):
        ref = reference.get(row.arch, row.method)
        rows.append(
            row if ref is None else ComparisonRow(**{**asdict(row), "poster_mean": ref.mean, "poster_std": ref.std})
        )
    return rows


def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def comparison_table(rows: Sequence[ComparisonRow], reference: Reference | None = None) -> Table:
    """The display table of ``rows`` (CSV keeps the unrounded numbers)."""
    headers = (
        "arch",
        "method",
        "phase",
        "in phase",
        "runs",
        "diverged",
        "ours (%)",
        "poster (%)",
        "difference",
        "within error bars",
    )
    cells = []
    data = []
    for r in rows:
        diff = "n/a" if r.diff is None else f"{r.diff:+.1f}"
        ours = fmt_mean_std(r.mean, r.std)
        poster = fmt_mean_std(r.poster_mean, r.poster_std)
        cells.append(
            (
                r.arch,
                r.method,
                r.phase,
                r.in_phase_text(),
                str(r.n_runs),
                str(r.n_diverged),
                ours,
                poster,
                diff,
                _yes_no(r.within),
            )
        )
        data.append(
            {
                **asdict(r),
                "in_phase": _yes_no(r.in_phase),
                "diff": r.diff,
                "combined_error": r.combined_error,
                "within_error_bars": _yes_no(r.within),
            }
        )
    source = ""
    if reference is not None and reference.source:
        source = f" Reference ({reference.name}): " + " ".join(reference.source.splitlines()[:2])
    return Table(
        "comparison", "Clean test accuracy: ours vs the poster", headers, tuple(cells), tuple(data), RULE + source
    )


def headline(rows: Sequence[ComparisonRow]) -> list[str]:
    """The two counts a reader wants first: cells within the poster's error bars, rows in their phase."""
    compared = [r for r in rows if r.within is not None]
    out = [f"{sum(bool(r.within) for r in compared)} of {len(compared)} cells within the poster's error bars."]
    meant = [r for r in rows if r.expected_phase is not None and r.n_judged > 0]
    if meant:
        off = [f"{r.arch} {r.method} ({r.phase})" for r in meant if not r.in_phase]
        line = f"{len(meant) - len(off)} of {len(meant)} rows in their intended phase in every run"
        out.append(line + (f"; not: {', '.join(off)}." if off else "."))
    return out


def comparison_figure(rows: Sequence[ComparisonRow]) -> Figure:
    """Ours vs the poster per method row (mean ± std), one panel per architecture."""
    archs = list(dict.fromkeys(r.arch for r in rows)) or ["(no runs)"]
    n_rows = max([sum(1 for r in rows if r.arch == a) for a in archs] + [1])
    fig = new_figure(5.0 * len(archs), 0.4 * n_rows + 1.6)
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=True):
        mine = [r for r in rows if r.arch == arch]
        ys = list(range(len(mine)))
        for offset, color, label, get in (
            (-0.15, "tab:blue", "ours", lambda r: (r.mean, r.std)),
            (0.15, "tab:gray", "poster", lambda r: (r.poster_mean, r.poster_std)),
        ):
            pts = [(y + offset, *get(r)) for y, r in zip(ys, mine, strict=True) if get(r)[0] is not None]
            if pts:
                xs, errs = [p[1] for p in pts], [p[2] or 0.0 for p in pts]
                ax.errorbar(xs, [p[0] for p in pts], xerr=errs, fmt="o", color=color, capsize=3, label=label)
        ax.set_yticks(ys, [r.method for r in mine])
        ax.set_ylim(n_rows - 0.5, -0.5)  # first row on top; panels share the row spacing
        ax.set_xlabel("clean test accuracy (%)")
        ax.set_title(arch)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    return Figure(
        "comparison", "Clean test accuracy, mean ± std over seeds: ours (blue) vs the poster (grey).", to_png(fig)
    )


def table_part_report(records: Sequence[Mapping[str, Any]], study: Mapping[str, Any]) -> PartReport:
    """The ``table`` part's section: the comparison table, the reference table and two figures."""
    reference = load_poster_reference()
    rows = compare(records, reference)
    report = PartReport("table", str(study.get("title", "Clean accuracy compared with the poster")))
    report.tables.append(comparison_table(rows, reference))
    ref_cells = tuple((v.arch, v.method, fmt_mean_std(v.mean, v.std)) for v in reference.values)
    ref_data = tuple(asdict(v) for v in reference.values)
    report.tables.append(
        Table(
            "poster_reference",
            "The poster's published numbers",
            ("arch", "method", "clean accuracy (%)"),
            ref_cells,
            ref_data,
            reference.source,
        )
    )
    report.figures.append(comparison_figure(rows))
    report.figures.append(curves_figure(records))
    report.notes.extend(headline(rows))
    n_div = sum(r.n_diverged for r in rows)
    if n_div:
        report.notes.append(f"{n_div} diverged run(s) excluded from the means (see the 'diverged' column).")
    return report


SECTIONS.add(
    "table", table_part_report, doc="The comparison table beside the poster's numbers, its headline and figures."
)
