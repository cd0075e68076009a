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
* Differences, not only levels: beside each row, ours minus our None row of the same architecture,
  paired by seed (each seed's accuracy minus the None run's of the same seed), as the mean with its
  two-sided 95% Student-t interval over the paired seeds (:func:`t_interval`; undefined below 2 pairs),
  and the poster's difference to its None row. The sign agrees when both differences have the same
  sign (a poster difference of 0 has none and is not counted); the size agrees when the poster's
  difference lies inside our interval. The table's note counts both.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ninr.dynamics.phases import student_t_quantile
from ninr.report.document import Figure, PartReport
from ninr.report.figures import curves_figure, new_figure, to_png
from ninr.report.reference import (
    OUTSIDE_SOURCE,
    PublishedResult,
    Reference,
    load_poster_reference,
    outside_results,
)
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table, fmt_mean_std

METRIC = "test_acc"
SCALE = 100.0  # records hold fractions; the poster prints %
_ROUNDOFF = 1e-9  # relative slack so that a difference exactly equal to the error bar counts as within

BASELINE = "None"
"""The label of the poster's row without regularisation, against which each row's difference is taken."""

CONFIDENCE = 0.95
"""The two-sided level of every interval over seeds (Student t with n - 1 degrees of freedom)."""

RULE = (
    "Ours: mean ± sample std (ddof=1) over seeds of the final clean test accuracy in % (one seed: std 0). "
    "Diverged runs are excluded from the mean and counted. Within error bars: |ours - poster| <= "
    "sqrt(std_ours² + std_poster²). Phase: the phase classifier's verdict from the records (n/a: none ran); "
    "in phase: whether it is the phase the row is meant to train in (the config's `phase`), run by run."
)

DIFF_RULE = (
    "Ours − None: each seed's accuracy minus our None run's of the same architecture and seed, mean [95% Student-t "
    "interval over the paired seeds] in points (one pair: no interval). Poster − None: the poster's mean minus its "
    "None row's. Sign agrees: both differences have the same sign (a poster difference of 0 has none and is not "
    "counted); size agrees: the poster's difference lies inside our interval."
)


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values (seeds) and its two-sided Student-t interval ``[lo, hi]`` at :data:`CONFIDENCE`."""

    mean: float
    lo: float
    hi: float
    n: int

    def contains(self, x: float) -> bool:
        """Whether ``lo <= x <= hi`` (with a round-off slack of 1e-9 relative, as :func:`within_error_bars`)."""
        slack = _ROUNDOFF * max(1.0, abs(x))
        return self.lo - slack <= x <= self.hi + slack

    def text(self, digits: int = 1) -> str:
        """``"+1.2 [-0.4, +2.8]"``."""
        return f"{self.mean:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"


@functools.lru_cache(maxsize=64)
def t_quantile(dof: int) -> float:
    """The ``(1 + CONFIDENCE) / 2`` quantile of Student's t with ``dof`` degrees of freedom (12.71 for 1, 2.78
    for 4)."""
    return student_t_quantile(0.5 + CONFIDENCE / 2, dof)


def t_interval(values: Sequence[float]) -> Interval | None:
    """The mean of ``values`` with its :data:`CONFIDENCE` Student-t interval ``mean ± t s / sqrt(n)`` (``s``: the
    sample std, ddof=1); ``None`` for fewer than two values, where the interval is undefined."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    half = t_quantile(n - 1) * sample_std(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired_differences(
    values: Sequence[tuple[int, float]], base: Sequence[tuple[int, float]]
) -> tuple[float, ...] | None:
    """``value - base`` for every seed in both (ascending seed), finite values only; ``None`` when a seed appears
    twice on one side (the pairs are then not defined by the seed)."""
    a, b = dict(values), dict(base)
    if len(a) != len(values) or len(b) != len(base):
        return None
    return tuple(a[s] - b[s] for s in sorted(a.keys() & b.keys()) if math.isfinite(a[s]) and math.isfinite(b[s]))


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
    methods: str | None = None  # the records' ``methods`` field ("none", "in-ninr", ...), when they carry one
    seed_values: tuple[tuple[int, float], ...] = ()  # (seed, accuracy) of each run that did not diverge
    vs_none: tuple[float, ...] | None = None  # ours minus our None row, per paired seed (None: baseline or no pair)
    poster_vs_none: float | None = None  # the poster's mean minus its None row's

    @property
    def is_baseline(self) -> bool:
        """Whether this is the row the differences are taken against (:data:`BASELINE`)."""
        return self.method == BASELINE

    @property
    def vs_none_mean(self) -> float | None:
        """The mean paired difference to our None row (``None``: no pair)."""
        return sum(self.vs_none) / len(self.vs_none) if self.vs_none else None

    @property
    def vs_none_interval(self) -> Interval | None:
        """Its 95% Student-t interval (``None`` below two pairs)."""
        return t_interval(self.vs_none) if self.vs_none else None

    @property
    def sign_agrees(self) -> bool | None:
        """Whether our and the poster's differences to None have one sign (``None``: either is missing, or the
        poster's is 0)."""
        ours = self.vs_none_mean
        if ours is None or self.poster_vs_none is None or self.poster_vs_none == 0:
            return None
        return (ours > 0) == (self.poster_vs_none > 0) and ours != 0

    @property
    def size_agrees(self) -> bool | None:
        """Whether the poster's difference to None lies inside our interval (``None``: no interval or no poster)."""
        interval = self.vs_none_interval
        if interval is None or self.poster_vs_none is None:
            return None
        return interval.contains(self.poster_vs_none)

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
        kept = [r for r in finals if not _diverged(r, r.get(metric))]
        values = [float(r[metric]) * scale for r in kept]
        n_div = len(finals) - len(values)
        mean = sum(values) / len(values) if values else None
        std = sample_std(values) if values else None
        phases = [r.get("phase") for r in finals]
        expected = next((str(r["expected_phase"]) for r in finals if r.get("expected_phase")), None)
        n_in = sum(p == expected for p in phases) if expected else 0
        methods = next((str(r["methods"]) for r in finals if r.get("methods") is not None), None)
        seeds = tuple((int(r["seed"]), v) for r, v in zip(kept, values, strict=True) if isinstance(r.get("seed"), int))
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
                methods=methods,
                seed_values=seeds,
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
    """Our rows with the reference values of the same (arch, method label) filled in, and each row's difference to
    the None row of its architecture: ours paired by seed, and the poster's (:func:`with_differences`)."""
    reference = reference if reference is not None else load_poster_reference()
    rows = []
    for row in summarize(records, metric=metric, scale=scale):
        ref = reference.get(row.arch, row.method)
        rows.append(row if ref is None else replace(row, poster_mean=ref.mean, poster_std=ref.std))
    return with_differences(rows, reference)


def with_differences(rows: Sequence[ComparisonRow], reference: Reference) -> list[ComparisonRow]:
    """``rows`` with ``vs_none`` (ours minus the :data:`BASELINE` row of the same architecture, paired by seed) and
    ``poster_vs_none`` (the reference's row minus its baseline row) filled in; the baseline rows keep ``None``."""
    base = {r.arch: r for r in reversed(rows) if r.is_baseline}  # the first baseline row of each architecture
    out = []
    for row in rows:
        if row.is_baseline:
            out.append(row)
            continue
        ours = paired_differences(row.seed_values, base[row.arch].seed_values) if row.arch in base else None
        poster_base = reference.get(row.arch, BASELINE)
        poster = None
        if poster_base is not None and row.poster_mean is not None:
            poster = row.poster_mean - poster_base.mean
        out.append(replace(row, vs_none=ours, poster_vs_none=poster))
    return out


def agreement_counts(rows: Sequence[ComparisonRow]) -> dict[str, int]:
    """How many rows' differences to None agree with the poster's in sign and in size, and out of how many."""
    signs = [r.sign_agrees for r in rows if r.sign_agrees is not None]
    sizes = [r.size_agrees for r in rows if r.size_agrees is not None]
    return {"sign": sum(signs), "sign_of": len(signs), "size": sum(sizes), "size_of": len(sizes)}


def agreement_note(rows: Sequence[ComparisonRow]) -> str:
    """The counts of :func:`agreement_counts` as a sentence."""
    c = agreement_counts(rows)
    return (
        f"Differences to None: the sign agrees with the poster's in {c['sign']} of {c['sign_of']} rows, the size "
        f"(the poster's difference inside our 95% interval) in {c['size']} of {c['size_of']}."
    )


def _vs_none_text(row: ComparisonRow) -> str:
    if row.is_baseline:
        return "baseline"
    interval = row.vs_none_interval
    if interval is not None:
        return interval.text()
    mean = row.vs_none_mean
    return "n/a" if mean is None else f"{mean:+.1f} (1 seed: no interval)"


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
        "ours − None (95% CI)",
        "poster − None",
        "sign agrees",
        "size agrees",
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
                _vs_none_text(r),
                "n/a" if r.poster_vs_none is None else f"{r.poster_vs_none:+.1f}",
                _yes_no(r.sign_agrees),
                _yes_no(r.size_agrees),
            )
        )
        raw = {k: v for k, v in asdict(r).items() if k not in ("seed_values", "vs_none")}
        interval = r.vs_none_interval
        data.append(
            {
                **raw,
                "in_phase": _yes_no(r.in_phase),
                "diff": r.diff,
                "combined_error": r.combined_error,
                "within_error_bars": _yes_no(r.within),
                "vs_none_pairs": len(r.vs_none or ()),
                "vs_none_mean": r.vs_none_mean,
                "vs_none_lo": None if interval is None else interval.lo,
                "vs_none_hi": None if interval is None else interval.hi,
                "sign_agrees": _yes_no(r.sign_agrees),
                "size_agrees": _yes_no(r.size_agrees),
            }
        )
    source = ""
    if reference is not None and reference.source:
        source = f" Reference ({reference.name}): " + " ".join(reference.source.splitlines()[:2])
    note = f"{RULE} {DIFF_RULE} {agreement_note(rows)}{source}"
    return Table("comparison", "Clean test accuracy: ours vs the poster", headers, tuple(cells), tuple(data), note)


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


OUTSIDE_RULE = (
    "Our None row: mean ± sample std over seeds, and its 95% Student-t interval. It lands inside the published "
    "range of its architecture (the results marked with it: networks of that size) when its mean lies between the "
    "lowest and the highest of them; otherwise the sentence says how far below or above, and whether its interval "
    "reaches the range."
)


def outside_sentence(row: ComparisonRow | None, arch: str, results: Sequence[PublishedResult]) -> str:
    """Whether our ``arch`` None row lands where ``results`` (published, the same size of network) say it should."""
    if not results:
        return f"{arch}: no published result of that size to compare with."
    lo, hi = (SCALE * min(r.accuracy for r in results), SCALE * max(r.accuracy for r in results))
    span = f"{lo:.1f} to {hi:.1f} % ({len(results)} published results)"
    if row is None or row.mean is None:
        return f"{arch} None: no finished run, so nothing to set beside the published range {span}."
    interval = t_interval([v for _, v in row.seed_values])
    ours = f"{row.mean:.1f} %"
    if interval is not None:
        ours += f" (95% interval {interval.lo:.1f} to {interval.hi:.1f}, {interval.n} seeds)"
    else:
        ours += f" ({len(row.seed_values)} seed(s): no interval)"
    if lo <= row.mean <= hi:
        return f"{arch} None: {ours} lies inside the published range for networks of that size, {span}."
    side, gap = ("below", lo - row.mean) if row.mean < lo else ("above", row.mean - hi)
    reach = ""
    if interval is not None:
        reaches = interval.hi >= lo if side == "below" else interval.lo <= hi
        reach = "; its interval reaches the range" if reaches else "; its interval does not reach the range"
    where = f"lies {gap:.1f} points {side} the published range for networks of that size"
    return f"{arch} None: {ours} {where}, {span}{reach}."


def _published_percent(accuracy: float) -> str:
    """A published fraction in %, to the precision it was published with (0.871 -> 87.1, 0.8833 -> 88.33)."""
    decimals = len(repr(accuracy).partition(".")[2])
    return f"{SCALE * accuracy:.{max(1, decimals - 2)}f}"


def outside_table(rows: Sequence[ComparisonRow]) -> Table:
    """Published Fashion-MNIST results that no one here produced, beside our None rows, with a sentence per
    architecture on whether our None row lands where they say (:func:`outside_sentence`)."""
    headers = ("model", "test accuracy (%)", "compared with our", "source")
    cells: list[tuple[str, ...]] = []
    data: list[dict[str, Any]] = []
    ours = {r.arch: r for r in reversed(rows) if r.is_baseline}
    published = [r.beside for r in outside_results() if r.beside is not None]
    archs = list(dict.fromkeys([*(r.arch for r in rows if r.is_baseline), *published]))
    for arch in archs:
        row = ours.get(arch)
        if row is not None:
            n = len(row.seed_values)
            cells.append((f"ours: {arch} None", f"{fmt_mean_std(row.mean, row.std)} ({n} seeds)", arch, "this study"))
            data.append({"model": f"ours: {arch} None", "accuracy": row.mean, "std": row.std, "seeds": n,
                         "beside": arch, "source": "this study"})  # fmt: skip
    for r in outside_results():
        cells.append((r.model, _published_percent(r.accuracy), r.beside or "context", r.cite))
        data.append({"model": r.model, "accuracy": SCALE * r.accuracy, "std": None, "seeds": None,
                     "beside": r.beside or "", "source": r.source})  # fmt: skip
    sources = "; ".join(dict.fromkeys(f"{r.cite}: {r.source}" for r in outside_results()))
    sentences = " ".join(outside_sentence(ours.get(a), a, outside_results(a)) for a in archs)
    note = (
        f"{sentences} {OUTSIDE_RULE} Sources: {sources}. Copied from {OUTSIDE_SOURCE}; numbers we compare against, "
        "not ours."
    )
    return Table(
        "outside_reference",
        "Published Fashion-MNIST results (not produced here) beside our None rows",
        headers,
        tuple(cells),
        tuple(data),
        note,
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
    report.tables.append(outside_table(rows))
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
