"""The ``hep`` study part: a tiny photon study (toy events, 8x8 images, width-4 ResNet, 1 epoch) run end to
end through ``run_study`` in-process, resume, config errors, and the report section rebuilt from records alone."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from ninr.errors import ConfigError
from ninr.report import build_report
from ninr.studies import InProcessExecutor, ResultStore, load_preset, parse_preset, run_study
from ninr.studies.sweep import expand_preset

needs_h5py = pytest.mark.skipif(
    importlib.util.find_spec("h5py") is None, reason="h5py not installed (pip install 'ninr[hep]')"
)
ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STUDY_TOML = """
[generation]
n_signal_events = 0
n_background_events = 0

[simulation]
em_cells = 8
had_cells = 2

[study]
model_kwargs = {{ width = 4 }}
seeds = [5]
epochs = 1
batch_size = 32
events = "{events}"

[[methods]]
label = "none"
name = "none"

[[methods]]
label = "in-ninr"
name = "in-ninr"
params = {{ sigma = 0.5, per = "pixel" }}
"""


def _preset(study: Path, **extra: str) -> dict:
    return {"name": "hep-tiny", "hep": {"seeds": [0, 1], "options": {"study": str(study), **extra}}}


@pytest.fixture(scope="module")
def hep_store(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny study (two methods x two seeds) run in-process into a fresh results directory."""
    if importlib.util.find_spec("h5py") is None:
        pytest.skip("h5py not installed (pip install 'ninr[hep]')")
    from ninr.hep.config import GenerationConfig
    from ninr.hep.datasets import write_events
    from ninr.hep.events import toy_candidates

    tmp = tmp_path_factory.mktemp("hep")
    write_events(tmp / "ev.h5", toy_candidates(120), GenerationConfig(n_signal_events=0, n_background_events=0))
    study = tmp / "study.toml"
    study.write_text(STUDY_TOML.format(events=tmp / "ev.h5"))
    out = tmp / "results"
    summary = run_study(parse_preset(_preset(study)), "hep", out, InProcessExecutor(), quiet=True)
    assert (summary.total, summary.new, summary.resumed) == (1, 1, 0)
    return out, study


def test_quick_preset_names_the_quick_study_only():
    preset = load_preset(ROOT / "configs" / "hep.toml")
    assert preset.parts() == ["hep"]
    (spec,) = expand_preset(preset)["hep"]
    tables = spec.options["hep_study"]
    assert tables["study"]["seeds"] == [0, 1] and tables["study"]["model_kwargs"] == {"width": 8}
    assert [m["label"] for m in tables["methods"]][:3] == ["none", "l2", "dropout"]


@needs_h5py
def test_records_cover_every_method_seed_and_test_set(hep_store):
    out, _ = hep_store
    records = ResultStore(out / "hep").records()
    keys = [(r["method"], r["seed"], r["test_set"]) for r in records]
    assert keys == [(m, s, ts) for m in ("none", "in-ninr") for s in (0, 1) for ts in ("simulation", "data")]
    for r in records:
        assert r["final"] and r["part"] == "hep" and r["study"] == "hep-tiny" and r["status"] == "completed"
        assert r["n_test"] == 36 and 0 <= r["auc"] <= 1
        assert r["rejection@70"] == (math.inf if r["bkg_eff@70"] == 0 else pytest.approx(1 / r["bkg_eff@70"]))
        assert len(r["roc_bkg_eff"]) == len(r["roc_signal_eff"]) == 20
    # the section's seeds replace the study file's (5); two seeds train different models
    sims = {(r["method"], r["seed"]): r["auc"] for r in records if r["test_set"] == "simulation"}
    assert sims[("none", 0)] != sims[("none", 1)]


@needs_h5py
def test_resume_runs_nothing_and_a_changed_setting_reruns(hep_store):
    out, study = hep_store
    summary = run_study(parse_preset(_preset(study)), "hep", out, InProcessExecutor(), resume=True, quiet=True)
    assert (summary.new, summary.resumed) == (0, 1)
    changed = _preset(study)
    changed["hep"]["options"]["overrides"] = {"epochs": 2}
    (a,) = expand_preset(parse_preset(_preset(study)))["hep"]
    (b,) = expand_preset(parse_preset(changed))["hep"]
    assert a.run_id != b.run_id and b.options["hep_study"]["study"]["epochs"] == 2


@needs_h5py
def test_report_is_built_from_records_alone(hep_store, monkeypatch):
    pytest.importorskip("matplotlib")
    import ninr.hep.study
    from ninr.hep.report import summary_rows

    def no_runs(*args, **kwargs):
        raise AssertionError("a report must not run the study")

    monkeypatch.setattr(ninr.hep.study, "run_hep_study", no_runs)
    monkeypatch.setattr(ninr.hep.study, "prepare_data", no_runs)
    out, _ = hep_store
    (section,) = build_report(out).sections
    body = section.body
    assert [t.name for t in body.tables] == ["hep_rejection"] and [f.name for f in body.figures] == ["hep_roc"]
    assert body.figures[0].png.startswith(PNG_MAGIC)
    table = body.tables[0]
    assert [row[:2] for row in table.cells] == [("none", "2"), ("in-ninr", "2")]
    assert len(table.headers) == 2 + 2 * 4  # AUC and three efficiencies per test set
    # the table's numbers are the mean and std over seeds of the records' rejections
    records = ResultStore(out / "hep").records()
    expected = summary_rows(records, [0.5, 0.7, 0.9])
    for row, exp in zip(table.data, expected, strict=True):
        for ts in ("simulation", "data"):
            assert row[f"{ts}_auc_mean"] == pytest.approx(exp[f"{ts}/auc"][0], nan_ok=True)
            sub = [r["rejection@50"] for r in records if r["method"] == row["method"] and r["test_set"] == ts]
            if all(math.isfinite(v) for v in sub):
                assert row[f"{ts}_rejection@50_mean"] == pytest.approx(sum(sub) / len(sub))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, r"\[hep.options\]: `study` is required"),
        ({"study": "configs/hep-quick.toml", "sudy": 1}, r"unknown key 'sudy'; did you mean 'study'"),
        ({"study": "configs/nope.toml"}, r"no file 'configs/nope.toml'"),
    ],
)
def test_bad_sections_fail_with_the_key_and_rule(options, match):
    preset = parse_preset({"name": "x", "hep": {"seeds": 1, "options": options}})
    with pytest.raises(ConfigError, match=match):
        expand_preset(preset)
