"""The ``hep`` part's section: pure functions of the records (one per method, seed and test set).

* candidates per class in each test set (``n_signal``, ``n_background``);
* :func:`rejection_table`: mean ± sample std over seeds of the AUC and of the background rejection 1/eps_B at each
  signal efficiency (working point), every test set side by side (:func:`summary_rows`);
* :func:`interval_table`: per method and test set, 1/eps_B at each working point as the mean over seeds, the seeds'
  spread (sample std, min-max) and the 95% stratified bootstrap percentile interval of the mean over test events,
  formed replicate by replicate from the runs' stored replicates (every run of a test set resamples the same
  events: :func:`ninr.hep.study.bootstrap_generator`);
* :func:`paired_table`: each method minus the reference method (``none``) per seed, with the 95% Student-t
  interval over seeds (:func:`ninr.report.comparison.t_interval`, the claims sheet's rule), on every test set;
* :func:`ratio_table`: the ratio 1/eps_B on a shifted test set over 1/eps_B on "simulation", per run (1 = the shift
  costs nothing), its mean ± std over seeds, and each method's ratio minus the reference's, paired per seed;
* :func:`helping`: the (method, working point) pairs whose paired difference on "data" has its interval above zero,
  the tests the claims sheet's detector row counts.

The figure draws the mean ROC (rejection against signal efficiency) per method, one panel per test set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ninr.report.comparison import Interval, t_interval
from ninr.report.document import Figure, PartReport
from ninr.report.figures import new_figure, to_png
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table
from ninr.studies.records import final_records

Rec = Mapping[str, Any]

TEST_SETS = ("simulation", "data")
"""The test sets every study has, first in every table; further test sets follow in the records' order."""

SIMULATION = "simulation"
DATA = "data"
REFERENCE = "none"
"""The ``method_name`` of the reference row the paired differences subtract (no regularisation)."""
ROC_COLUMNS = 4
"""Panels per row of the ROC figure (one panel per test set)."""
CONFIDENCE = 0.95
"""Level of the bootstrap percentile intervals (as :data:`ninr.hep.metrics.CONFIDENCE`, the records' own)."""


def sets_of(records: Sequence[Rec]) -> list[str]:
    """The test sets of ``records``: "simulation" and "data" first (where present), then the others in order of
    first appearance."""
    seen = list(dict.fromkeys(str(r["test_set"]) for r in records if "test_set" in r))
    return [ts for ts in TEST_SETS if ts in seen] + [ts for ts in seen if ts not in TEST_SETS]


def _by_method(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault(str(r["method"]), []).append(r)
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    if np.isinf(arr).any():
        return math.inf, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _cell(values: Sequence[float]) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "n/a"
    if math.isinf(mean):
        return "inf"
    return f"{mean:.1f} ± {std:.1f}" if std > 0 else f"{mean:.1f}"


def summary_rows(records: Sequence[dict[str, Any]], efficiencies: Sequence[float]) -> list[dict[str, Any]]:
    """One row per method: mean and std over seeds of AUC and rejection, per test set."""
    rows = []
    for method, recs in _by_method(records).items():
        row: dict[str, Any] = {"method": method, "seeds": len({r["seed"] for r in recs})}
        for ts in sets_of(records) or TEST_SETS:
            sub = [r for r in recs if r["test_set"] == ts]
            row[f"{ts}/auc"] = _mean_std([r["auc"] for r in sub])
            for e in efficiencies:
                key = f"rejection@{round(e * 100)}"
                row[f"{ts}/{key}"] = _mean_std([r.get(key, math.nan) for r in sub])
        rows.append(row)
    return rows


def draw_rejection(axes: Any, records: Sequence[Mapping[str, Any]]) -> None:
    """Mean rejection 1/eps_B against eps_S over seeds, one line per method, one axis per test set."""
    axes = list(np.atleast_1d(axes))
    for ax, ts in zip(axes, sets_of(records), strict=True):
        for method, recs in _by_method(records).items():
            curves = [r for r in recs if r["test_set"] == ts and r.get("roc_bkg_eff")]
            if not curves:
                continue
            eff_s = np.asarray(curves[0]["roc_signal_eff"], dtype=np.float64)
            eff_b = np.mean([np.asarray(r["roc_bkg_eff"], dtype=np.float64) for r in curves], axis=0)
            ax.plot(eff_s, np.where(eff_b > 0, 1.0 / np.maximum(eff_b, 1e-12), np.nan), label=method)
        ax.set_yscale("log")
        ax.set_xlabel("signal efficiency ε_S")
        ax.set_title(f'test on "{ts}"')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("background rejection 1/ε_B")
    axes[-1].legend(fontsize=8)


def _fmt(pair: tuple[float, float], digits: int) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "n/a"
    if math.isinf(mean):
        return "inf"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std > 0 else f"{mean:.{digits}f}"


def efficiencies(records: Sequence[Rec]) -> list[float]:
    """The signal efficiencies the records were evaluated at (first record's list)."""
    return [float(e) for e in records[0].get("efficiencies", [0.5, 0.7, 0.9])] if records else []


def rejection_table(records: Sequence[Rec]) -> Table:
    """One row per method: AUC and 1/eps_B at each signal efficiency on "simulation" and "data"."""
    effs = efficiencies(records)
    names = sets_of(records)
    headers = ["method", "seeds"]
    for ts in names:
        headers += [f"{ts} AUC"] + [f"{ts} 1/εB@{round(e * 100)}%" for e in effs]
    rows = summary_rows([dict(r) for r in records], effs)
    cells, data = [], []
    for row in rows:
        line = [str(row["method"]), str(row["seeds"])]
        flat: dict[str, Any] = {"method": row["method"], "seeds": row["seeds"]}
        for ts in names:
            line.append(_fmt(row[f"{ts}/auc"], 3))
            flat[f"{ts}_auc_mean"], flat[f"{ts}_auc_std"] = row[f"{ts}/auc"]
            for e in effs:
                key = f"rejection@{round(e * 100)}"
                line.append(_fmt(row[f"{ts}/{key}"], 1))
                flat[f"{ts}_{key}_mean"], flat[f"{ts}_{key}_std"] = row[f"{ts}/{key}"]
        cells.append(tuple(line))
        data.append(flat)
    note = (
        'Trained on "simulation"; tested on a held-out "simulation" set and on the same events through the shifted '
        '"data" detector. Background rejection 1/eps_B at fixed signal efficiency, mean ± std over seeds.'
    )
    return Table("hep_rejection", "Background rejection per method", tuple(headers), tuple(cells), tuple(data), note)


def roc_figure(records: Sequence[Rec]) -> Figure:
    """Mean ROC over seeds (rejection 1/eps_B against eps_S) per method, one panel per test set."""
    names = sets_of(records)
    cols = min(len(names), ROC_COLUMNS)
    rows = math.ceil(len(names) / cols)
    fig = new_figure(5.0 * cols, 4.0 * rows)
    axes = list(np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()))
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    draw_rejection(axes[: len(names)], records)
    caption = (
        "Background rejection against signal efficiency, 1 / (eps_B averaged over seeds), one panel per test set: "
        + ", ".join(f'"{ts}"' for ts in names)
    )
    return Figure("hep_roc", caption, to_png(fig))


def points(records: Sequence[Rec]) -> list[int]:
    """The working points of ``records`` in percent of signal efficiency (50, 70, 90)."""
    return [round(e * 100) for e in efficiencies(records)]


def methods_of(records: Sequence[Rec]) -> list[str]:
    """Method labels in order of first appearance (the study file's order)."""
    return list(dict.fromkeys(str(r["method"]) for r in records))


def method_name(rec: Rec) -> str:
    """The registered method a record's run trained with: ``method_name`` (the hep part's records), else
    ``methods`` (every part's base fields), else the label."""
    return str(rec.get("method_name") or rec.get("methods") or rec.get("method"))


def reference_label(records: Sequence[Rec]) -> str | None:
    """The label of the first method whose registered name (:func:`method_name`) is :data:`REFERENCE`."""
    return next((str(r["method"]) for r in records if method_name(r) == REFERENCE), None)


def is_ninr(records: Sequence[Rec], label: str) -> bool:
    """Whether the method labelled ``label`` is a NINR method (``in-ninr``, ``full-ninr``, any distribution)."""
    return any(method_name(r).endswith("-ninr") for r in records if r["method"] == label)


def by_seed(records: Sequence[Rec], method: str, test_set: str, key: str) -> dict[int, float] | None:
    """``key`` of each seed's run of ``method`` on ``test_set``; ``None`` when a seed has several runs (pairs by
    seed are then undefined)."""
    out: dict[int, float] = {}
    for r in records:
        if r["method"] == method and r.get("test_set") == test_set and r.get(key) is not None:
            seed = int(r["seed"])
            if seed in out:
                return None
            out[seed] = float(r[key])
    return out


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _quantiles(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of ``values`` (linear interpolation, as :func:`ninr.hep.metrics.percentile_interval`);
    an infinite rejection among the replicates makes the bound it touches infinite."""
    with np.errstate(invalid="ignore"):  # inf - inf between two infinite order statistics: NaN, read as inf
        lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return (math.inf if math.isnan(lo) else float(lo)), (math.inf if math.isnan(hi) else float(hi))


def seed_mean_interval(records: Sequence[Rec], method: str, test_set: str, point: int) -> tuple[float, float] | None:
    """The bootstrap percentile interval over test events of the mean over seeds of 1/eps_B at ``point``.

    Replicate ``b`` of the mean is the mean over the runs of their replicate ``b`` (each 1/eps_B of its stored
    ``bootstrap_bkg_eff@P``): the runs of a test set resample the same events, so the mean's replicates carry the
    test set's uncertainty once, not once per seed. ``None`` when a run lacks replicates or the runs disagree on
    their number or on the resampling seed."""
    runs = [r for r in records if r["method"] == method and r.get("test_set") == test_set]
    reps = [r.get(f"bootstrap_bkg_eff@{point}") for r in runs]
    seeds = {str((r.get("bootstrap") or {}).get("seed")) for r in runs}
    if not runs or any(not x for x in reps) or len({len(x) for x in reps if x}) != 1 or len(seeds) != 1:
        return None
    eps_b = np.asarray(reps, dtype=np.float64)
    with np.errstate(divide="ignore"):
        rejection = np.where(eps_b > 0, 1.0 / np.where(eps_b > 0, eps_b, 1.0), np.inf)
    return _quantiles(rejection.mean(axis=0))


def _spread(values: Sequence[float]) -> tuple[float, float, float, float]:
    """Mean, sample std, min and max of the finite values (NaN when none; std 0 for one)."""
    v = _finite(values)
    if not v:
        return math.nan, math.nan, math.nan, math.nan
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return float(np.mean(v)), std, min(v), max(v)


def _num(x: float, digits: int = 1) -> str:
    return "inf" if math.isinf(x) else ("n/a" if math.isnan(x) else f"{x:.{digits}f}")


def candidates_table(records: Sequence[Rec]) -> Table:
    """Candidates per class in each test set (from the records; a range where runs disagree)."""
    cells, data = [], []
    for ts in sets_of(records):
        recs = [r for r in records if r.get("test_set") == ts]
        sig = sorted({int(r["n_signal"]) for r in recs if r.get("n_signal") is not None})
        bkg = sorted({int(r.get("n_background", int(r["n_test"]) - int(r["n_signal"]))) for r in recs if "n_test" in r})
        text = [str(v[0]) if len(v) == 1 else (f"{v[0]}-{v[-1]}" if v else "n/a") for v in (sig, bkg)]
        cells.append((ts, *text))
        data.append({"test_set": ts, "signal": sig, "background": bkg})
    note = "Signal: single photons (label 1); background: mesons decayed to photon pairs, or non-prompt candidates."
    return Table("hep_candidates", "Candidates per class in each test set", ("test set", "signal", "background"),
                 tuple(cells), tuple(data), note)  # fmt: skip


def interval_table(records: Sequence[Rec]) -> Table:
    """Per method and test set: 1/eps_B at each working point, mean over seeds ± sample std, the seeds' min-max and
    the bootstrap interval of the mean (:func:`seed_mean_interval`)."""
    pts = points(records)
    headers = ("method", "test set", "seeds", *[f"1/εB@{p}%" for p in pts])
    cells, data = [], []
    for method in methods_of(records):
        for ts in sets_of(records):
            runs = [r for r in records if r["method"] == method and r.get("test_set") == ts]
            if not runs:
                continue
            line = [method, ts, str(len({r["seed"] for r in runs}))]
            for p in pts:
                values = [float(r.get(f"rejection@{p}", math.nan)) for r in runs]
                mean, std, lo_s, hi_s = _spread(values)
                n_inf = sum(math.isinf(v) for v in values)
                boot = seed_mean_interval(records, method, ts, p)
                text = f"{_num(mean)} ± {_num(std)}" if len(_finite(values)) > 1 else _num(mean)
                text += f" [{_num(boot[0])}, {_num(boot[1])}]" if boot else " [n/a]"
                text += f" ({n_inf} inf)" if n_inf else ""
                line.append(text)
                data.append({"method": method, "test_set": ts, "point": p, "seeds": len(values), "mean": mean,
                             "std": std, "min": lo_s, "max": hi_s, "infinite": n_inf,
                             "boot_lo": boot[0] if boot else None, "boot_hi": boot[1] if boot else None})  # fmt: skip
            cells.append(tuple(line))
    note = (
        "Background rejection 1/eps_B at each signal efficiency: mean over seeds ± sample std over seeds (the spread "
        f"the training seed makes) [{CONFIDENCE:.0%} bootstrap interval of that mean over the test events: stratified "
        "resampling, signal and background events each drawn with replacement with their counts kept, the same "
        "resamples for every run of a test set, replicates of the mean formed replicate by replicate, percentile "
        "interval]. An infinite rejection (no background passes) is left out of the mean and std and counted; the "
        "bootstrap keeps it (a bound that reaches an infinite replicate mean is inf)."
    )
    return Table("hep_intervals", "Background rejection: seed spread and bootstrap intervals", headers, tuple(cells),
                 tuple(data), note)  # fmt: skip


def paired(a: Mapping[int, float] | None, b: Mapping[int, float] | None) -> list[float] | None:
    """``a - b`` per seed both hold, ascending seed, finite values only (``None`` when either is undefined)."""
    if a is None or b is None:
        return None
    return [a[s] - b[s] for s in sorted(a.keys() & b.keys()) if math.isfinite(a[s]) and math.isfinite(b[s])]


def ratios(records: Sequence[Rec], method: str, test_set: str, point: int) -> dict[int, float] | None:
    """Per seed: 1/eps_B on ``test_set`` over 1/eps_B on "simulation" at ``point``, for finite rejections (1: the
    shift costs nothing; below 1: the shifted detector passes more background at the same signal efficiency)."""
    key = f"rejection@{point}"
    shifted, sim = by_seed(records, method, test_set, key), by_seed(records, method, SIMULATION, key)
    if shifted is None or sim is None:
        return None
    return {
        s: shifted[s] / sim[s]
        for s in sorted(shifted.keys() & sim.keys())
        if math.isfinite(shifted[s]) and math.isfinite(sim[s]) and sim[s] > 0
    }


@dataclass(frozen=True)
class PairedTest:
    """One paired comparison: a method minus the reference, of a quantity at a working point on a test set."""

    method: str
    test_set: str
    point: int
    quantity: str  # "rejection" or "ratio"
    diffs: tuple[float, ...] | None
    interval: Interval | None

    @property
    def above_zero(self) -> bool | None:
        """Whether the interval lies above zero (``None``: undefined, below two pairs)."""
        return None if self.interval is None else self.interval.lo > 0

    def text(self) -> str:
        if self.diffs is None:
            return "undefined: several runs of a method share a seed"
        if self.interval is None:
            return f"undefined: {len(self.diffs)} paired seed(s), an interval needs 2"
        return self.interval.text(2 if self.quantity == "ratio" else 1)


def paired_tests(records: Sequence[Rec], quantity: str = "rejection") -> list[PairedTest]:
    """Every method but the reference minus the reference, per seed, at every working point on every test set
    (``"rejection"``: 1/eps_B; ``"ratio"``: the shifted/simulation ratio of :func:`ratios`, shifted sets only),
    each with its Student-t interval over seeds."""
    ref = reference_label(records)
    if ref is None:
        return []
    sets = sets_of(records)
    if quantity == "ratio":
        sets = [ts for ts in sets if ts != SIMULATION]
    out = []
    for method in methods_of(records):
        if method == ref:
            continue
        for ts in sets:
            for p in points(records):
                if quantity == "ratio":
                    diffs = paired(ratios(records, method, ts, p), ratios(records, ref, ts, p))
                else:
                    key = f"rejection@{p}"
                    diffs = paired(by_seed(records, method, ts, key), by_seed(records, ref, ts, key))
                interval = t_interval(diffs) if diffs is not None else None
                out.append(PairedTest(method, ts, p, quantity, None if diffs is None else tuple(diffs), interval))
    return out


def helping(records: Sequence[Rec]) -> list[PairedTest]:
    """The NINR methods' paired tests of 1/eps_B on "data" whose interval lies above zero: the working points where
    NINR helps on "data" by the claims sheet's detector rule."""
    return [t for t in paired_tests(records) if t.test_set == DATA and t.above_zero and is_ninr(records, t.method)]


def _paired_table(records: Sequence[Rec], quantity: str) -> Table:
    tests = paired_tests(records, quantity)
    ref = reference_label(records)
    pts = points(records)
    rows: dict[tuple[str, str], dict[int, PairedTest]] = {}
    for t in tests:
        rows.setdefault((t.method, t.test_set), {})[t.point] = t
    cells = tuple((method, ts, *[_paired_cell(row.get(p)) for p in pts]) for (method, ts), row in rows.items())
    data = tuple(
        {"method": t.method, "test_set": t.test_set, "point": t.point, "quantity": quantity,
         "n": 0 if t.diffs is None else len(t.diffs), "diffs": list(t.diffs or ()),
         "mean": t.interval.mean if t.interval else None, "lo": t.interval.lo if t.interval else None,
         "hi": t.interval.hi if t.interval else None, "above_zero": t.above_zero}
        for t in tests
    )  # fmt: skip
    what = "1/eps_B" if quantity == "rejection" else "the ratio 1/eps_B(test set) / 1/eps_B(simulation)"
    headers = ("method", "test set", *[f"ε_S = {p}%" for p in pts])
    note = (
        f"Each method minus `{ref}` ({what}), paired by seed (same data order, initialisation and test events): "
        f"mean [two-sided {CONFIDENCE:.0%} Student-t interval over seeds, n − 1 degrees of freedom] (n pairs), as the "
        "claims sheet's rules; `*` marks an interval above zero. A seed where either run's value is infinite is left "
        "out of the pairs; below two pairs the interval is undefined. No correction for multiple comparisons: with no "
        "effect, each cell lies above zero with probability 2.5%."
    )
    if quantity == "ratio":
        note += " Above zero: the method keeps more of its simulation rejection under the shift (more robust)."
        return Table("hep_ratio_paired", f"Data/simulation ratio: each method − {ref}, paired by seed", headers,
                     cells, data, note)  # fmt: skip
    return Table("hep_paired", f"Background rejection: each method − {ref}, paired by seed", headers, cells, data,
                 note)  # fmt: skip


def _paired_cell(test: PairedTest | None) -> str:
    if test is None:
        return "n/a"
    if test.diffs is None or test.interval is None:
        mean = f"{np.mean(test.diffs):+.2f} " if test.diffs else ""
        return f"{mean}(n = {0 if test.diffs is None else len(test.diffs)}, undefined)"
    return f"{test.text()} (n = {test.interval.n})" + (" *" if test.above_zero else "")


def paired_table(records: Sequence[Rec]) -> Table:
    """:func:`paired_tests` of 1/eps_B as a table."""
    return _paired_table(records, "rejection")


def ratio_table(records: Sequence[Rec]) -> Table:
    """Per method and shifted test set: the ratio of 1/eps_B to its "simulation" value at each working point, mean ±
    sample std over seeds."""
    pts = points(records)
    cells, data = [], []
    for method in methods_of(records):
        for ts in [t for t in sets_of(records) if t != SIMULATION]:
            line = [method, ts]
            for p in pts:
                r = ratios(records, method, ts, p)
                values = list((r or {}).values())
                mean, std, lo_s, hi_s = _spread(values)
                line.append(f"{_num(mean, 2)} ± {_num(std, 2)}" if len(values) > 1 else _num(mean, 2))
                data.append({"method": method, "test_set": ts, "point": p, "seeds": len(values), "mean": mean,
                             "std": std, "min": lo_s, "max": hi_s})  # fmt: skip
            cells.append(tuple(line))
    note = (
        'Per run, 1/eps_B on the shifted test set over 1/eps_B on "simulation" at the same signal efficiency '
        "(1: the shift costs nothing; 0.5: half the rejection is lost); mean ± sample std over seeds, seeds with "
        "an infinite rejection left out. Robust to the shift means a ratio near 1."
    )
    headers = ("method", "test set", *[f"ratio@{p}%" for p in pts])
    return Table("hep_ratio", "Data/simulation ratio of the background rejection", headers, tuple(cells),
                 tuple(data), note)  # fmt: skip


HELPING_RULE = (
    "NINR helps on \"data\" at a working point when a NINR method's 1/eps_B minus the `none` method's, paired by "
    "seed, has its 95% Student-t interval over seeds above zero (the claims sheet's detector row counts these tests)."
)


def helping_note(records: Sequence[Rec]) -> str:
    """Which working points show NINR helping on "data" (:data:`HELPING_RULE`)."""
    tested = [t for t in paired_tests(records) if t.test_set == DATA and is_ninr(records, t.method)]
    found = helping(records)
    if not tested:
        return HELPING_RULE + ' Not testable: the records hold no NINR and `none` runs on "data".'
    defined = sum(t.interval is not None for t in tested)
    listed = "; ".join(f"{t.method} at ε_S = {t.point}%: {t.text()}" for t in found) or "none"
    return f"{HELPING_RULE} {len(found)} of {len(tested)} tests ({defined} defined) pass: {listed}."


def hep_part_report(records: Sequence[Rec], study: Mapping[str, Any]) -> PartReport:
    """The ``hep`` part's section: candidates, the rejection tables, paired differences, data/sim ratios, the ROC."""
    report = PartReport("hep", str(study.get("title", "Prompt photons")))
    finals = [r for r in final_records(records) if "test_set" in r]
    if not finals:
        report.notes.append("No finished runs yet.")
        return report
    report.tables.append(rejection_table(finals))
    report.tables.append(candidates_table(finals))
    report.tables.append(interval_table(finals))
    if reference_label(finals) is not None:
        report.tables.append(paired_table(finals))
    if any(ts != SIMULATION for ts in sets_of(finals)) and SIMULATION in sets_of(finals):
        report.tables.append(ratio_table(finals))
        if reference_label(finals) is not None:
            report.tables.append(_paired_table(finals, "ratio"))
    report.figures.append(roc_figure(finals))
    report.notes.append(helping_note(finals))
    return report


SECTIONS.add(
    "hep",
    hep_part_report,
    doc="Background rejection per method and test set: seed spread, bootstrap intervals, paired differences with "
    "none, data/simulation ratios, and the ROC figure.",
)
