"""The ``hep`` study part: a tiny photon study (toy events, 8x8 images, width-4 ResNet, 1 epoch, two methods x two
seeds) run in-process through ``run_study``: its records, run ids, config errors and the rejection table of its
report section. What every part keeps (executors, resume, reports from the stores alone, unknown keys) is tested in
tests/test_parts.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ninr.errors import ConfigError
from ninr.report import build_report
from ninr.report.hep import summary_rows
from ninr.studies import PARTS, InProcessExecutor, ResultStore, RunSpec, load_preset, parse_preset, run_study
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
    assert [t.name for t in body.tables] == ["hep_rejection"] and [f.name for f in body.figures] == ["hep_roc"]
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
