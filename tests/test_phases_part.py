"""The ``phases`` study part: the tiny preset's linear grid end to end, the MLP path on synthetic data, run ids of
a grown grid, config errors, and the contents of its report section.

The linear runs are checked against the closed form (ninr.dynamics.theory): each run's label is the predicted phase and
a decaying run's fitted NIW decay time is within 3% of ``1/gamma(k, B)``. What every part keeps (executors, resume,
reports from the stores alone, unknown keys) is tested in tests/test_parts.py.
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
from ninr.studies import PARTS, InProcessExecutor, ResultStore, RunSpec, load_preset, parse_preset, run_study
from ninr.studies.parts.phases import TRAJECTORY_POINTS, LinearRun, MLPRun

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
THEORY_TOLERANCE = 0.03  # the fit of a 60-step noise-free decay against 1/gamma; measured deviations < 1%


def _dumps(records: list[dict]) -> str:
    return json.dumps(records, sort_keys=True)  # NaN-safe equality: NaN != NaN, but its text is equal


def _specs(data: dict) -> list[RunSpec]:
    """The phases runs of a preset document."""
    preset = parse_preset(data)
    return PARTS.get("phases").expand(preset.section("phases"), preset.name)


def _tiny_specs() -> list[RunSpec]:
    """The phases runs of the tiny preset."""
    preset = load_preset(TINY)
    return PARTS.get("phases").expand(preset.section("phases"), preset.name)


def _run(spec: RunSpec) -> list[dict]:
    return PARTS.get("phases").run(spec)


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
    specs = _tiny_specs()
    assert [(s.arch, s.label) for s in specs[:4]] == [
        ("linear", "redrawn sigma=0.5"),
        ("linear", "redrawn sigma=3"),
        ("linear", "redrawn sigma=12"),
        ("linear", "redrawn sigma=16"),
    ]
    assert len(specs) == 8 and len({s.run_id for s in specs}) == 8
    assert specs[0].options == LinearRun(noise="redrawn", sigma=0.5, seed=0, lr=0.01, steps=60, batch_size=None)
    assert specs[0].identity == {
        "options": {
            "noise": "redrawn", "sigma": 0.5, "seed": 0, "lr": 0.01, "steps": 60, "batch_size": None,
            "n_train": 256, "dim": 4,
        },
        "data": {"teacher": "linear", "n_train": 256, "dim": 4, "seed": 0},
    }  # fmt: skip


def test_adding_a_sigma_keeps_the_run_ids_of_the_others():
    """Grid and noise lists are not hashed into a run's id, so --resume keeps finished runs of a grown grid."""
    base = {"name": "t", "phases": {"seeds": [0], "options": {"linear": {"sigmas": [1.0, 2.0], "steps": 20}}}}
    grown = json.loads(json.dumps(base))
    grown["phases"]["options"]["linear"]["sigmas"] = [0.5, 1.0, 2.0]
    ids = {s.run_id for s in _specs(base)}
    assert ids < {s.run_id for s in _specs(grown)}


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
    specs = {s.run_id: s for s in _tiny_specs()}
    assert _dumps(_run(specs[result.run_id])) == _dumps(rows)


def test_report_section_has_the_phase_tables_and_figures(tiny_store, tmp_path):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
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
    specs = _specs({"name": "t", "phases": {"seeds": [0], "options": {"mlp": MLP_OPTIONS}}})
    assert [s.label for s in specs] == ["redrawn sigma=1", "fixed sigma=1"]
    assert all(isinstance(s.options, MLPRun) and s.arch == "mlp" for s in specs)
    assert (specs[0].options.sigma, specs[0].options.dataset, specs[0].options.train_examples) == (1.0, "synthetic", 48)
    # The data set and its subset are the data's identity, not the options'.
    assert specs[0].identity["data"] == {
        "dataset": "synthetic", "dataset_kwargs": MLP_OPTIONS["dataset_kwargs"], "subset": 48,
    }  # fmt: skip
    runs = [_run(s) for s in specs]
    assert torch.get_num_threads() == before  # the pinned thread count is restored
    for spec, rows in zip(specs, runs, strict=True):
        final = rows[-1]
        assert final["model"] == "mlp" and final["noise"] == spec.options.noise and final["train_examples"] == 48
        assert final["steps"] == 6 and final["batch_size"] == 16  # 2 epochs x 48 / 16
        assert final["k"] > 0 and math.isfinite(final["test_acc"]) and final["phase"] in ("decoupled", "decay")
        assert [r["step"] for r in rows] == list(range(7))  # the NIW norm at step 0 and after every step
    assert runs[0][-1]["niw_norm"] != runs[1][-1]["niw_norm"]  # fixed per-example noise is a different run
    assert _dumps(_run(specs[1])) == _dumps(runs[1])


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"seeds": [0], "options": {"linaer": {}}}, "did you mean 'linear'"),
        ({"seeds": [0], "options": {"linear": {"sigma": [1.0]}}}, "did you mean 'sigmas'"),
        ({"seeds": [0], "options": {"linear": {"sigmas": [-1.0]}}}, "sigmas"),
        ({"seeds": [0], "options": {"linear": {"noise": ["frozen"]}}}, "noise"),
        ({"seeds": [0], "options": {"linear": {"sigmas": [1.0, 1.0]}}}, "free of repeated sigmas"),
        ({"seeds": [0], "options": {"mlp": {"train_examples": 0}}}, "train_examples"),
        ({"seeds": [0], "options": {"mlp": {"sigmas": [1.0], "epochs": 0}}}, r"\[phases\.options\.mlp\]: `epochs`"),
        ({"seeds": [0]}, "no model to sweep"),
    ],
)
def test_bad_sections_fail_with_the_key_and_rule(section, match):
    with pytest.raises(ConfigError, match=match):
        _specs({"name": "t", "phases": section})


def test_a_subset_larger_than_the_training_set_is_refused():
    options = {**MLP_OPTIONS, "train_examples": 65, "noise": ["fixed"]}
    (spec,) = _specs({"name": "t", "phases": {"seeds": [0], "options": {"mlp": options}}})
    with pytest.raises(ConfigError, match="`train_examples` must be at most the 64 training images"):
        _run(spec)
