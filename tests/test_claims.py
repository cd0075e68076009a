"""The claims sheet: verdicts of planted records whose answer is known by construction, and the sheet in a report.

Each planted study is a list of records built here (no training): paired per-seed differences chosen so that their
95% Student-t interval lies clearly above zero, straddles it, lies below it, or cannot be formed (one seed, a part
the study did not run). The verdicts follow from the rules printed in the sheet, so the expected verdict of each
case is worked out from the planted numbers in its docstring, not read off the code's output.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics

import pytest

import part_harness as harness
from ninr.report import build_report, write_report
from ninr.report import hep as hep_report
from ninr.report.builder import render_markdown
from ninr.report.claims import (
    JUDGES,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    PARTLY,
    REPRODUCED,
    VERDICTS,
    adversarial,
    cdt_degrades,
    claims_sheet,
    clean_table,
    detector,
    implicit_regulariser,
    judge,
    linear2_phases,
    method_kind,
    mlp_phases,
    robustness_vs_none,
    robustness_vs_others,
    small_noise,
    unstructured_largest,
    wilson_interval,
)
from ninr.report.comparison import paired_differences, t_interval
from ninr.report.reference import load_poster_reference
from test_report import write_planted_store

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = (0, 1, 2)
BASE = {0: 80.0, 1: 83.0, 2: 78.0}  # None's accuracy (%) per seed: spread wider than the planted differences
CLEAR = {0: 5.1, 1: 4.9, 2: 5.0}  # mean 5.0, sample std 0.1: t(0.975, 2) = 4.303 -> 5.0 ± 0.25, above zero
STRADDLE = {0: -3.0, 1: 4.0, 2: -1.0}  # mean 0.0, std 3.6: ± 8.9, straddles zero
LOW = {0: -5.1, 1: -4.9, 2: -5.0}  # the mirror of CLEAR: below zero


def _run_id(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def final(part: str, arch: str, label: str, methods: str, seed: int, **fields: object) -> dict:
    """A run's final record."""
    return {"run_id": _run_id(part, arch, label, seed), "part": part, "arch": arch, "label": label,
            "methods": methods, "seed": seed, "run_status": "completed", "final": True, **fields}  # fmt: skip


ROWS = {  # the poster's rows: label -> methods field
    "None": "none",
    "L2": "l2",
    "Dropout": "dropout",
    "in-NINR (Decay)": "in-ninr",
    "in-NINR (Catapult)": "in-ninr",
    "full-NINR (Decay)": "full-ninr",
    "full-NINR (Catapult)": "full-ninr",
    "CDT (0.2)": "cdt",
    "CDT (0.4)": "cdt",
}


def table(accuracy: dict[tuple[str, str], dict[int, float]], phases: dict[str, str] | None = None) -> list[dict]:
    """Final records of the ``table`` part: accuracy (%) per (arch, label) and seed; NINR rows meant to decay carry
    ``expected_phase`` and, when ``phases`` names their verdict, ``phase``."""
    out = []
    for (arch, label), by_seed in accuracy.items():
        for seed, acc in by_seed.items():
            extra: dict = {"test_acc": acc / 100}
            if "(Decay)" in label:
                extra["expected_phase"] = "decay"
            if phases and label in phases:
                extra["phase"] = phases[label]
            out.append(final("table", arch, label, ROWS[label], seed, **extra))
    return out


def noise_rows(arch: str, label: str, seed: int, by_std: dict[float, float], structured: float | None = None) -> list:
    """The robustness hook's records of one run: accuracy (%) under Gaussian noise per std, and optionally one
    structured corruption (fog, severities 1 and 2) at ``structured``."""
    base = {"run_id": _run_id("table", arch, label, seed), "part": "table", "arch": arch, "label": label,
            "methods": ROWS[label], "seed": seed, "kind": "robustness", "metric": "accuracy", "noise": "off",
            "final": False}  # fmt: skip
    rows = [{**base, "condition": "clean", "family": "clean", "severity": None, "intensity": None, "value": 0.9}]
    for std, acc in by_std.items():
        rows.append({**base, "condition": "gaussian-noise", "family": "noise", "severity": None, "intensity": std,
                     "value": acc / 100})  # fmt: skip
    if structured is not None:
        for severity in (1, 2):
            rows.append({**base, "condition": "fog", "family": "weather", "severity": severity, "intensity": None,
                         "value": structured / 100})  # fmt: skip
    return rows


def robustness_study(
    gain: dict[int, float],
    *,
    label: str = "in-NINR (Decay)",
    seeds: tuple[int, ...] = SEEDS,
    others: dict[int, float] | None = None,
    structured_gain: dict[int, float] | None = None,
) -> dict[str, list]:
    """A table part with the robustness hook: None's noise accuracy is ``BASE`` at every std; the NINR row's is
    ``BASE + gain`` at stds 0.4 and 0.6 and 20 points below None's at std 0.2, which the rules must ignore; L2 and
    Dropout sit at ``BASE + others`` (default: ``BASE``). With ``structured_gain``, fog is evaluated too: None at
    ``BASE``, NINR at ``BASE + structured_gain``, the others at ``BASE``."""
    rest = others or dict.fromkeys(SEEDS, 0.0)
    fog = structured_gain is not None
    records = []
    for seed in seeds:
        b = BASE[seed]
        records += noise_rows("FC", "None", seed, {0.2: b, 0.4: b, 0.6: b}, b if fog else None)
        mine = {0.2: b - 20.0, 0.4: b + gain[seed], 0.6: b + gain[seed]}
        records += noise_rows("FC", label, seed, mine, b + structured_gain[seed] if fog else None)
        for other in ("L2", "Dropout"):
            at = b + rest[seed]
            records += noise_rows("FC", other, seed, {0.2: at, 0.4: at, 0.6: at}, b if fog else None)
    return {"table": records}


# ---------------------------------------------------------------- intervals


def test_t_interval_matches_the_t_table():
    # Student's t table: t(0.975, 2) = 4.303, t(0.975, 4) = 2.776 (any statistics textbook)
    iv = t_interval([1.0, 2.0, 3.0])  # mean 2, sample std 1
    assert iv is not None and iv.n == 3
    assert iv.mean == pytest.approx(2.0)
    assert iv.hi - iv.mean == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    iv5 = t_interval([0.0, 1.0, 2.0, 3.0, 4.0])  # sample std sqrt(2.5)
    assert iv5 is not None and iv5.hi - iv5.mean == pytest.approx(2.776 * math.sqrt(2.5 / 5), abs=1e-3)
    assert t_interval([1.0]) is None and t_interval([]) is None


def test_pairs_are_made_by_seed_and_refused_when_a_seed_repeats():
    assert paired_differences([(0, 5.0), (1, 7.0), (2, 1.0)], [(1, 4.0), (0, 1.0)]) == (4.0, 3.0)
    assert paired_differences([(0, 5.0), (0, 6.0)], [(0, 1.0)]) is None
    assert paired_differences([(0, math.nan), (1, 2.0)], [(0, 1.0), (1, 1.0)]) == (1.0,)


def test_wilson_interval_ends_solve_the_score_equation():
    # Wilson's interval is the set of p whose score test accepts k of n: its ends solve |k/n - p| = z sqrt(p(1-p)/n)
    z = statistics.NormalDist().inv_cdf(0.975)
    for k, n in ((8, 10), (1, 5), (0, 4), (50, 50)):
        lo, hi = wilson_interval(k, n)
        assert 0 <= lo <= k / n <= hi <= 1
        for end in (lo, hi):
            assert abs(k / n - end) == pytest.approx(z * math.sqrt(end * (1 - end) / n), abs=1e-12)


def test_method_kind_from_the_methods_field_or_the_label():
    assert [method_kind({"methods": m}) for m in ("none", "in-ninr", "full-ninr", "l2", "cdt", "l2+dropout")] == [
        "none", "ninr", "ninr", "l2", "cdt", "other"]  # fmt: skip
    assert [method_kind({"label": lab}) for lab in ("None", "full-NINR (Decay)", "CDT (0.2)", "Mystery")] == [
        "none", "ninr", "cdt", "other"]  # fmt: skip


# ---------------------------------------------------------------- robustness


def test_robustness_above_none_at_every_strong_std_is_reproduced():
    claim = robustness_vs_none(robustness_study(CLEAR))
    assert claim.verdict == REPRODUCED, claim.why
    # std 0.2 (where NINR planted a 20-point loss) is below the rule's 0.4: two tests, stds 0.4 and 0.6
    assert [t.what for t in claim.tests] == [
        "FC in-NINR (Decay) − None, noise std 0.4 (points)",
        "FC in-NINR (Decay) − None, noise std 0.6 (points)",
    ]
    assert all(t.interval is not None and t.interval.lo > 4.5 for t in claim.tests)


def test_robustness_straddling_zero_is_not_reproduced_and_mixed_is_partly():
    assert robustness_vs_none(robustness_study(STRADDLE)).verdict == NOT_REPRODUCED
    assert robustness_vs_none(robustness_study(LOW)).verdict == NOT_REPRODUCED
    # above zero at 0.4 and 0.6 for one NINR row, straddling for another: some tests pass
    study = robustness_study(CLEAR)
    study["table"] += robustness_study(STRADDLE, label="full-NINR (Decay)")["table"]
    claim = robustness_vs_none(study)
    assert claim.verdict == PARTLY and claim.why == "2 of 4 tests pass."
    # the evidence names the tests with the least and the most support: a straddling and a clear one
    assert "least support: FC full-NINR (Decay) − None" in claim.evidence
    assert "most support: FC in-NINR (Decay) − None" in claim.evidence


def test_robustness_with_one_seed_is_not_testable_and_says_why():
    claim = robustness_vs_none(robustness_study(CLEAR, seeds=(0,)))
    assert claim.verdict == NOT_TESTABLE
    assert "1 paired seed" in claim.why and "needs 2" in claim.why


def test_robustness_without_the_hook_is_not_testable():
    study = {"table": table({("FC", "None"): BASE, ("FC", "in-NINR (Decay)"): BASE})}
    claim = robustness_vs_none(study)
    assert claim.verdict == NOT_TESTABLE and "no robustness records" in claim.why.lower()


def test_robustness_against_l2_and_dropout_is_judged_on_its_own():
    # NINR is 5 points above None, and L2 and Dropout 10 above None: NINR beats None, not them
    study = robustness_study(CLEAR, others=dict.fromkeys(SEEDS, 10.0))
    assert robustness_vs_none(study).verdict == REPRODUCED
    others = robustness_vs_others(study)
    assert others.verdict == NOT_REPRODUCED
    assert {t.what.split(",")[0] for t in others.tests} == {"FC in-NINR (Decay) − L2", "FC in-NINR (Decay) − Dropout"}


def test_the_gain_is_largest_for_unstructured_noise_when_structured_gain_is_smaller():
    # gain under noise 5.0 ± 0.1 per seed, under fog 0: the per-seed difference is CLEAR (above zero)
    assert unstructured_largest(robustness_study(CLEAR, structured_gain=dict.fromkeys(SEEDS, 0.0))).verdict == (
        REPRODUCED
    )
    # the same gain under fog as under noise plus STRADDLE: the difference straddles zero
    fog = {s: CLEAR[s] - STRADDLE[s] for s in SEEDS}
    assert unstructured_largest(robustness_study(CLEAR, structured_gain=fog)).verdict == NOT_REPRODUCED
    # no structured corruption evaluated: nothing to compare the noise gain with
    claim = unstructured_largest(robustness_study(CLEAR))
    assert claim.verdict == NOT_TESTABLE and "structured" in claim.why


def test_rows_whose_runs_share_a_seed_cannot_be_paired():
    """The eval part's records carry the evaluation's seed: two trained runs of one method under one evaluation
    seed are not pairs."""
    study = robustness_study(CLEAR)
    twin = [dict(r, run_id="f" * 12) for r in study["table"] if r["label"] == "None" and r["seed"] == 0]
    study["table"] += twin
    claim = robustness_vs_none(study)
    assert claim.verdict == NOT_TESTABLE and "share a seed" in claim.why


# ---------------------------------------------------------------- adversarial


def attack_rows(label: str, seed: int, accuracy: float) -> list[dict]:
    """An evaluation's FGSM records at eps 0 (excluded by the rule) and 0.1."""
    base = {"run_id": _run_id("eval", label, seed), "part": "eval", "arch": "mlp", "label": label,
            "methods": label, "seed": seed, "kind": "robustness", "metric": "accuracy", "noise": "off",
            "family": "attack", "condition": "fgsm", "final": False}  # fmt: skip
    return [{**base, "epsilon": 0.0, "value": 0.9}, {**base, "epsilon": 0.1, "value": accuracy / 100}]


def test_adversarial_robustness_from_attack_records():
    up = {"eval": [r for s in SEEDS for lab, acc in (("none", BASE[s]), ("in-ninr", BASE[s] + CLEAR[s]))
                   for r in attack_rows(lab, s, acc)]}  # fmt: skip
    claim = adversarial(up)
    assert claim.verdict == REPRODUCED and len(claim.tests) == 1 and "fgsm eps 0.1" in claim.tests[0].what
    down = {"eval": [r for s in SEEDS for lab, acc in (("none", BASE[s]), ("in-ninr", BASE[s] + LOW[s]))
                     for r in attack_rows(lab, s, acc)]}  # fmt: skip
    assert adversarial(down).verdict == NOT_REPRODUCED
    missing = adversarial(robustness_study(CLEAR))
    assert missing.verdict == NOT_TESTABLE and "no attack records" in missing.why.lower()


# ---------------------------------------------------------------- the comparison table's claims


def poster_study(shift: float = 0.0) -> dict[str, list]:
    """Every poster row on three seeds: our accuracy is the poster's mean + a per-seed offset shared by every row
    of the seed (so paired differences are the poster's differences exactly) + ``shift`` on every non-None row."""
    ref = load_poster_reference()
    offset = {0: -1.0, 1: 0.5, 2: 0.5}
    acc = {}
    for v in ref.values:
        extra = 0.0 if v.method == "None" else shift
        acc[(v.arch, v.method)] = {s: v.mean + offset[s] + extra + 0.01 * s * (v.method != "None") for s in SEEDS}
    return {"table": table(acc, {"in-NINR (Decay)": "decay", "full-NINR (Decay)": "decay"})}


def test_clean_table_with_the_posters_differences_is_reproduced():
    """Our differences to None are the poster's plus 0, 0.01, 0.02 points: every poster difference is in our
    interval (mean + 0.01 ± 0.025)."""
    claim = clean_table(poster_study())
    assert claim.verdict == REPRODUCED, claim.why
    assert len(claim.tests) == 16  # 8 non-None rows per architecture
    # 3 CNN rows have a poster difference of 0, which has no sign: 13 signs compared
    assert "signs agree in 13 of 13" in claim.evidence


def test_clean_table_shifted_by_ten_points_is_not_reproduced():
    claim = clean_table(poster_study(shift=10.0))
    assert claim.verdict == NOT_REPRODUCED
    assert not any(t.passed for t in claim.tests)


def test_cdt_below_none_is_reproduced_and_above_is_not():
    down = {("FC", "None"): BASE, ("FC", "CDT (0.2)"): {s: BASE[s] + LOW[s] for s in SEEDS}}
    assert cdt_degrades({"table": table(down)}).verdict == REPRODUCED
    up = {("FC", "None"): BASE, ("FC", "CDT (0.2)"): {s: BASE[s] + CLEAR[s] for s in SEEDS}}
    assert cdt_degrades({"table": table(up)}).verdict == NOT_REPRODUCED
    mixed = {**down, ("FC", "CDT (0.4)"): {s: BASE[s] + STRADDLE[s] for s in SEEDS}}
    assert cdt_degrades({"table": table(mixed)}).verdict == PARTLY
    none = cdt_degrades({"table": table({("FC", "None"): BASE})})
    assert none.verdict == NOT_TESTABLE and "CDT" in none.why


def test_small_noise_decays_and_learns():
    rows = {("FC", "None"): BASE, ("FC", "in-NINR (Decay)"): {s: BASE[s] + STRADDLE[s] for s in SEEDS}}
    # decays in every run, accuracy not below None's (its interval straddles zero): every test passes
    assert small_noise({"table": table(rows, {"in-NINR (Decay)": "decay"})}).verdict == REPRODUCED
    # decays, but 5 points below None at 95%: one of two tests passes
    worse = {**rows, ("FC", "in-NINR (Decay)"): {s: BASE[s] + LOW[s] for s in SEEDS}}
    assert small_noise({"table": table(worse, {"in-NINR (Decay)": "decay"})}).verdict == PARTLY
    # neither decays (catapult) nor keeps up with None
    assert small_noise({"table": table(worse, {"in-NINR (Decay)": "catapult"})}).verdict == NOT_REPRODUCED
    # seed 2 diverged: its verdict is divergent (phase test fails) and a diverged run fails the learning test
    blown = table(rows, {"in-NINR (Decay)": "decay"})
    for r in blown:
        if r["label"] == "in-NINR (Decay)" and r["seed"] == 2:
            r.update(run_status="diverged", test_acc=math.nan, phase="divergent")
    claim = small_noise({"table": blown})
    assert claim.verdict == NOT_REPRODUCED and "1 of 3 runs diverged" in [t.result for t in claim.tests]
    # no phase hook: the phase test is undefined, so the claim cannot be reproduced whatever the accuracy
    claim = small_noise({"table": table(rows)})
    assert claim.verdict == PARTLY and "`phase` hook did not run" in claim.why


# ---------------------------------------------------------------- phases


def phase_run(model: str, sigma: float, label: str, noise: str = "redrawn", seed: int = 0, **fields: object) -> dict:
    key = "rule_phase" if model == "linear2" else "phase"
    return final("phases", model, f"{noise} sigma={sigma}", "in-ninr", seed, model=model, sigma=sigma, noise=noise,
                 **{key: label}, **fields)  # fmt: skip


FOUR = (("decoupled", 0.1), ("decay", 1.0), ("catapult", 10.0), ("divergent", 30.0))
SIGMAS = tuple(s for _, s in FOUR)


def test_four_ordered_phases_of_the_toy_are_reproduced():
    runs = [phase_run("linear2", s, p, predicted_phase=p) for p, s in FOUR]
    runs.append(phase_run("linear2", 20.0, "catapult", predicted_phase="divergent"))  # a miss: 4 of 5 agree
    claim = linear2_phases({"phases": runs})
    assert claim.verdict == REPRODUCED, claim.why
    lo, hi = wilson_interval(4, 5)
    assert f"4 of 5 runs (80%, 95% interval {100 * lo:.0f}-{100 * hi:.0f}%)" in claim.evidence


def test_phases_out_of_order_or_too_few_are_not_reproduced():
    shuffled = [phase_run("linear2", s, p) for p, s in zip(("divergent", "decay", "catapult", "decoupled"),
                                                         (0.1, 1.0, 10.0, 30.0), strict=True)]  # fmt: skip
    assert linear2_phases({"phases": shuffled}).verdict == PARTLY  # all four, but not in sigma order
    two = [phase_run("linear2", s, p) for p, s in zip(("decay", "decay", "catapult", "catapult"), SIGMAS, strict=True)]
    assert linear2_phases({"phases": two}).verdict == PARTLY
    one = [phase_run("linear2", s, "decay") for s in SIGMAS]
    assert linear2_phases({"phases": one}).verdict == NOT_REPRODUCED


def test_a_sweep_of_fewer_than_four_sigmas_is_not_read():
    """Three sigmas cannot show four phases: such a sweep is not testable, whatever it measured."""
    three = [phase_run("mlp", s, p) for p, s in FOUR[:3]]
    claim = mlp_phases({"phases": three})
    assert claim.verdict == NOT_TESTABLE and "3 run(s) over 3 sigma(s)" in claim.why
    # beside a full sweep, the short one (fixed noise) is left out of the order tests
    full = [phase_run("mlp", s, p) for p, s in FOUR]
    short = [phase_run("mlp", s, "divergent", "fixed") for s in (0.1, 1.0)]
    claim = mlp_phases({"phases": full + short})
    assert claim.verdict == REPRODUCED and [t.what.split(":")[0] for t in claim.tests] == ["mlp in-NINR redrawn"]


def test_mlp_phases_per_sweep_and_majority_over_seeds():
    # fixed noise in order; at sigma 10 of the redrawn sweep two seeds say catapult and one decay (majority: catapult)
    runs = [phase_run("mlp", s, p, noise) for noise in ("redrawn", "fixed") for p, s in FOUR]
    runs += [phase_run("mlp", 10.0, "catapult", "redrawn", seed=1), phase_run("mlp", 10.0, "decay", "redrawn", 2)]
    assert mlp_phases({"phases": runs}).verdict == REPRODUCED
    three = [phase_run("mlp", s, p) for p, s in zip(("decoupled", "decay", "decay", "divergent"), SIGMAS, strict=True)]
    claim = mlp_phases({"phases": three})
    assert claim.verdict == PARTLY and "3 of 4" in claim.why


def test_phases_missing_are_not_testable_with_the_reason():
    no_part = linear2_phases({"table": []})
    assert no_part.verdict == NOT_TESTABLE and "without the `phases` part" in no_part.why
    no_toy = linear2_phases({"phases": [phase_run("mlp", 1.0, "decay")]})
    assert no_toy.verdict == NOT_TESTABLE and "linear2" in no_toy.why
    assert mlp_phases({"phases": [phase_run("linear2", 1.0, "decay")]}).verdict == NOT_TESTABLE


# ---------------------------------------------------------------- detector and the implicit regulariser


def hep_run(label: str, seed: int, rejections: dict[int, float]) -> list[dict]:
    base = {"part": "hep", "arch": "resnet18", "label": label, "methods": label, "seed": seed,
            "method": label, "efficiencies": [0.5, 0.7, 0.9], "final": True}  # fmt: skip
    run = {"run_id": _run_id("hep", label, seed), **base}
    sim = {**run, "test_set": "simulation", **{f"rejection@{e}": 100.0 for e in (50, 70, 90)}}
    data = {**run, "test_set": "data", **{f"rejection@{e}": v for e, v in rejections.items()}}
    return [sim, data]


def test_detector_helps_at_some_working_point():
    none = {50: 40.0, 70: 20.0, 90: 5.0}
    records = []
    for s in SEEDS:
        records += hep_run("none", s, {e: v + BASE[s] / 10 for e, v in none.items()})
        # above none by CLEAR at 50%, straddling at 70%, below at 90%; infinite at 90% for seed 0 (left out)
        ninr = {50: none[50] + CLEAR[s], 70: none[70] + STRADDLE[s], 90: math.inf if s == 0 else none[90] - 3}
        records += hep_run("in-ninr", s, {e: v + BASE[s] / 10 for e, v in ninr.items()})
    claim = detector({"hep": records})
    assert claim.verdict == REPRODUCED
    assert [t.passed for t in claim.tests] == [True, False, False]
    assert claim.tests[2].seeds == 2  # seed 0's infinite rejection is not a pair
    flat = [r for s in SEEDS for lab in ("none", "in-ninr") for r in hep_run(lab, s, {50: 10 + STRADDLE[s]})]
    assert detector({"hep": flat}).verdict == NOT_REPRODUCED
    assert "without the `hep` part" in detector({"table": []}).why


def test_detector_verdict_is_the_hep_sections_paired_table_on_data() -> None:
    """The claim reads the NINR rows of the section's paired table on "data" and nothing else: a further test set
    ("data: noise only") where NINR is planted far above none, and an L2 row above none on "data", change no test."""
    none = {50: 40.0, 70: 20.0, 90: 5.0}
    records = []
    for s in SEEDS:
        records += hep_run("none", s, {e: v + BASE[s] / 10 for e, v in none.items()})
        records += hep_run("full-ninr", s, {e: v + BASE[s] / 10 + (CLEAR[s] if e == 70 else STRADDLE[s])
                                            for e, v in none.items()})  # fmt: skip
        records += hep_run("l2", s, {e: v + BASE[s] / 10 + CLEAR[s] for e, v in none.items()})
        for label, gain in (("none", 0.0), ("full-ninr", 50.0)):
            extra = hep_run(label, s, {e: v + gain + STRADDLE[s] for e, v in none.items()})[1]
            records.append({**extra, "test_set": "data: noise only"})
    claim = detector({"hep": records})
    assert claim.verdict == REPRODUCED
    assert [(t.what, t.passed) for t in claim.tests] == [
        (f"hep full-ninr − none, 1/eps_B at eps_S = {e:g}", e == 0.7) for e in (0.5, 0.7, 0.9)
    ]
    helping = hep_report.helping(records)
    assert [(t.method, t.test_set, t.point) for t in helping] == [("full-ninr", "data", 70)]
    passing = next(t for t in claim.tests if t.passed)
    assert passing.interval == helping[0].interval  # one rule, one interval: 5.0 ± 0.25 (CLEAR)
    assert passing.interval.lo == pytest.approx(5.0 - 4.303 * 0.1 / math.sqrt(3), abs=1e-3)


def test_the_implicit_regulariser_points_to_the_benchmark():
    claim = implicit_regulariser({"table": [], "phases": []})
    assert claim.verdict == NOT_TESTABLE
    assert "docs/dynamics.md section 6a" in claim.why and "output node" in claim.why


# ---------------------------------------------------------------- the sheet


def test_the_sheet_has_one_row_per_claim_and_prints_every_rule():
    study = robustness_study(CLEAR)
    study["table"] += table({("FC", "None"): BASE, ("FC", "in-NINR (Decay)"): BASE})
    claims = judge(study)
    assert len(claims) == len(JUDGES) and all(c.verdict in VERDICTS for c in claims)
    sheet = claims_sheet(study)
    names = [t.name for t in sheet.tables]
    assert names == ["sheet", "rules", "tests"]
    rows = sheet.tables[0].cells
    assert [r[0] for r in rows] == [c.claim for c in claims] and [r[2] for r in rows] == [c.verdict for c in claims]
    assert [r[1] for r in sheet.tables[1].cells] == [c.rule for c in claims]
    assert len(sheet.tables[2].cells) == sum(len(c.tests) for c in claims)
    # the study has no phases and no hep part: those claims say so
    by_key = {c.key: c for c in claims}
    for key, part in (("phases-linear", "phases"), ("phases-mlp", "phases"), ("detector", "hep")):
        assert by_key[key].verdict == NOT_TESTABLE and f"`{part}` part" in by_key[key].why


# ---------------------------------------------------------------- end to end


TINY_TABLE = {
    "seeds": [0, 1],
    "hooks": ["phase", "robustness"],
    "train": {"dataset": "synthetic", "dataset_kwargs": {"n_train": 96, "n_test": 64, "seed": 0}, "lr": 0.05,
              "batch_size": 32, "epochs": 1, "max_steps": 3, "eval_batch_size": 64},
    "arch": {"FC": {"model": "mlp", "model_kwargs": {"width": 16}}},
    "variant": [{"label": "None"}, {"label": "in-NINR (Decay)", "phase": "decay",
                                   "methods": [{"name": "in-ninr", "params": {"sigma": 1.0}}]}],
    "options": {"robustness": {"stds": [0.5], "corruptions": ["fog"], "severities": [1]}},
}  # fmt: skip
TINY_PHASES = {
    "seeds": [0],
    "options": {"linear2": {"sigmas": [3.0, 17.0], "noise": ["redrawn"], "steps": 40, "boundary_seeds": 0}},
}


def test_report_opens_with_the_claims_sheet(tmp_path):
    """A report built from stores of two parts run by the part harness: the sheet comes before every part's
    section in Markdown and HTML, and the part the study did not run (hep) is named as the reason."""
    pytest.importorskip("matplotlib")
    harness.run_reference("table", TINY_TABLE, tmp_path / "res")
    harness.run_reference("phases", TINY_PHASES, tmp_path / "res")
    report = build_report(tmp_path / "res")
    assert report.claims is not None and [s.body.part for s in report.sections][:1] == ["table"]
    paths = write_report(report, tmp_path / "report")
    md = paths["markdown"].read_text()
    headings = re.findall(r"^## (.+)$", md, flags=re.MULTILINE)
    assert headings[0] == report.claims.title and headings[1].endswith("(`table`)")
    assert md == render_markdown(report)
    html = paths["html"].read_text()
    sections = re.findall(r'<section id="([^"]+)">', html)
    assert sections[0] == "claims" and sections[1] == "part-table"
    assert '<table id="table-sheet">' in html and '<table id="table-rules">' in html
    sheet = {row[0]: row for row in report.claims.tables[0].cells}
    detector_row = next(row for claim, row in sheet.items() if claim.startswith("Detector"))
    assert detector_row[2] == NOT_TESTABLE and "`hep` part" in detector_row[3]
    assert all(row[2] in VERDICTS for row in sheet.values())
    assert (tmp_path / "report" / "tables" / "claims_sheet.csv").exists()
    table_section = report.sections[0].body
    assert "outside_reference" in [t.name for t in table_section.tables]


def test_the_sheet_names_parts_whose_runs_have_not_all_finished(tmp_path):
    pytest.importorskip("matplotlib")
    store = write_planted_store(tmp_path)
    assert build_report(tmp_path).claims.notes[0].endswith("of 11 claims.")  # every run finished: no such note
    info = store.read_study()
    store.write_study({**info, "run_ids": [*info["run_ids"], "ffffffffffff"]})
    note = build_report(tmp_path).claims.notes[0]
    assert note.startswith("Runs finished: `table` 10 of 11.") and "--resume" in note
