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

from ninr.cli import main
from ninr.dynamics.phases import PHASE_PRECEDENCE
from ninr.dynamics.points import k_after_transient
from ninr.errors import ConfigError
from ninr.report import build_report, write_report
from ninr.report import phases as phases_report
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
        assert final["methods"] == "in-ninr" and all(r["where"] == "input" for r in rows)
        assert set(final["phase_nodes"]) == {"fc1"} and final["phase_node"] == final["curvature_node"] == "fc1"
    assert runs[0][-1]["niw_norm"] != runs[1][-1]["niw_norm"]  # fixed per-example noise is a different run
    assert _dumps(_run(specs[1])) == _dumps(runs[1])


def test_full_ninr_puts_a_node_on_every_layer_and_fits_the_node_that_decided():
    """``where = "all"``: a node on each of fc1, fc2, fc3 and out; the run's phase is the one its deciding node
    takes by the classifier's precedence, and the NIW decay fit and trajectory are that node's."""
    options = {**MLP_OPTIONS, "noise": ["redrawn"], "where": "all"}
    (spec,) = _specs({"name": "t", "phases": {"seeds": [0], "options": {"mlp": options}}})
    (plain,) = _specs({"name": "t", "phases": {"seeds": [0], "options": {"mlp": {**options, "where": "input"}}}})
    assert spec.options.where == "all" and spec.identity["options"]["where"] == "all"
    assert spec.run_id != plain.run_id  # where is in the run id
    assert spec.label == "full-ninr redrawn sigma=1" and plain.label == "redrawn sigma=1"
    rows = _run(spec)
    final = rows[-1]
    nodes = {"fc1", "fc2", "fc3", "out"}
    assert final["methods"] == "full-ninr" and final["where"] == "all"
    assert all(r["where"] == "all" and r["methods"] == "full-ninr" for r in rows)  # every row, not only the final
    assert set(final["phase_nodes"]) == nodes and set(final["curvatures"]) == nodes
    assert final["curvature"] == max(final["curvatures"].values())
    assert final["curvatures"][final["curvature_node"]] == final["curvature"]
    assert final["k"] == pytest.approx(final["lr"] * final["sigma"] ** 2 * final["curvature"], rel=1e-12)
    node = final["phase_node"]
    assert node in nodes and final["niw_node"] == node and final["phase"] == final["phase_nodes"][node]
    rank = {p: i for i, p in enumerate(PHASE_PRECEDENCE)}
    assert all(rank[final["phase"]] <= rank[p] for p in final["phase_nodes"].values())
    assert 0 < final["k_after"] <= final["k_max"] and math.isfinite(final["k_max"])
    assert rows[0]["niw_norm"] == final["niw_norm_initial"] and rows[-1]["niw_norm"] == final["niw_norm_final"]


def test_k_after_the_transient_is_the_median_of_the_second_half_of_one_nodes_measurements():
    rows = [{"node": "a", "k": k} for k in (5.0, 1.0, 2.0, 4.0)] + [{"node": "b", "k": 100.0}] * 3
    assert k_after_transient(rows, "a") == 3.0  # median of 2 and 4; a's first half and node b left out
    assert k_after_transient([*rows, {"node": "a", "k": 3.5}], "a") == 3.5  # 5 values: the last 3
    assert math.isnan(k_after_transient(rows, "c"))


def test_where_is_an_mlp_option_only(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["phases", "--model", "linear", "--where", "all", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and not (tmp_path / "o").exists()
    assert "`--where` applies to --model mlp only, got --model linear" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("section", "match"),
    [
        (
            {"seeds": [0], "options": {"mlp": {"where": "middle"}}},
            r"\[phases\.options\.mlp\]\.where` must be one of \['input', 'all'\]",
        ),
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


# ----------------------------------------------------------------------------- the MLP's k bands in the report

INF = math.inf
# (sigma, [(phase, k_max) per seed]) of in-NINR with redrawn noise; sigma 2's third seed is outvoted
K_GRID = [
    (1.0, [("decay", 0.1), ("decay", 0.12), ("decay", 0.11)]),
    (2.0, [("decay", 0.4), ("decay", 0.5), ("catapult", 2.5)]),
    (4.0, [("catapult", 2.6), ("catapult", 3.1), ("catapult", 2.8)]),
    (8.0, [("divergent", 5.0), ("divergent", INF), ("divergent", 6.0)]),
]


def _final(sigma: float, seed: int, phase: str, k_max: float, *, where="input", noise="redrawn", node="fc1") -> dict:
    """A final MLP record as the part writes it, with the fields the report reads."""
    return {
        "model": "mlp", "where": where, "noise": noise, "sigma": sigma, "seed": seed, "lr": 0.05, "k": 1e-3 * sigma**2,
        "k_max": k_max, "k_after": k_max / 2, "phase": phase, "phase_node": node, "test_acc": 0.8, "steps": 100,
        "batch_size": 64, "status": "completed", "final": True, "run_id": f"{where}-{noise}-{sigma}-{seed}",
    }  # fmt: skip


def _k_finals() -> list[dict]:
    finals = [_final(s, seed, p, k) for s, runs in K_GRID for seed, (p, k) in enumerate(runs)]
    finals.append(_final(1.0, 0, "decay", 9.0, noise="fixed"))  # another noise mode: not in the redrawn bands
    finals += [_final(s, 0, "catapult", 10 * s, where="all", node="out") for s in (1.0, 2.0)]
    return finals


def test_phase_bands_give_each_measured_bands_k_max_range_over_all_its_runs():
    bands = phases_report.phase_bands([r for r in _k_finals() if r["where"] == "input"], "redrawn")
    assert [(p, k_lo, k_hi) for p, _, _, k_lo, k_hi in bands] == [
        ("decay", 0.1, 2.5),  # sigma 1 and 2, with sigma 2's outvoted catapult seed
        ("catapult", 2.6, 3.1),
        ("divergent", 5.0, INF),  # a run with a non-finite k_max
    ]
    assert [(lo, hi) for _, lo, hi, _, _ in bands] == [
        pytest.approx(e) for e in [(1 / 1.5, 8**0.5), (8**0.5, 32**0.5), (32**0.5, 12.0)]
    ]  # edges at the geometric midpoints of the grid, 1.5x beyond its ends
    assert phases_report.k_text(5.0, INF) == "k_max >= 5" and phases_report.k_text(0.1, 2.5) == "k_max 0.1-2.5"
    # two digits each; ends that round alike are one number; no exponent between 0.001 and 9999
    assert phases_report.k_text(13.2, 13.4) == "k_max 13" and phases_report.k_text(30.0, 101.0) == "k_max 30-100"


def test_phase_ranges_give_a_tie_between_seeds_to_the_lowest_seed_in_any_record_order():
    for low, high in [("decay", "catapult"), ("catapult", "decay")]:
        runs = [_final(1.0, s, "decay", 0.1) for s in (0, 1)] + [_final(4.0, s, "divergent", 9.0) for s in (0, 1)]
        runs += [_final(2.0, 1, high, 2.0), _final(2.0, 0, low, 2.0)]  # a tie at sigma 2
        expected = ["decay", "divergent"] if low == "decay" else ["decay", "catapult", "divergent"]
        for order in (runs, runs[::-1]):
            assert [p for p, _, _ in phases_report.phase_ranges(order)] == expected, (low, high)


def test_ranges_and_runs_tables_carry_k_max_and_keep_in_and_full_ninr_apart():
    finals = _k_finals()
    ranges = phases_report.ranges_table(finals, {})
    measured = {(d["model"], d["noise"], d["phase"]): (d["k_max_lo"], d["k_max_hi"]) for d in ranges.data}
    assert measured[("mlp", "redrawn", "decay")] == (0.1, 2.5)
    assert measured[("mlp", "fixed", "decay")] == (9.0, 9.0)
    assert measured[("mlp-full", "redrawn", "catapult")] == (10.0, 20.0)
    assert "k max from" in ranges.headers and "k max to" in ranges.headers
    inner = phases_report.runs_table(finals, "mlp")
    full = phases_report.runs_table(finals, "mlp-full")
    assert (inner.name, full.name) == ("mlp_runs", "mlp_full_runs")
    assert {d["where"] for d in inner.data} == {"input"} and {d["where"] for d in full.data} == {"all"}
    column = {h: i for i, h in enumerate(inner.headers)}
    row = next(c for c in inner.cells if c[:2] == ("redrawn", "2"))
    assert row[column["k max"]] == "0.4-2.5" and row[column["k after"]] == "0.2-1.25"
    assert row[column["phase"]] == "decay 2, catapult 1"
    assert [c[column["node"]] for c in full.cells] == ["out", "out"]


def test_phase_figure_labels_each_band_with_its_k_max_range(monkeypatch):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    drawn = []
    monkeypatch.setattr(phases_report, "to_png", lambda fig: drawn.append(fig) or PNG_MAGIC)
    phases_report.phase_figure(_k_finals(), {})
    (fig,) = drawn
    inner, full = fig.axes[:2]
    assert "in-NINR" in inner.get_title() and "full-NINR" in full.get_title()
    texts = [t.get_text() for t in inner.texts]
    for phase, k in [("decay", "k_max 0.1-2.5"), ("catapult", "k_max 2.6-3.1"), ("divergent", "k_max >= 5")]:
        assert sum(t.startswith(phase) and t.endswith(k) for t in texts) == 1, (phase, texts)
    assert any(t.startswith("catapult") and t.endswith("k_max 10-20") for t in (t.get_text() for t in full.texts))


# A sqrt(2) grid from 0.125 to 1024 with the band widths an in-NINR sweep measures (docs/dynamics.md section 8):
# wide bands beside bands two or three grid points wide, whose two-line labels are wider than the bands.
LAYOUT_GRID = [2 ** (i / 2) for i in range(-6, 21)]


def _layout_phase(sigma: float, noise: str) -> str:
    if sigma < 0.3:
        return "decoupled"
    if noise == "fixed":
        return "decay" if sigma < 35 else "catapult" if sigma < 450 else "divergent"
    return "decay" if sigma < 35 or 76 < sigma < 152 else "catapult" if sigma < 560 else "divergent"


def test_phase_figure_band_labels_stay_inside_their_bands_and_fixed_noise_has_a_strip(monkeypatch):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    drawn, to_png = [], phases_report.to_png
    monkeypatch.setattr(phases_report, "to_png", lambda fig: drawn.append(fig) or to_png(fig))
    grid = [(noise, s) for noise in phases_report.NOISES for s in LAYOUT_GRID]
    finals = [_final(s, 0, _layout_phase(s, noise), 1e-3 * s**1.5, noise=noise) for noise, s in grid]
    phases_report.phase_figure(finals, {})
    (fig,) = drawn
    renderer = fig.canvas.get_renderer()  # to_png drew it with its constrained layout: the saved figure's extents
    ax = fig.axes[0]
    redrawn = phases_report.phase_ranges(finals, "redrawn")
    labels = [t for t in ax.texts if t.get_text().split(",")[0].split("\n")[0] in phases_report.PHASE_COLOURS]
    assert len(labels) == len(redrawn) == 6
    boxes = [t.get_window_extent(renderer) for t in labels]
    for box, (phase, lo, hi) in zip(boxes, redrawn, strict=True):
        left, right = (ax.transData.transform((x, 1.0))[0] for x in (lo, hi))
        assert left <= box.x0 and box.x1 <= right, (phase, lo, hi, box)  # inside its band: no overlap either
    strip = sorted((p for p in ax.patches if p.get_height() == pytest.approx(phases_report.STRIP_HEIGHT)),
                   key=lambda p: p.get_x())  # fmt: skip
    fixed = phases_report.phase_ranges(finals, "fixed")
    rgb = [tuple(int(phases_report.PHASE_COLOURS[p][i : i + 2], 16) / 255 for i in (1, 3, 5)) for p, _, _ in fixed]
    assert [tuple(p.get_facecolor()[:3]) for p in strip] == [pytest.approx(c) for c in rgb]
    assert [p.get_x() for p in strip] == pytest.approx([lo for _, lo, _ in fixed]) and len(fixed) == 4
    assert any("strip: fixed noise" in t.get_text() for t in ax.texts)


def test_trajectories_go_to_the_panel_of_their_runs_final_record(monkeypatch):
    """A run's NIW-norm rows go to its final record's panel, also in a store whose other rows lack ``where``."""
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    drawn = []
    monkeypatch.setattr(phases_report, "to_png", lambda fig: drawn.append(fig) or PNG_MAGIC)
    finals = [{**r, "step": 2, "niw_norm": 0.5} for r in _k_finals()]
    keep = ("run_id", "model", "seed", "noise")
    rows = [
        {**{k: r[k] for k in keep}, "step": step, "niw_norm": 1.0, "final": False} for r in finals for step in (0, 1)
    ]
    phases_report.trajectory_figure(rows + finals)
    inner, full = drawn[0].axes[:2]
    assert "in-NINR" in inner.get_title() and "full-NINR" in full.get_title()
    assert len(inner.lines) == 5  # seed 0: four redrawn sigmas and the fixed-noise run ...
    assert len(full.lines) == 2  # ... and the two full-NINR runs, each with all of its rows
    assert all(len(line.get_xdata()) == 3 for line in inner.lines + full.lines)


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
