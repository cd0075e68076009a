"""The ``phases`` study part: the tiny preset's linear grid end to end, the MLP path on synthetic data, resume,
determinism, config errors, and the report rebuilt from records alone.

The linear runs are checked against the closed form (ninr.dynamics.theory): each run's label is the predicted phase and
a decaying run's fitted NIW decay time is within 3% of ``1/gamma(k, B)``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest
import torch

from ninr.errors import ConfigError
from ninr.report import build_report, write_report
from ninr.studies import InProcessExecutor, ResultStore, load_preset, parse_preset, run_study
from ninr.studies.phases_part import TRAJECTORY_POINTS, expand_phases, run_phase
from ninr.studies.sweep import expand_preset

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
THEORY_TOLERANCE = 0.03  # the fit of a 60-step noise-free decay against 1/gamma; measured deviations < 1%


def _dumps(records: list[dict]) -> str:
    return json.dumps(records, sort_keys=True)  # NaN-safe equality: NaN != NaN, but its text is equal


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """The tiny preset's phases part run in-process into a fresh results directory."""
    out = tmp_path_factory.mktemp("phases")
    summary = run_study(load_preset(TINY).select(["phases"]), "phases", out, InProcessExecutor(), quiet=True)
    assert (summary.total, summary.new, summary.resumed) == (8, 8, 0)
    return out


def _finals(out: Path) -> list[dict]:
    return [r for r in ResultStore(out / "phases").records() if r["final"]]


def test_tiny_phases_expands_to_the_linear_grid():
    specs = expand_preset(load_preset(TINY))["phases"]
    assert [(s.arch, s.label) for s in specs[:4]] == [
        ("linear", "redrawn sigma=0.5"),
        ("linear", "redrawn sigma=3"),
        ("linear", "redrawn sigma=12"),
        ("linear", "redrawn sigma=16"),
    ]
    assert len(specs) == 8 and len({s.run_id for s in specs}) == 8
    assert specs[0].options == {
        "model": "linear", "noise": "redrawn", "sigma": 0.5, "lr": 0.01, "steps": 60, "batch_size": None,
        "n_train": 256, "dim": 4,
    }  # fmt: skip


def test_adding_a_sigma_keeps_the_run_ids_of_the_others():
    """Grid and noise lists are not hashed into a run's id, so --resume keeps finished runs of a grown grid."""
    base = {"name": "t", "phases": {"seeds": [0], "options": {"linear": {"sigmas": [1.0, 2.0], "steps": 20}}}}
    grown = json.loads(json.dumps(base))
    grown["phases"]["options"]["linear"]["sigmas"] = [0.5, 1.0, 2.0]
    ids = {s.run_id for s in expand_preset(parse_preset(base))["phases"]}
    assert ids < {s.run_id for s in expand_preset(parse_preset(grown))["phases"]}


def test_linear_runs_match_the_closed_form(tiny_store):
    finals = _finals(tiny_store)
    assert len(finals) == 8
    labels = {(r["noise"], r["sigma"]): r["linear_phase"] for r in finals}
    for noise in ("redrawn", "fixed"):
        assert [labels[(noise, s)] for s in (0.5, 3.0, 12.0, 16.0)] == [
            "decoupled",
            "decay",
            "oscillating",
            "divergent",
        ]
    for r in finals:
        assert r["linear_phase"] == r["predicted_phase"]
        assert r["run_status"] == r["status"] == "completed"  # 60 steps at k = 2.56: growing, not yet overflowing
        if r["linear_phase"] == "decay":
            assert r["tau_niw_ok"] and abs(r["tau_niw"] / r["tau_theory"] - 1) < THEORY_TOLERANCE
        assert "wall_s" not in r  # wall-clock stays beside the records


def test_records_are_tidy_and_deterministic(tiny_store):
    store = ResultStore(tiny_store / "phases")
    result = store.results()[0]
    rows = result.records
    assert sum(r["final"] for r in rows) == 1 and rows[-1]["final"]
    assert 2 <= len(rows) <= TRAJECTORY_POINTS and rows[0]["step"] == 0
    assert all(r["run_id"] == result.run_id and r["part"] == "phases" for r in rows)
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps)
    specs = {s.run_id: s for s in expand_preset(load_preset(TINY))["phases"]}
    assert _dumps(run_phase(specs[result.run_id])) == _dumps(rows)


def test_resume_runs_nothing_again(tiny_store):
    summary = run_study(
        load_preset(TINY).select(["phases"]), "phases", tiny_store, InProcessExecutor(), resume=True, quiet=True
    )
    assert (summary.new, summary.resumed) == (0, 8)


def test_report_is_built_from_records_alone(tiny_store, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import ninr.dynamics.experiment
    import ninr.dynamics.theory.simulate

    def no_runs(*args, **kwargs):
        raise AssertionError("a report must not train or simulate")

    for module, name in [
        (ninr.dynamics.experiment, "run_linear"),
        (ninr.dynamics.experiment, "run_mlp"),
        (ninr.dynamics.theory.simulate, "simulate_linear"),
    ]:
        monkeypatch.setattr(module, name, no_runs)
    report = build_report(tiny_store)
    (section,) = report.sections
    body = section.body
    assert [t.name for t in body.tables] == ["phase_ranges", "linear_runs"]
    assert [f.name for f in body.figures] == ["phases", "trajectories"]
    assert all(f.png.startswith(PNG_MAGIC) for f in body.figures)
    assert any("predicted phase in 8 of 8 runs" in n for n in body.notes)
    paths = write_report(report, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "](figures/phases_phases.png)" in md and (tmp_path / "report" / "figures" / "phases_phases.png").exists()
    assert "| redrawn | 3 | 0.09 | decay |" in md
    assert "| linear | any | predicted | oscillating |" in md
    html = paths["html"].read_text()
    assert 'id="figure-phases-phases"' in html and '<table id="table-linear_runs">' in html
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 2 and all(base64.b64decode(src).startswith(PNG_MAGIC) for src in images)


MLP_OPTIONS = {
    "sigmas": [1.0],
    "noise": ["redrawn", "fixed"],
    "epochs": 2,
    "batch_size": 16,
    "train_examples": 48,
    "probe_size": 32,
    "loss_every": 2,
    "dataset": "synthetic",
    "dataset_kwargs": {"n_train": 64, "n_test": 32, "input_shape": [1, 4, 4], "seed": 0},
}


def test_mlp_runs_on_a_data_subset_with_both_noise_modes():
    before = torch.get_num_threads()
    preset = parse_preset({"name": "t", "phases": {"seeds": [0], "options": {"mlp": MLP_OPTIONS}}})
    specs = expand_phases(preset.study("phases"), "t")
    assert [s.label for s in specs] == ["redrawn sigma=1", "fixed sigma=1"]
    assert specs[0].train.methods[0].params == {"sigma": 1.0} and specs[0].train.dataset == "synthetic"
    runs = [run_phase(s) for s in specs]
    assert torch.get_num_threads() == before  # the pinned thread count is restored
    for spec, rows in zip(specs, runs, strict=True):
        final = rows[-1]
        assert final["model"] == "mlp" and final["noise"] == spec.options["noise"] and final["train_examples"] == 48
        assert final["steps"] == 6 and final["batch_size"] == 16  # 2 epochs x 48 / 16
        assert final["k"] > 0 and math.isfinite(final["test_acc"]) and final["phase"] in ("decoupled", "decay")
        assert [r["step"] for r in rows] == list(range(7))  # the NIW norm at step 0 and after every step
    assert runs[0][-1]["niw_norm"] != runs[1][-1]["niw_norm"]  # fixed per-example noise is a different run
    assert _dumps(run_phase(specs[1])) == _dumps(runs[1])


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"seeds": [0], "options": {"linaer": {}}}, "did you mean 'linear'"),
        ({"seeds": [0], "options": {"linear": {"sigma": [1.0]}}}, "did you mean 'sigmas'"),
        ({"seeds": [0], "options": {"linear": {"sigmas": [-1.0]}}}, "sigmas"),
        ({"seeds": [0], "options": {"linear": {"noise": ["frozen"]}}}, "noise"),
        ({"seeds": [0], "options": {"mlp": {"train_examples": 0}}}, "train_examples"),
        ({"seeds": [0], "train": {"lr": 0.1}, "options": {"linear": {}}}, "not train or hooks"),
        ({"seeds": [0]}, "no model to sweep"),
    ],
)
def test_bad_sections_fail_with_the_key_and_rule(section, match):
    with pytest.raises(ConfigError, match=match):
        expand_preset(parse_preset({"name": "t", "phases": section}))
