"""The ``phases`` study part: the tiny preset's linear grid end to end, the MLP path on synthetic data, the two-layer
toy's sweep (its phases, measured boundaries and report panel), run ids of a grown grid, config errors, and the contents
of its report section.

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
from ninr.studies.parts.phases import TRAJECTORY_POINTS, Linear2Run, LinearRun, MLPRun

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


# ----------------------------------------------------------------------------- the two-layer toy (linear2)

# eta = 0.01, |v|^2 + |theta|^2 = 1: k0 = 1e-4 (decoupled), 0.09 (decay), 2.89 (catapult), 6.25 (divergent)
LINEAR2 = {"sigmas": [0.1, 3.0, 17.0, 25.0], "noise": ["redrawn", "fixed"], "steps": 60, "boundary_seeds": 3}
LINEAR2_TOLERANCE = 0.05  # measured boundaries against the predicted 2 and 4 (the goal; tests/test_two_layer.py)


@pytest.fixture(scope="module")
def linear2_store(tmp_path_factory) -> Path:
    """A linear2 sweep (one sigma per phase, both noise modes) run in-process into a fresh results directory."""
    out = tmp_path_factory.mktemp("phases-linear2")
    preset = parse_preset({"name": "l2", "phases": {"seeds": [0], "options": {"linear2": LINEAR2}}})
    summary = run_study(preset, "phases", out, InProcessExecutor(), quiet=True)
    assert (summary.total, summary.new) == (8, 8)
    return out


def test_linear2_expands_with_its_settings_in_the_run_id():
    specs = _specs({"name": "t", "phases": {"seeds": [0], "options": {"linear2": LINEAR2}}})
    assert [(s.arch, s.label) for s in specs[:2]] == [("linear2", "redrawn sigma=0.1"), ("linear2", "redrawn sigma=3")]
    assert all(isinstance(s.options, Linear2Run) for s in specs) and len({s.run_id for s in specs}) == 8
    assert specs[0].identity == {
        "options": {
            "noise": "redrawn", "sigma": 0.1, "seed": 0, "lr": 0.01, "steps": 60, "batch_size": None, "phi0": 0.01,
            "norm_sq": 1.0, "niw_share": 0.5, "label_noise": 0.0, "teacher": "zero", "boundary_seeds": 3,
            "n_train": 256, "width": 8, "dim": 4,
        },
        "data": {"teacher": "two-layer zero", "n_train": 256, "dim": 4, "width": 8, "label_noise": 0.0, "seed": 0},
    }  # fmt: skip


def test_linear2_runs_are_in_their_predicted_phases(linear2_store):
    finals = [r for r in _finals(linear2_store) if r["model"] == "linear2"]
    assert len(finals) == 8
    for noise in ("redrawn", "fixed"):
        mine = sorted((r for r in finals if r["noise"] == noise), key=lambda r: r["sigma"])
        assert [r["rule_phase"] for r in mine] == ["decoupled", "decay", "catapult", "divergent"]
        assert all(r["rule_phase"] == r["predicted_phase"] == r["map_phase"] for r in mine)
        catapult = mine[2]
        assert catapult["peak_growth"] > 10 and catapult["k_min"] < 2 < catapult["k"] and catapult["final_ratio"] < 1
        assert mine[3]["status"] == "diverged" and mine[3]["peak_growth"] > 1e12
    for r in finals:
        assert (r["predicted_decay_catapult"], r["predicted_catapult_divergent"]) == (2.0, 4.0)
        if r["noise"] == "redrawn":
            assert abs(r["measured_decay_catapult"] / 2 - 1) < LINEAR2_TOLERANCE
            assert abs(r["measured_catapult_divergent"] / 4 - 1) < LINEAR2_TOLERANCE
        else:  # measured in k0 with redrawn noise only: a fixed table's power differs by seed
            assert math.isnan(r["measured_decay_catapult"]) and math.isnan(r["measured_catapult_divergent"])


def test_linear2_records_thin_the_top_mode_projection(linear2_store):
    store = ResultStore(linear2_store / "phases")
    specs = {s.run_id: s for s in _specs({"name": "l2", "phases": {"seeds": [0], "options": {"linear2": LINEAR2}}})}
    for result in store.results():
        rows = result.records
        assert 2 <= len(rows) <= TRAJECTORY_POINTS and rows[0]["step"] == 0 and rows[-1]["final"]
        assert rows[0]["niw_norm"] == pytest.approx(0.01 / math.sqrt(0.5))  # |theta . v / |v|| = phi0 / |v|
    run_id = store.results()[0].run_id
    assert _dumps(_run(specs[run_id])) == _dumps(store.results()[0].records)


def test_linear2_report_section(linear2_store, tmp_path):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    (section,) = build_report(linear2_store).sections
    body = section.body
    assert [t.name for t in body.tables] == ["phase_ranges", "linear2_runs"]
    assert [f.name for f in body.figures] == ["phases", "trajectories"]
    assert all(f.png.startswith(PNG_MAGIC) for f in body.figures)
    assert any("Two-layer toy: the rule's label equals the predicted phase in 8 of 8 runs" in n for n in body.notes)
    md = write_report(build_report(linear2_store), tmp_path / "report")["markdown"].read_text()
    assert "| linear2 | any | predicted | catapult | 14.1 | 20 |" in md
    assert "| redrawn | 17 | 2.89 | 0.0289 | catapult |" in md


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"phi0": 0.6}, r"\[phases\.options\.linear2\]: `phi0` must be non-zero and at most"),
        ({"teacher": "teach"}, "teacher"),
        ({"boundary_seeds": -1}, "boundary_seeds"),
        ({"norm_sq": 0.0}, "norm_sq"),
    ],
)
def test_bad_linear2_sections_fail_with_the_key_and_rule(options, match):
    with pytest.raises(ConfigError, match=match):
        _specs({"name": "t", "phases": {"seeds": [0], "options": {"linear2": options}}})
