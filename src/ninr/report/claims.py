"""The claims sheet: each claim of the poster, the evidence in the records that tests it, and a verdict.

The sheet opens the report. Each row is one claim of the poster, the table or figure of the report that holds the
evidence, the number that decides it (with its 95% interval where the rule reads one), and a verdict:

* ``reproduced``: the claim's rule holds in every test it makes;
* ``partly``: it holds in some of them;
* ``not reproduced``: it holds in none (or, for a claim that asks for a property of the whole, the property fails);
* ``not testable here``: the records do not hold the evidence (the study ran without the part, a part ran without
  the runs the rule reads, or fewer than two seeds can be paired, where an interval over seeds is undefined).

The verdicts are computed from the records by the rules below (one constant and one function per claim), never
typed in, so the same records always give the same sheet; the report prints each rule beside the sheet. Common
to every rule that compares methods:

* a comparison pairs runs by seed (each seed's value minus the reference row's run of the same seed, in the same
  part and architecture); seeds share data order, initialisation streams and corruption draws, so the pairs
  remove what the seed alone decides;
* its interval is the two-sided 95% Student-t interval of the mean paired difference over seeds
  (:func:`ninr.report.comparison.t_interval`, ``n - 1`` degrees of freedom); below two pairs it is undefined, and
  so is the test;
* no correction for multiple comparisons: a claim that needs *every* test to pass is not made easier by many
  tests, but one that is satisfied by *some* test can be met by chance, with probability up to ``n x 2.5%`` over
  ``n`` tests when there is no effect. The detail table lists every test, so a reader can count.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ninr.dynamics.phases import PHASES
from ninr.report import hep as hep_report
from ninr.report.comparison import (
    BASELINE,
    CONFIDENCE,
    ComparisonRow,
    Interval,
    compare,
    headline,
    t_interval,
)
from ninr.report.document import PartReport
from ninr.report.robustness import KIND, NOISE
from ninr.report.tables import Table

Rec = Mapping[str, Any]
Records = Mapping[str, Sequence[Rec]]
"""The records of a study by part name (``{"table": [...], "phases": [...], ...}``)."""

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable here"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE)

SCALE = 100.0  # accuracies are fractions in the records; the sheet prints points (%)

NOISE_STD_MIN = 0.4
"""Gaussian noise stds at or above which the robustness claims are judged. The claim is about robustness: at small
stds every model sits near its clean accuracy, so a difference there repeats the clean-accuracy comparison. 0.4 is
the strong third of the 0.05-0.6 grid the presets evaluate, fixed with the rule."""

UNSTRUCTURED_FAMILY = "noise"
"""The corruption family counted as unstructured noise; every other family (blur, geometric, digital, weather,
occlusion) is structured."""

ATTACK_FAMILY = "attack"
"""The ``family`` of the adversarial records :func:`ninr.robustness.evaluate` writes (FGSM, PGD, ...)."""

DETECTOR_TEST_SET = "data"
"""The detector study's shifted ("real") test set."""

NINR = "ninr"
NONE = "none"


# ---------------------------------------------------------------- tests and verdicts


@dataclass(frozen=True)
class Test:
    """One comparison a rule makes: what is compared, the result as text, whether it passes (``None``: undefined),
    how far inside (positive) or outside (negative) the pass region it lies, and its interval."""

    what: str
    result: str
    passed: bool | None
    seeds: int = 0
    margin: float | None = None
    interval: Interval | None = None


@dataclass(frozen=True)
class Claim:
    """A row of the sheet: the claim, where its evidence is, the verdict, why, the rule and the tests made."""

    key: str
    claim: str
    evidence: str
    verdict: str
    why: str
    rule: str
    tests: tuple[Test, ...] = field(default_factory=tuple)


Criterion = Callable[[Interval], tuple[bool, float]]
"""An interval's pass or fail, and its margin (how far inside the pass region it lies; negative outside)."""


def above_zero(interval: Interval) -> tuple[bool, float]:
    """Passes when the whole interval lies above zero (the difference is positive at 95%)."""
    return interval.lo > 0, interval.lo


def below_zero(interval: Interval) -> tuple[bool, float]:
    """Passes when the whole interval lies below zero (the difference is negative at 95%)."""
    return interval.hi < 0, -interval.hi


def not_below_zero(interval: Interval) -> tuple[bool, float]:
    """Passes unless the whole interval lies below zero (the difference is not negative at 95%)."""
    return interval.hi >= 0, interval.hi


def contains(value: float) -> Criterion:
    """Passes when ``value`` lies inside the interval."""

    def criterion(interval: Interval) -> tuple[bool, float]:
        return interval.contains(value), min(value - interval.lo, interval.hi - value)

    return criterion


def interval_test(what: str, diffs: Sequence[float] | None, criterion: Criterion, why_undefined: str = "") -> Test:
    """The test of ``diffs`` (paired differences) by ``criterion``; undefined below two pairs (or ``diffs=None``:
    the pairs are not defined, ``why_undefined`` says why)."""
    if diffs is None:
        return Test(what, f"undefined: {why_undefined}", None)
    interval = t_interval(diffs)
    if interval is None:
        mean = f"{diffs[0]:+.1f}, " if diffs else ""
        return Test(what, f"{mean}undefined: {len(diffs)} paired seed(s), an interval needs 2", None, len(diffs))
    passed, margin = criterion(interval)
    return Test(what, interval.text(), passed, interval.n, margin, interval)


def count_verdict(tests: Sequence[Test]) -> tuple[str, str]:
    """Every test passes: ``reproduced``; some: ``partly``; none (of those defined): ``not reproduced``; no test
    defined: ``not testable here``. An undefined test is not a pass, so it rules out ``reproduced``."""
    defined = [t for t in tests if t.passed is not None]
    if not defined:
        return NOT_TESTABLE, f"none of its {len(tests)} test(s) is defined ({_first_undefined(tests)})."
    passed = sum(bool(t.passed) for t in defined)
    undefined = len(tests) - len(defined)
    text = f"{passed} of {len(tests)} tests pass" + (
        f" ({undefined} undefined: {_first_undefined(tests)})" if undefined else ""
    )
    if passed == len(tests):
        return REPRODUCED, text + "."
    return (PARTLY if passed else NOT_REPRODUCED), text + "."


def some_verdict(tests: Sequence[Test]) -> tuple[str, str]:
    """At least one test passes: ``reproduced``; defined tests and none passes: ``not reproduced``; no test
    defined: ``not testable here``."""
    defined = [t for t in tests if t.passed is not None]
    if not defined:
        return NOT_TESTABLE, f"none of its {len(tests)} test(s) is defined ({_first_undefined(tests)})."
    passed = sum(bool(t.passed) for t in defined)
    return (REPRODUCED if passed else NOT_REPRODUCED), f"{passed} of {len(tests)} tests pass."


def _first_undefined(tests: Sequence[Test]) -> str:
    return next((t.result.split("undefined: ", 1)[-1] for t in tests if t.passed is None), "no test")


def extremes(tests: Sequence[Test]) -> str:
    """The defined tests with the smallest and the largest margin (how far inside the rule's pass region): the
    least and the most support for the claim (``""`` when none is defined)."""
    scored = [t for t in tests if t.margin is not None]
    if not scored:
        return ""
    low = min(scored, key=lambda t: t.margin if t.margin is not None else 0.0)
    high = max(scored, key=lambda t: t.margin if t.margin is not None else 0.0)
    text = f"least support: {low.what}: {low.result} ({low.seeds} seeds)"
    if high is not low:
        text += f"; most support: {high.what}: {high.result} ({high.seeds} seeds)"
    return text


# ---------------------------------------------------------------- grouping records


def method_kind(rec: Rec) -> str:
    """The kind of method a run trains with: ``none``, ``ninr`` (in-NINR or full-NINR), ``l2``, ``dropout``,
    ``cdt``, or ``other`` (another method, or several at once). Read from the records' ``methods`` field (method
    names joined by ``+``), else from the row label."""
    methods = rec.get("methods")
    if methods is None:
        label = str(rec.get("label", "")).lower()
        for kind, start in ((NONE, "none"), ("l2", "l2"), ("dropout", "dropout"), ("cdt", "cdt")):
            if label == start or label.startswith(f"{start} "):
                return kind
        return NINR if "ninr" in label else "other"
    names = [n for n in str(methods).split("+") if n]
    if not names or names == [NONE]:
        return NONE
    if len(names) > 1:
        return "other"
    name = names[0]
    if name.endswith("-ninr"):
        return NINR
    return name if name in ("l2", "dropout", "cdt") else "other"


@dataclass
class Group:
    """The runs of one row (part, architecture, label): per seed, a value per condition key."""

    part: str
    arch: str
    label: str
    kind: str
    by_seed: dict[int, dict[Any, float]] = field(default_factory=dict)
    owner: dict[int, str] = field(default_factory=dict)
    ambiguous: bool = False  # two runs of the row share a seed: pairs by seed are not defined

    @property
    def name(self) -> str:
        return f"{self.arch} {self.label}"


Items = Callable[[Rec], Iterable[tuple[Any, float]]]
"""What a record measures: ``(condition key, value)`` pairs (none for a record a rule does not read)."""


def keyed(key: Callable[[Rec], Any], value: Callable[[Rec], float]) -> Items:
    """The items of a record that measures one condition, ``key(rec)`` (``None``: not read), worth ``value(rec)``."""

    def items(r: Rec) -> list[tuple[Any, float]]:
        k = key(r)
        return [] if k is None else [(k, value(r))]

    return items


def group_runs(rows: Sequence[Rec], items: Items) -> list[Group]:
    """The rows' runs grouped by (part, arch, label), in order of first appearance, holding per seed the value of
    each condition key ``items(rec)`` yields."""
    groups: dict[tuple[str, str, str], Group] = {}
    for r in rows:
        pairs = list(items(r))
        seed = r.get("seed")
        if not pairs or not isinstance(seed, int):
            continue
        ident = (str(r.get("part", "?")), str(r.get("arch")), str(r.get("label")))
        g = groups.get(ident)
        if g is None:
            g = groups[ident] = Group(*ident, method_kind(r))
        run = str(r.get("run_id"))
        if g.owner.setdefault(seed, run) != run:
            g.ambiguous = True
        g.by_seed.setdefault(seed, {}).update(pairs)
    return list(groups.values())


def paired(group: Group, base: Group, key: Any) -> list[float] | None:
    """``group - base`` at condition ``key`` per seed both hold (finite values only); ``None`` when a seed of either
    row has several runs."""
    if group.ambiguous or base.ambiguous:
        return None
    out = []
    for seed in sorted(group.by_seed.keys() & base.by_seed.keys()):
        a, b = group.by_seed[seed].get(key), base.by_seed[seed].get(key)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            out.append(a - b)
    return out


AMBIGUOUS = "several runs of a row share a seed, so runs cannot be paired by seed"


def baselines(groups: Sequence[Group], kind: str) -> dict[tuple[str, str], Group]:
    """The first row of ``kind`` per (part, arch)."""
    out: dict[tuple[str, str], Group] = {}
    for g in groups:
        if g.kind == kind:
            out.setdefault((g.part, g.arch), g)
    return out


def _finals(records: Sequence[Rec]) -> list[Rec]:
    return [r for r in records if r.get("final")]


def _missing_part(records: Records, part: str) -> str | None:
    if part not in records:
        return f"the study ran without the `{part}` part"
    return None


def _untestable(key: str, claim: str, evidence: str, rule: str, why: str) -> Claim:
    return Claim(key, claim, evidence, NOT_TESTABLE, why[0].upper() + why[1:].rstrip(".") + ".", rule)


def judged(
    key: str,
    claim: str,
    evidence: str,
    rule: str,
    tests: Sequence[Test],
    verdict_of: Callable[[Sequence[Test]], tuple[str, str]] = count_verdict,
    shown: Sequence[Test] | None = None,
) -> Claim:
    """The claim judged by ``verdict_of`` (all / some / none of ``tests`` pass), its evidence ending with the tests
    of least and most support among ``shown`` (default: all of them)."""
    verdict, why = verdict_of(tests)
    found = extremes(tests if shown is None else shown)
    return Claim(key, claim, evidence + (f"; {found}" if found else ""), verdict, why, rule, tuple(tests))


# ---------------------------------------------------------------- phases


PHASE_RULE = (
    "Measured phase of each run ({label}), per sweep (one noise mode{sweep}) of at least four sigmas (a shorter "
    "sweep cannot show four phases and is not read). Reproduced: all four phases (decoupled, decay, catapult, "
    "divergent) are measured, and in every sweep the majority phase per sigma never steps back in that order as "
    "sigma grows (the phase is set by the noise scale). Partly: at least two phases are measured, but not all four "
    "or not in that order. Not reproduced: one phase at most. Not testable: no {what} sweep of four sigmas."
)

MIN_SWEEP = 4
"""Sigmas a sweep needs for its phases to be read: one per phase of :data:`ninr.dynamics.phases.PHASES`."""
LINEAR2_RULE = PHASE_RULE.format(
    label="the two-layer toy's rule label, `rule_phase`", sweep="", what="two-layer toy (`linear2`)"
)
MLP_RULE = PHASE_RULE.format(label="the phase classifier's verdict, `phase`", sweep=" and `where`", what="MLP (`mlp`)")


def majority(labels: Sequence[str]) -> str:
    """The most common label; a tie goes to the one earliest in :data:`ninr.dynamics.phases.PHASES` order."""
    counts = Counter(labels)
    top = max(counts.values())
    tied = [p for p in counts if counts[p] == top]
    return min(tied, key=lambda p: PHASES.index(p) if p in PHASES else len(PHASES))


def sweeps_of(runs: Sequence[Rec], sweep: Callable[[Rec], str]) -> dict[str, list[Rec]]:
    """The runs by sweep name, keeping only sweeps of at least :data:`MIN_SWEEP` sigmas."""
    out: dict[str, list[Rec]] = {}
    for r in runs:
        out.setdefault(sweep(r), []).append(r)
    return {name: rs for name, rs in out.items() if len({float(r["sigma"]) for r in rs}) >= MIN_SWEEP}


def ordered_tests(sweeps: Mapping[str, Sequence[Rec]], label: Callable[[Rec], str]) -> list[Test]:
    """Per sweep (runs sharing a noise mode, and for the MLP its ``where``): whether the majority phase per sigma
    keeps the order of :data:`PHASES` as sigma grows (labels outside it are skipped)."""
    tests = []
    for name, runs in sweeps.items():
        by_sigma: dict[float, list[str]] = {}
        for r in runs:
            by_sigma.setdefault(float(r["sigma"]), []).append(label(r))
        sequence = [majority(by_sigma[s]) for s in sorted(by_sigma)]
        ranks = [PHASES.index(p) for p in sequence if p in PHASES]
        ok = all(a <= b for a, b in itertools.pairwise(ranks))
        compact = [p for i, p in enumerate(sequence) if i == 0 or p != sequence[i - 1]]
        tests.append(Test(f"{name}: majority phase as sigma grows", " → ".join(compact), ok, len(runs)))
    return tests


def phase_verdict(seen: Sequence[str], tests: Sequence[Test]) -> tuple[str, str]:
    """The verdict of :data:`PHASE_RULE` from the phases measured and the order tests."""
    listed = ", ".join(seen) or "none"
    in_order = all(t.passed for t in tests)
    text = f"Measured phases: {listed} ({len(seen)} of {len(PHASES)}); " + (
        "in sigma order in every sweep."
        if in_order
        else "not in sigma order in " + ", ".join(t.what.split(":")[0] for t in tests if not t.passed) + "."
    )
    if len(seen) == len(PHASES) and in_order:
        return REPRODUCED, text
    return (PARTLY if len(seen) >= 2 else NOT_REPRODUCED), text


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` at :data:`CONFIDENCE`."""
    z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _grid(runs: Sequence[Rec]) -> str:
    n = len({float(r["sigma"]) for r in runs})
    return f"{len(runs)} run(s) over {n} sigma(s)"


def _measured(seen: set[str]) -> list[str]:
    return [p for p in PHASES if p in seen]


def linear2_phases(records: Records) -> Claim:
    """Four phases set by the noise scale on the two-layer linear toy: :data:`LINEAR2_RULE` on the ``phases``
    part's ``linear2`` runs; the evidence adds how often the measured label is the predicted phase."""
    claim = "Four phases (decoupled, decay, catapult, divergent) set by the noise scale: linear model (two-layer toy)"
    evidence = "Phases section: 'Phases of the two-layer linear toy by sigma' table, phase figure"
    missing = _missing_part(records, "phases")
    runs = [r for r in _finals(records.get("phases", ())) if r.get("model") == "linear2"]
    if missing or not runs:
        why = missing or "the `phases` part ran without the two-layer toy ([phases.options.linear2])"
        return _untestable("phases-linear", claim, evidence, LINEAR2_RULE, why)

    def label(r: Rec) -> str:
        return str(r.get("rule_phase") or r.get("phase"))

    sweeps = sweeps_of(runs, lambda r: f"linear2 {r.get('noise')}")
    if not sweeps:
        why = f"no two-layer sweep has the {MIN_SWEEP} sigmas four phases need ({_grid(runs)})"
        return _untestable("phases-linear", claim, evidence, LINEAR2_RULE, why)
    tests = ordered_tests(sweeps, label)
    runs = [r for rs in sweeps.values() for r in rs]
    verdict, why = phase_verdict(_measured({label(r) for r in runs}), tests)
    predicted = [r for r in runs if r.get("predicted_phase")]
    if predicted:
        k = sum(label(r) == r["predicted_phase"] for r in predicted)
        lo, hi = wilson_interval(k, len(predicted))
        evidence += (
            f"; measured = predicted phase in {k} of {len(predicted)} runs ({SCALE * k / len(predicted):.0f}%, "
            f"95% interval {SCALE * lo:.0f}-{SCALE * hi:.0f}%)"
        )
    return Claim("phases-linear", claim, evidence, verdict, why, LINEAR2_RULE, tuple(tests))


def mlp_phases(records: Records) -> Claim:
    """Four phases set by the noise scale on the 3-layer MLP: :data:`MLP_RULE` on the ``phases`` part's ``mlp``
    runs (in-NINR and full-NINR sweeps each ordered on their own)."""
    claim = "Four phases set by the noise scale: the 3-layer MLP"
    evidence = "Phases section: 'Phases of the MLP ... by sigma' tables, phase and trajectory figures"
    missing = _missing_part(records, "phases")
    runs = [r for r in _finals(records.get("phases", ())) if r.get("model") == "mlp" and r.get("phase")]
    if missing or not runs:
        why = missing or "the `phases` part ran without the MLP ([phases.options.mlp])"
        return _untestable("phases-mlp", claim, evidence, MLP_RULE, why)

    def label(r: Rec) -> str:
        return str(r["phase"])

    def sweep(r: Rec) -> str:
        where = "full-NINR" if r.get("where") == "all" else "in-NINR"
        return f"mlp {where} {r.get('noise')}"

    sweeps = sweeps_of(runs, sweep)
    if not sweeps:
        why = f"no MLP sweep has the {MIN_SWEEP} sigmas four phases need ({_grid(runs)})"
        return _untestable("phases-mlp", claim, evidence, MLP_RULE, why)
    tests = ordered_tests(sweeps, label)
    runs = [r for rs in sweeps.values() for r in rs]
    verdict, why = phase_verdict(_measured({label(r) for r in runs}), tests)
    evidence += f"; {_grid(runs)}"
    return Claim("phases-mlp", claim, evidence, verdict, why, MLP_RULE, tuple(tests))


# ---------------------------------------------------------------- the comparison table's runs


def _accuracy_groups(records: Records) -> list[Group]:
    """The ``table`` part's final clean accuracies (in points) per row and seed; diverged runs left out."""

    def key(r: Rec) -> Any:
        value = r.get("test_acc")
        ok = r.get("run_status") != "diverged" and isinstance(value, int | float) and math.isfinite(value)
        return "clean" if ok else None

    return group_runs(_finals(records.get("table", ())), keyed(key, lambda r: SCALE * float(r["test_acc"])))


SMALL_NOISE_RULE = (
    "The table's NINR rows meant to decay (`phase = \"decay\"`): two tests per row. NIWs decay: every run's phase "
    "verdict is decay (undefined without verdicts: the `phase` hook did not run). Learning proceeds: the clean "
    "accuracy minus None's, paired by seed, is not below zero at 95% (its interval's upper end >= 0); a diverged "
    "run fails it. Reproduced: every test passes; partly: some; not reproduced: none."
)


def small_noise(records: Records) -> Claim:
    """Small noise: the NIWs decay and standard learning proceeds (:data:`SMALL_NOISE_RULE`)."""
    claim = "For small noise the NIWs decay and standard learning proceeds"
    evidence = "Comparison table: phase and in-phase columns, ours − None column"
    missing = _missing_part(records, "table")
    groups = {(g.arch, g.label): g for g in _accuracy_groups(records)}
    finals = _finals(records.get("table", ()))
    rows: dict[tuple[str, str], list[Rec]] = {}
    for r in finals:
        if method_kind(r) == NINR and r.get("expected_phase") == "decay":
            rows.setdefault((str(r.get("arch")), str(r.get("label"))), []).append(r)
    base = baselines(list(groups.values()), NONE)
    if missing or not rows:
        why = missing or 'the `table` part has no NINR row meant to decay (`phase = "decay"`)'
        return _untestable("small-noise", claim, evidence, SMALL_NOISE_RULE, why)
    tests = []
    for (arch, label), runs in rows.items():
        verdicts = [r.get("phase") for r in runs]
        read = [v for v in verdicts if v is not None]
        what = f"{arch} {label}: phase verdicts"
        if not read:
            tests.append(Test(what, "undefined: no phase verdict (the `phase` hook did not run)", None))
        else:
            k = sum(v == "decay" for v in read)
            tests.append(Test(what, f"{k} of {len(verdicts)} runs decay", k == len(verdicts), len(verdicts)))
        what = f"{arch} {label} − None, clean accuracy (points)"
        diverged = sum(r.get("run_status") == "diverged" for r in runs)
        g, b = groups.get((arch, label)), base.get(("table", arch))
        if diverged:
            tests.append(Test(what, f"{diverged} of {len(runs)} runs diverged", False, len(runs)))
        else:
            diffs = paired(g, b, "clean") if g is not None and b is not None else None
            tests.append(interval_test(what, diffs, not_below_zero, AMBIGUOUS if b else "no None row"))
    accuracy = [t for t in tests if "accuracy" in t.what]
    return judged("small-noise", claim, evidence, SMALL_NOISE_RULE, tests, shown=accuracy)


CDT_RULE = (
    "Each CDT row's clean accuracy minus None's, paired by seed, per architecture: the test passes when its 95% "
    "interval lies below zero. Reproduced: every test passes; partly: some; not reproduced: none."
)


def cdt_degrades(records: Records) -> Claim:
    """Training on corrupted inputs (CDT) degrades clean accuracy (:data:`CDT_RULE`)."""
    claim = "Training on corrupted inputs (CDT) degrades clean accuracy"
    evidence = "Comparison table: CDT rows, ours − None column"
    missing = _missing_part(records, "table")
    groups = _accuracy_groups(records)
    cdt = [g for g in groups if g.kind == "cdt"]
    if missing or not cdt:
        return _untestable("cdt", claim, evidence, CDT_RULE, missing or "the `table` part has no CDT row")
    base = baselines(groups, NONE)
    tests = []
    for g in cdt:
        b = base.get((g.part, g.arch))
        diffs = paired(g, b, "clean") if b else None
        tests.append(interval_test(f"{g.name} − None (points)", diffs, below_zero, AMBIGUOUS if b else "no None row"))
    return judged("cdt", claim, evidence, CDT_RULE, tests)


TABLE_RULE = (
    "Each row's difference to the None row of its architecture (the poster does not print its epochs or learning "
    "rate, so levels depend on a protocol we chose; differences to None under one protocol are what the table says "
    "about the methods): the test passes when the poster's difference lies inside our 95% interval of the paired "
    "differences. Reproduced: every row with a poster number passes; partly: some; not reproduced: none. Levels "
    "within the poster's error bars are counted in the evidence, not in the verdict."
)


def clean_table(records: Records) -> Claim:
    """The clean-accuracy table (FC and CNN x 9 methods) against the poster's (:data:`TABLE_RULE`)."""
    claim = "Clean accuracy table (FC and CNN x 9 methods) as in the poster"
    evidence = "Comparison table (ours − None, poster − None, size agrees columns)"
    missing = _missing_part(records, "table")
    rows = compare(records.get("table", ())) if not missing else []
    compared = [r for r in rows if not r.is_baseline and r.poster_vs_none is not None]
    if missing or not compared:
        why = missing or f"no row of the `table` part has a poster number and a {BASELINE} row to compare with"
        return _untestable("table", claim, evidence, TABLE_RULE, why)
    tests = [_table_test(r) for r in compared]
    verdict, why = count_verdict(tests)
    widths = [t.interval.hi - t.interval.lo for t in tests if t.interval is not None]
    if widths:
        why += f" Median interval width {statistics.median(widths):.1f} points (a wide interval admits more)."
    levels = headline(rows)[0].rstrip(".")
    signs = [r.sign_agrees for r in compared if r.sign_agrees is not None]
    evidence += f"; levels: {levels}; signs agree in {sum(signs)} of {len(signs)}"
    found = extremes(tests)
    evidence += f"; {found}" if found else ""
    return Claim("table", claim, evidence, verdict, why, TABLE_RULE, tuple(tests))


def _table_test(row: ComparisonRow) -> Test:
    what = f"{row.arch} {row.method} − None vs poster {row.poster_vs_none:+.1f} (points)"
    if row.vs_none is None:
        return Test(what, "undefined: no None run to pair with", None)
    test = interval_test(what, row.vs_none, contains(float(row.poster_vs_none or 0.0)))
    return test


# ---------------------------------------------------------------- robustness


def robustness_records(records: Records) -> list[Rec]:
    """Accuracy records of the robustness evaluations (the ``robustness`` hook of a grid part, the ``eval`` part),
    noise off, from every part."""
    return [
        r
        for part in records.values()
        for r in part
        if r.get("kind") == KIND and r.get("metric", "accuracy") == "accuracy" and r.get("noise", "off") == "off"
    ]


def _std(r: Rec) -> float | None:
    if r.get("condition") != NOISE or r.get("intensity") is None:
        return None
    return float(r["intensity"])


def noise_key(r: Rec) -> Any:
    """``("std", s)`` for a Gaussian-noise record with ``s >= NOISE_STD_MIN``, else ``None``."""
    std = _std(r)
    return ("std", std) if std is not None and std >= NOISE_STD_MIN - 1e-12 else None


def _value(r: Rec) -> float:
    return SCALE * float(r["value"])


def _no_rows_reason(rows: Sequence[Rec], records: Records, what: str) -> str:
    if not robustness_records(records):
        parts = "`table` part's `robustness` hook nor the `eval` part"
        return f"no robustness records: the study ran neither the {parts}"
    return f"the robustness records hold no {what}"


def versus(
    groups: Sequence[Group], kinds: Sequence[str], key_label: Callable[[Any], str], criterion: Criterion
) -> list[Test]:
    """Each NINR row against the first row of each of ``kinds`` in its part and architecture, at every condition
    key both hold: one test per (row, reference row, key)."""
    tests = []
    for kind in kinds:
        base = baselines(groups, kind)
        for g in groups:
            b = base.get((g.part, g.arch))
            if g.kind != NINR or b is None:
                continue
            keys = sorted({k for v in g.by_seed.values() for k in v} & {k for v in b.by_seed.values() for k in v})
            for k in keys:
                what = f"{g.name} − {b.label}, {key_label(k)} (points)"
                tests.append(interval_test(what, paired(g, b, k), criterion, AMBIGUOUS))
    return tests


ROBUSTNESS_RULE = (
    f"Accuracy under Gaussian input noise of each std >= {NOISE_STD_MIN:g}, each NINR row minus the None row of its "
    "part and architecture, paired by seed: the test passes when its 95% interval lies above zero. Reproduced: every "
    "(row, std) test passes; partly: some; not reproduced: none."
)
OTHERS_RULE = (
    f"As for None, against the L2 and the Dropout rows: accuracy under Gaussian noise of std >= {NOISE_STD_MIN:g}, "
    "NINR row minus L2 (and minus Dropout), paired by seed, interval above zero. Reproduced: every test passes; "
    "partly: some (the poster says NINR beats them 'in some cases'); not reproduced: none."
)


def _noise_groups(records: Records) -> tuple[list[Rec], list[Group]]:
    rows = robustness_records(records)
    return rows, group_runs(rows, keyed(noise_key, _value))


def robustness_vs_none(records: Records) -> Claim:
    """NINR gives robustness to input noise above None (:data:`ROBUSTNESS_RULE`)."""
    claim = "NINR makes the network more robust to input noise than no regularisation (None)"
    evidence = "Robustness section: 'Accuracy under input corruption' table, Gaussian-noise figure"
    rows, groups = _noise_groups(records)
    tests = versus(groups, [NONE], lambda k: f"noise std {k[1]:g}", above_zero)
    if not tests:
        why = _no_rows_reason(rows, records, f"NINR and None rows at a noise std >= {NOISE_STD_MIN:g}")
        return _untestable("robustness", claim, evidence, ROBUSTNESS_RULE, why)
    return judged("robustness", claim, evidence, ROBUSTNESS_RULE, tests)


def robustness_vs_others(records: Records) -> Claim:
    """NINR's robustness to input noise above L2 and Dropout (:data:`OTHERS_RULE`)."""
    claim = "NINR's robustness to input noise exceeds L2's and Dropout's"
    evidence = "Robustness section: 'Accuracy under input corruption' table, Gaussian-noise figure"
    rows, groups = _noise_groups(records)
    tests = versus(groups, ["l2", "dropout"], lambda k: f"noise std {k[1]:g}", above_zero)
    if not tests:
        why = _no_rows_reason(rows, records, f"NINR and L2 or Dropout rows at a noise std >= {NOISE_STD_MIN:g}")
        return _untestable("robustness-others", claim, evidence, OTHERS_RULE, why)
    return judged("robustness-others", claim, evidence, OTHERS_RULE, tests)


UNSTRUCTURED_RULE = (
    "Per NINR row and seed, its gain over None under unstructured noise (the mean, over the Gaussian noise stds "
    f">= {NOISE_STD_MIN:g}, of NINR minus None) minus its gain under structured corruptions (the mean over every "
    f"corruption of a family other than '{UNSTRUCTURED_FAMILY}' and every severity); the test passes when the 95% "
    "interval of that difference over seeds lies above zero. Reproduced: every NINR row passes; partly: some; not "
    "reproduced: none."
)


def structure_key(r: Rec) -> Any:
    """``("std", s)`` as :func:`noise_key`, ``("structured", condition, severity)`` for a corruption of a structured
    family, else ``None``."""
    k = noise_key(r)
    if k is not None:
        return k
    if r.get("severity") is not None and r.get("family") not in (None, UNSTRUCTURED_FAMILY, ATTACK_FAMILY):
        return ("structured", str(r.get("condition")), int(r["severity"]))
    return None


def gain_gap(group: Group, base: Group) -> list[float] | None:
    """Per seed both hold: the mean gain over ``base`` under Gaussian noise minus that under structured corruptions
    (conditions both runs hold; a seed lacking either kind is skipped)."""
    if group.ambiguous or base.ambiguous:
        return None
    out = []
    for seed in sorted(group.by_seed.keys() & base.by_seed.keys()):
        a, b = group.by_seed[seed], base.by_seed[seed]
        gains: dict[str, list[float]] = {"std": [], "structured": []}
        for k in a.keys() & b.keys():
            if math.isfinite(a[k]) and math.isfinite(b[k]):
                gains[k[0]].append(a[k] - b[k])
        if gains["std"] and gains["structured"]:
            out.append(statistics.fmean(gains["std"]) - statistics.fmean(gains["structured"]))
    return out


def unstructured_largest(records: Records) -> Claim:
    """NINR's robustness gain is largest for unstructured noise (:data:`UNSTRUCTURED_RULE`)."""
    claim = "NINR's robustness gain is largest for unstructured noise"
    evidence = "Robustness section: Gaussian-noise and severity figures, 'Accuracy under input corruption' table"
    rows = robustness_records(records)
    groups = group_runs(rows, keyed(structure_key, _value))
    base = baselines(groups, NONE)
    has = {k[0] for g in groups for v in g.by_seed.values() for k in v}
    tests = []
    for g in groups:
        b = base.get((g.part, g.arch))
        if g.kind == NINR and b is not None:
            what = f"{g.name}: gain under noise − gain under structured corruptions (points)"
            tests.append(interval_test(what, gain_gap(g, b), above_zero, AMBIGUOUS))
    if not tests or has != {"std", "structured"}:
        need = f"NINR and None rows with Gaussian noise at std >= {NOISE_STD_MIN:g} and structured corruptions"
        return _untestable("unstructured", claim, evidence, UNSTRUCTURED_RULE, _no_rows_reason(rows, records, need))
    return judged("unstructured", claim, evidence, UNSTRUCTURED_RULE, tests)


ADVERSARIAL_RULE = (
    "Accuracy under each adversarial attack (records of family 'attack': FGSM, PGD, ...) at each budget epsilon > 0, "
    "NINR row minus the None row of its part and architecture, paired by seed: the test passes when its 95% interval "
    "lies above zero. Reproduced: every test passes; partly: some; not reproduced: none."
)


def attack_key(r: Rec) -> Any:
    """``(attack, epsilon)`` of an adversarial accuracy record with ``epsilon > 0``, else ``None``."""
    eps = r.get("epsilon")
    if r.get("family") != ATTACK_FAMILY or eps is None or float(eps) <= 0:
        return None
    return (str(r.get("condition")), float(eps))


def adversarial(records: Records) -> Claim:
    """Adversarial robustness of NINR over None (:data:`ADVERSARIAL_RULE`)."""
    claim = "NINR improves robustness to adversarial attacks (FGSM / PGD)"
    evidence = "Robustness records of attacks (the robustness hook's `attacks` setting, or `ninr eval --suite attacks`)"
    rows = robustness_records(records)
    groups = group_runs(rows, keyed(attack_key, _value))
    tests = versus(groups, [NONE], lambda k: f"{k[0]} eps {k[1]:g}", above_zero)
    if not tests:
        attacks = [r for r in rows if r.get("family") == ATTACK_FAMILY]
        why = (
            "no attack records: no part evaluated FGSM or PGD (the robustness hook with `attacks`, or the `eval` "
            "part with suite `attacks` or `all`, does)"
            if not attacks
            else "the attack records hold no NINR and None rows of one part and architecture"
        )
        return _untestable("adversarial", claim, evidence, ADVERSARIAL_RULE, why)
    return judged("adversarial", claim, evidence, ADVERSARIAL_RULE, tests)


# ---------------------------------------------------------------- the detector


DETECTOR_RULE = (
    f"On the shifted test set ('{DETECTOR_TEST_SET}'), the background rejection 1/eps_B of each NINR method minus "
    "the `none` method's, paired by seed, at each working point (signal efficiency; a seed with an infinite "
    "rejection is left out of that pair): the test passes when its 95% interval lies above zero. Reproduced: some "
    "(method, working point) test passes (the claim is 'at some working point'); not reproduced: none. The tests are "
    "the NINR rows of the detector section's 'each method − none, paired by seed' table on 'data' "
    "(`ninr.report.hep.paired_tests`)."
)


def detector(records: Records) -> Claim:
    """NINR helps on "real" (shifted) detector events at some working point (:data:`DETECTOR_RULE`)."""
    claim = "Detector application: NINR helps on 'real' (shifted) events at some working point"
    evidence = "Detector section: 'Background rejection: each method − none, paired by seed' table"
    missing = _missing_part(records, "hep")
    finals = [r for r in _finals(records.get("hep", ())) if "test_set" in r and "method" in r]
    if missing or not any(r["test_set"] == DETECTOR_TEST_SET for r in finals):
        why = missing or f"the `hep` part has no record on the '{DETECTOR_TEST_SET}' test set"
        return _untestable("detector", claim, evidence, DETECTOR_RULE, why)
    tests = []
    for t in hep_report.paired_tests(finals):
        if t.test_set != DETECTOR_TEST_SET or not hep_report.is_ninr(finals, t.method):
            continue
        what = f"hep {t.method} − {hep_report.reference_label(finals)}, 1/eps_B at eps_S = {t.point / 100:g}"
        diffs = None if t.diffs is None else list(t.diffs)
        tests.append(interval_test(what, diffs, above_zero, AMBIGUOUS))
    if not tests:
        why = "the `hep` part has no NINR method and `none` method to compare"
        return _untestable("detector", claim, evidence, DETECTOR_RULE, why)
    return judged("detector", claim, evidence, DETECTOR_RULE, tests, some_verdict)


# ---------------------------------------------------------------- the implicit regulariser


IMPLICIT_RULE = (
    "Not a study measurement: no part records the noise-averaged loss, so the sheet cannot judge it from the records "
    "(not testable here). It is measured by `python benchmarks/implicit_regulariser.py table` (docs/dynamics.md, "
    "section 6a)."
)


def implicit_regulariser(records: Records) -> Claim:
    """The averaged loss is L + 1/2 sigma^2 W^T H W: never in a study's records (:data:`IMPLICIT_RULE`)."""
    claim = "The noise-averaged loss is L + 1/2 sigma² W_NI^T H W_NI (the implicit regulariser)"
    evidence = "docs/dynamics.md section 6a (a benchmark, not the study)"
    why = (
        "no study part records the averaged loss; docs/dynamics.md section 6a measures it with a benchmark: it holds "
        "for the output node up to sigma ~10 (at initialisation) to ~32 (after one epoch), not for the hidden nodes "
        "of a ReLU network"
    )
    return _untestable("implicit", claim, evidence, IMPLICIT_RULE, why)


# ---------------------------------------------------------------- the sheet


JUDGES: tuple[Callable[[Records], Claim], ...] = (
    linear2_phases,
    mlp_phases,
    small_noise,
    implicit_regulariser,
    robustness_vs_none,
    robustness_vs_others,
    unstructured_largest,
    cdt_degrades,
    clean_table,
    adversarial,
    detector,
)
"""The claims of the poster, in the sheet's order, each judged by its function from the records."""

GENERAL_RULE = (
    "Verdicts are computed from the records by the rules below (src/ninr/report/claims.py), never typed in. "
    "Comparisons pair runs by seed within one part and architecture; intervals are two-sided 95% Student-t intervals "
    "of the mean paired difference over seeds (n − 1 degrees of freedom), in points of accuracy unless stated; below "
    "2 paired seeds a test is undefined, and an undefined test is not a pass. Not testable here: the records do not "
    "hold the evidence. No correction for multiple comparisons: a verdict met by some of n tests can arise by chance "
    "(up to n x 2.5% with no effect); every test is listed below the rules."
)


def judge(records: Records) -> list[Claim]:
    """Every claim of :data:`JUDGES`, judged from ``records`` (by part name)."""
    return [fn(records) for fn in JUDGES]


def claims_sheet(records: Records) -> PartReport:
    """The sheet (claim, evidence, verdict, why), the rules beside it and every test, as the report's first part."""
    claims = judge(records)
    report = PartReport("claims", "Claims of the poster: verdicts from the records")
    counts = Counter(c.verdict for c in claims)
    report.notes.append(", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v]) + f" of {len(claims)} claims.")
    report.notes.append(GENERAL_RULE)
    report.tables.append(
        Table(
            "sheet",
            "Claims sheet",
            ("claim", "evidence", "verdict", "why"),
            tuple((c.claim, c.evidence, c.verdict, c.why) for c in claims),
            tuple(
                {"key": c.key, "claim": c.claim, "evidence": c.evidence, "verdict": c.verdict, "why": c.why}
                for c in claims
            ),
            "Verdicts: reproduced, partly, not reproduced, not testable here (the rules follow).",
        )
    )
    report.tables.append(
        Table(
            "rules",
            "The rule behind each verdict",
            ("claim", "rule"),
            tuple((c.claim, c.rule) for c in claims),
            tuple({"key": c.key, "rule": c.rule} for c in claims),
        )
    )
    tests = [(c, t) for c in claims for t in c.tests]
    report.tables.append(
        Table(
            "tests",
            "Every test the rules made",
            ("claim", "test", "n", "result", "passes"),
            tuple((c.key, t.what, str(t.seeds), t.result, _yes_no(t.passed)) for c, t in tests),
            tuple(_test_data(c, t) for c, t in tests),
            "n: paired seeds (runs, for a phase order). Result: mean [95% interval] of the paired differences, or "
            "what the rule read; passes: n/a when undefined.",
        )
    )
    return report


def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def _test_data(claim: Claim, test: Test) -> dict[str, Any]:
    iv = test.interval
    return {
        "claim": claim.key,
        "test": test.what,
        "n": test.seeds,
        "result": test.result,
        "mean": None if iv is None else iv.mean,
        "lo": None if iv is None else iv.lo,
        "hi": None if iv is None else iv.hi,
        "passes": _yes_no(test.passed),
    }
