"""The ``hep`` study part: a tiny photon study (toy events, 8x8 images, width-4 ResNet, 1 epoch, two methods x two
seeds) run in-process through ``run_study``: its records, run ids, config errors and the rejection table of its
report section. What every part keeps (executors, resume, reports from the stores alone, unknown keys) is tested in
tests/test_parts.py."""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ninr.errors import ConfigError
from ninr.hep import study
from ninr.hep.metrics import BOOTSTRAP_REPLICATES, rejection_interval
from ninr.report import build_report
from ninr.report.hep import (
    candidates_table,
    helping,
    interval_table,
    paired_table,
    ratio_table,
    ratios,
    seed_mean_interval,
    sets_of,
    summary_rows,
)
from ninr.studies import PARTS, InProcessExecutor, ResultStore, RunSpec, load_preset, parse_preset, run_study
from ninr.studies.parts import hep as hep_part
from ninr.studies.parts.hep import HepRun

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")


def _preset(study: Path | str, **extra) -> dict:
    return {"name": "hep-tiny", "hep": {"seeds": [0, 1], "options": {"study": str(study), **extra}}}


def _specs(data: dict) -> list[RunSpec]:
    preset = parse_preset(data)
    return PARTS.get("hep").expand(preset.section("hep"), preset.name)


@pytest.fixture(scope="module")
def hep_store(hep_study, tmp_path_factory) -> Path:
    """The tiny study (two methods x two seeds) run in-process into a fresh results directory."""
    out = tmp_path_factory.mktemp("hep") / "results"
    summary = run_study(parse_preset(_preset(hep_study)), "hep", out, InProcessExecutor(), quiet=True)
    assert (summary.total, summary.new, summary.resumed) == (4, 4, 0)
    return out


def test_hep_preset_runs_every_method_of_the_quick_study_and_seed():
    preset = load_preset(ROOT / "configs" / "hep.toml")
    assert preset.parts() == ["hep"]
    specs = PARTS.get("hep").expand(preset.section("hep"), preset.name)
    assert all(isinstance(s.options, HepRun) for s in specs)
    tables = specs[0].options.study
    labels = [m["label"] for m in tables["methods"]]
    assert tables["study"]["seeds"] == [0, 1] and tables["study"]["model_kwargs"] == {"width": 8}
    assert labels[:3] == ["none", "l2", "dropout"]
    assert [(s.label, s.seed) for s in specs] == [(m, seed) for m in labels for seed in (0, 1)]
    assert len({s.run_id for s in specs}) == len(specs)
    # Every run reads the same events: one data identity for the whole study.
    assert len({str(s.identity["data"]) for s in specs}) == 1


def test_records_cover_every_method_seed_and_test_set(hep_store):
    records = ResultStore(hep_store / "hep").records()
    keys = sorted((r["method"], r["seed"], r["test_set"]) for r in records)
    assert keys == sorted((m, s, ts) for m in ("none", "in-ninr") for s in (0, 1) for ts in ("simulation", "data"))
    for r in records:
        assert r["final"] and r["part"] == "hep" and r["study"] == "hep-tiny" and r["status"] == "completed"
        assert r["label"] == r["method"] and r["run_status"] == "completed"
        assert r["n_test"] == 36 and 0 <= r["auc"] <= 1
        assert r["rejection@70"] == (math.inf if r["bkg_eff@70"] == 0 else pytest.approx(1 / r["bkg_eff@70"]))
        assert len(r["roc_bkg_eff"]) == len(r["roc_signal_eff"]) == 20
        assert r["n_signal"] + r["n_background"] == r["n_test"] and r["n_signal"] > 0 and r["n_background"] > 0
        # the interval is the percentile interval of the stored replicates (rounded to 1e-7: far below 1/n_bkg)
        reps = r["bootstrap_bkg_eff@70"]
        assert len(reps) == r["bootstrap"]["replicates"] == BOOTSTRAP_REPLICATES
        lo, hi = rejection_interval(reps)
        assert (r["rejection_lo@70"], r["rejection_hi@70"]) == pytest.approx((lo, hi), rel=1e-5)
        assert r["rejection_lo@70"] <= r["rejection_hi@70"]
    # every run of a test set resamples the same events; the two test sets are resampled independently
    seeds = {ts: {r["bootstrap"]["seed"] for r in records if r["test_set"] == ts} for ts in ("simulation", "data")}
    assert all(len(v) == 1 for v in seeds.values()) and seeds["simulation"] != seeds["data"]
    # the section's seeds replace the study file's (5); two seeds train different models
    sims = {(r["method"], r["seed"]): r["auc"] for r in records if r["test_set"] == "simulation"}
    assert sims[("none", 0)] != sims[("none", 1)]


def test_a_changed_setting_changes_the_run_ids_and_where_the_events_live_does_not(hep_study, tmp_path):
    base = _specs(_preset(hep_study))
    changed = _preset(hep_study, overrides={"epochs": 2})
    other = _specs(changed)
    assert all(a.run_id != b.run_id for a, b in zip(base, other, strict=True))
    assert other[0].options.study["study"]["epochs"] == 2
    # The same events file under another name is the same data: the runs keep their ids.
    copy = tmp_path / "copy.h5"
    copy.write_bytes(Path(base[0].options.study["study"]["events"]).read_bytes())
    moved = _specs(_preset(hep_study, events=str(copy)))
    assert [s.run_id for s in moved] == [s.run_id for s in base]
    assert moved[0].options.study["study"]["events"] == str(copy)


def test_report_rejection_table_is_the_mean_over_seeds_of_the_records(hep_store):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    (section,) = build_report(hep_store).sections
    body = section.body
    names = ["hep_rejection", "hep_candidates", "hep_intervals", "hep_paired", "hep_ratio", "hep_ratio_paired"]
    assert [t.name for t in body.tables] == names and [f.name for f in body.figures] == ["hep_roc"]
    assert body.figures[0].png.startswith(PNG_MAGIC)
    table = body.tables[0]
    assert [row[:2] for row in table.cells] == [("none", "2"), ("in-ninr", "2")]
    assert len(table.headers) == 2 + 2 * 4  # AUC and three efficiencies per test set
    # the table's numbers are the mean and std over seeds of the records' rejections
    records = ResultStore(hep_store / "hep").records()
    expected = {row["method"]: row for row in summary_rows(records, [0.5, 0.7, 0.9])}
    assert [row["method"] for row in table.data] == ["none", "in-ninr"]  # the study file's order
    for row in table.data:
        exp = expected[row["method"]]
        for ts in ("simulation", "data"):
            assert row[f"{ts}_auc_mean"] == pytest.approx(exp[f"{ts}/auc"][0], nan_ok=True)
            sub = [r["rejection@50"] for r in records if r["method"] == row["method"] and r["test_set"] == ts]
            assert len(sub) == 2
            if all(math.isfinite(v) for v in sub):
                assert row[f"{ts}_rejection@50_mean"] == pytest.approx(sum(sub) / len(sub))
    # the paired table: in-ninr minus none per seed, with the Student-t interval t(0.975, 1) = 12.706 s / sqrt(2)
    paired = {(d["method"], d["test_set"], d["point"]): d for d in body.tables[3].data}
    for ts in ("simulation", "data"):
        by = {(r["method"], r["seed"]): r["rejection@70"] for r in records if r["test_set"] == ts}
        diffs = [by[("in-ninr", s)] - by[("none", s)] for s in (0, 1)]
        got = paired[("in-ninr", ts, 70)]
        if all(math.isfinite(d) for d in diffs):
            half = 12.706 * abs(diffs[0] - diffs[1]) / math.sqrt(2) / math.sqrt(2)
            assert (got["lo"], got["hi"]) == pytest.approx((sum(diffs) / 2 - half, sum(diffs) / 2 + half), rel=1e-3)
    candidates = body.tables[1].cells
    assert [c[0] for c in candidates] == ["simulation", "data"]
    assert {int(c[1]) + int(c[2]) for c in candidates} == {36}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, r"\[hep\.options\]: `study` is required"),
        ({"study": "configs/hep-quick.toml", "sudy": 1}, r"unknown key 'sudy'; did you mean 'study'"),
        ({"study": "configs/nope.toml"}, r"no file 'configs/nope.toml'"),
    ],
)
def test_bad_sections_fail_with_the_key_and_rule(options, match):
    with pytest.raises(ConfigError, match=match):
        _specs({"name": "x", "hep": {"seeds": 1, "options": options}})


# ---------------------------------------------------------------- the section on planted records (no training)

EXTRA = "data: noise only"


def planted(
    method: str, name: str, seed: int, test_set: str, rejections: dict[int, float], reps: Any = None
) -> dict[str, Any]:
    """One record as the hep part writes it, with the given 1/eps_B per working point."""
    rec = {"method": method, "method_name": name, "seed": seed, "test_set": test_set, "final": True, "auc": 0.8,
           "efficiencies": [0.5, 0.7], "n_test": 100, "n_signal": 40, "n_background": 60}  # fmt: skip
    for p, v in rejections.items():
        rec[f"rejection@{p}"] = v
        if reps is not None:
            rec[f"bootstrap_bkg_eff@{p}"] = list(reps)
            rec["bootstrap"] = {"seed": 7, "replicates": len(reps)}
    return rec


def planted_study() -> list[dict[str, Any]]:
    """none and full-ninr over three seeds on three test sets. On "data" full-ninr beats none by 5.1, 4.9 and 5.0 at
    50% (mean 5.0, sample std 0.1: t(0.975, 2) = 4.303 gives 5.0 ± 0.25, above zero) and by -3, 4, -1 at 70% (mean 0,
    std 3.6: straddles zero). Simulation: none 20 (50%) and 10 (70%) for every seed, full-ninr the same."""
    recs = []
    for s, (gain50, gain70) in enumerate([(5.1, -3.0), (4.9, 4.0), (5.0, -1.0)]):
        for method, name, g50, g70 in (("none", "none", 0.0, 0.0), ("full-ninr", "full-ninr", gain50, gain70)):
            recs.append(planted(method, name, s, "simulation", {50: 20.0, 70: 10.0}))
            recs.append(planted(method, name, s, "data", {50: 8.0 + s + g50, 70: 5.0 + s + g70}))
            recs.append(planted(method, name, s, EXTRA, {50: 16.0, 70: math.inf if s == 0 else 8.0}))
    return recs


def test_section_shows_every_test_set_and_the_working_points_where_ninr_helps() -> None:
    recs = planted_study()
    assert sets_of(recs) == ["simulation", "data", EXTRA]
    assert [c[0] for c in candidates_table(recs).cells] == ["simulation", "data", EXTRA]
    assert {c[1:] for c in candidates_table(recs).cells} == {("40", "60")}
    assert [(c[0], c[1]) for c in interval_table(recs).cells][:3] == [("none", ts) for ts in sets_of(recs)]
    found = helping(recs)
    assert [(t.method, t.test_set, t.point) for t in found] == [("full-ninr", "data", 50)]
    assert found[0].interval.lo == pytest.approx(5.0 - 4.303 * 0.1 / math.sqrt(3), abs=1e-3)
    cells = {(c[0], c[1]): c[2:] for c in paired_table(recs).cells}
    assert cells[("full-ninr", "data")][0].endswith("*") and not cells[("full-ninr", "data")][1].endswith("*")
    # the extra test set: seed 0's infinite rejection at 70% leaves two pairs, both 0
    assert cells[("full-ninr", EXTRA)][1].startswith("+0.0 [+0.0, +0.0] (n = 2)")


def test_ratio_is_shifted_over_simulation_per_seed() -> None:
    recs = planted_study()
    assert ratios(recs, "none", "data", 50) == {0: 8 / 20, 1: 9 / 20, 2: 10 / 20}
    assert ratios(recs, "none", EXTRA, 70) == {1: 0.8, 2: 0.8}  # seed 0 infinite: left out
    table = ratio_table(recs)
    assert [(c[0], c[1]) for c in table.cells] == [("none", "data"), ("none", EXTRA), ("full-ninr", "data"),
                                                   ("full-ninr", EXTRA)]  # fmt: skip
    row = next(d for d in table.data if (d["method"], d["test_set"], d["point"]) == ("none", "data", 50))
    assert row["mean"] == pytest.approx(0.45) and row["std"] == pytest.approx(0.05)


def test_seed_mean_interval_averages_replicates_of_the_same_resamples() -> None:
    """Two seeds whose replicate b has eps_B 0.1 and 0.2 + 0.1 b/(B-1): replicate b of the mean rejection is
    (10 + 1/(0.2 + 0.1 b/(B-1))) / 2, decreasing in b from 7.5 to 6.667; its 2.5% and 97.5% percentiles follow."""
    n = 401
    a = np.full(n, 0.1)
    b = 0.2 + 0.1 * np.arange(n) / (n - 1)
    recs = [planted("none", "none", 0, "data", {50: 10.0}, a), planted("none", "none", 1, "data", {50: 5.0}, b)]
    mean = (1 / a + 1 / b) / 2
    want = np.quantile(mean, [0.025, 0.975])
    assert seed_mean_interval(recs, "none", "data", 50) == pytest.approx(tuple(want))
    assert want[0] == pytest.approx((10 + 1 / (0.2 + 0.1 * 0.975)) / 2, rel=1e-3)  # the closed form at q = 97.5%
    recs[1]["bootstrap"] = {"seed": 8, "replicates": n}  # resampled differently: no mean of replicates
    assert seed_mean_interval(recs, "none", "data", 50) is None


def test_gun_preset_runs_ten_seeds_of_every_method() -> None:
    preset = load_preset(ROOT / "configs" / "hep-gun-preset.toml")
    specs = PARTS.get("hep").expand(preset.section("hep"), preset.name)
    tables = specs[0].options.study
    labels = [m["label"] for m in tables["methods"]]
    assert labels == ["none", "l2", "dropout", "in-ninr", "full-ninr", "full-ninr-correlated", "full-ninr-pileup"]
    assert [(s.label, s.seed) for s in specs] == [(m, seed) for m in labels for seed in range(10)]
    assert tables["generation"]["source"] == "gun" and tables["study"]["normalise"] == "energy"
    assert {m["label"]: m.get("params", {}).get("distribution") for m in tables["methods"]}["full-ninr-pileup"] == (
        "pileup"
    )


def test_single_effect_test_sets_reach_the_records_and_every_table(hep_study: Path, tmp_path: Path) -> None:
    """With ``single_effect_tests`` the part's runs score every test set the prepared data hold, one record each,
    and the section's tables show them all (the prepared-data cache is keyed by the setting, so it is not read
    stale)."""
    preset = {"name": "hep-effects", "hep": {"seeds": [0], "options": {"study": str(hep_study),
              "overrides": {"single_effect_tests": True}}}}  # fmt: skip
    out = tmp_path / "results"
    run_study(parse_preset(preset), "hep", out, InProcessExecutor(), quiet=True)
    records = ResultStore(out / "hep").records()
    names = sets_of(records)
    assert names[:2] == ["simulation", "data"] and len(names) > 2
    assert all(n.startswith("data: ") and n.endswith(" only") for n in names[2:])
    for n in names:  # every method and seed on every test set, with its bootstrap interval
        got = sorted((r["method"], r["seed"]) for r in records if r["test_set"] == n)
        assert got == [("in-ninr", 0), ("none", 0)]
    assert [c[0] for c in candidates_table(records).cells] == names
    assert {c[1] for c in paired_table(records).cells} == set(names)
    assert {c[1] for c in ratio_table(records).cells} == set(names[1:])


def test_the_data_cache_key_names_every_study_setting_the_data_preparation_reads() -> None:
    # the part caches prepared images by DATA_FIELDS (with the generation, detector, shift and ROOT tables): a
    # `[study]` setting read by prepare_data or its helpers and missing from the key would be silently ignored
    source = "".join(inspect.getsource(f) for f in (study.prepare_data, study._root_data, study._effect_images))
    fields = {f.name for f in dataclasses.fields(study.StudyConfig)}
    read = set(re.findall(r"config\.(\w+)", source)) & fields
    tables = {"generation", "simulation", "shift", "root"}
    assert read - tables <= set(hep_part.DATA_FIELDS), sorted(read - tables - set(hep_part.DATA_FIELDS))
    assert "exclude_origins" in read and "single_effect_tests" in read
