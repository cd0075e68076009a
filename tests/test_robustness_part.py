"""The robustness run hook and its report section, end to end on configs/tiny-robustness.toml.

The tiny preset's grid (synthetic data, FC and CNN x {None, in-NINR} x 2 seeds, 5 SGD steps) with
``hooks = ["robustness"]``: after each run, its model is evaluated on all 64 test images under Gaussian
noise and three corruptions. Oracles: the hook's clean accuracy on the whole test set is the run's final
test accuracy; training is unchanged by the hook; the table's means and stds are those of the records. The hook's
records through every executor and through resume are tested with the table part in tests/test_parts.py;
with its ``certify`` setting (randomized smoothing), through the part harness here (tests/part_harness.py).
"""

from __future__ import annotations

import csv
import itertools
import math
import re
import statistics
import tomllib
from pathlib import Path

import pytest

import part_harness as harness
from ninr.cli import main
from ninr.data.base import load_dataset
from ninr.errors import ConfigError
from ninr.report import build_report
from ninr.report.robustness import robustness_table, run_metrics
from ninr.rng import derive_seed
from ninr.robustness import CORRUPTIONS, SUITES, CertifySpec, Suite, evaluate
from ninr.studies import PARTS, ResultStore, RunSpec, load_preset, parse_preset
from ninr.studies.hooks.robustness import MNIST_C, NOISE_STD_GRID, RobustnessHook, RobustnessSettings
from ninr.studies.parts.table import TrainRun
from ninr.train import train

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "tiny-robustness.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_TEST = 64
CONDITIONS = 1 + 3 + 3 * 5  # clean, 3 noise stds, 3 corruptions x 5 severities


pytestmark = pytest.mark.usefixtures("one_thread")


def _expand(preset) -> list[RunSpec]:
    return PARTS.get("table").expand(preset.section("table"), preset.name)


@pytest.fixture(scope="module")
def specs() -> list[RunSpec]:
    return _expand(load_preset(PRESET))


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """``ninr sweep`` of the preset, in-process: the results directory (no report yet)."""
    out = tmp_path_factory.mktemp("sweep") / "res"
    assert main(["sweep", str(PRESET), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def reference(swept) -> dict[str, list[dict]]:
    return {r.run_id: r.records for r in ResultStore(swept / "table").results()}


def _hook_rows(records: list[dict], metric: str | None = "accuracy") -> list[dict]:
    """The hook's records of ``metric`` (``None``: every metric: accuracy, ece, nll, brier)."""
    return [r for r in records if r.get("kind") == "robustness" and metric in (None, r.get("metric"))]


def _train_rows(records: list[dict]) -> list[dict]:
    return [r for r in records if "kind" not in r]


# ---------------------------------------------------------------- settings


def test_default_settings_are_the_fine_noise_grid_and_the_mnist_c_set():
    settings = RobustnessSettings.from_options({})
    assert settings.stds == NOISE_STD_GRID and len(NOISE_STD_GRID) == 12
    assert NOISE_STD_GRID[0] == 0.05 and NOISE_STD_GRID[-1] == 0.6
    assert all(math.isclose(b - a, 0.05) for a, b in itertools.pairwise(NOISE_STD_GRID))
    assert settings.corruptions == MNIST_C and len(MNIST_C) == 15 and set(MNIST_C) <= set(CORRUPTIONS.names())
    assert settings.severities == (1, 2, 3, 4, 5) and settings.limit is None
    assert RobustnessSettings.from_options({"robustness": {"corruptions": "mnist-c"}}).corruptions == MNIST_C
    suite = RobustnessSettings.from_options({"robustness": {"stds": [], "corruptions": ["fog"]}}).suite()
    assert suite.curves == () and suite.corruptions == ("fog",)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"limt": 5}, "did you mean 'limit'"),
        ({"limit": 0}, "`limit` must be"),
        ({"stds": [0.0, 0.1]}, "`stds` must be"),
        ({"stds": [0.1, 0.1]}, "without repeats"),
        ({"stds": 0.1}, "`stds` must be a list"),
        ({"corruptions": ["fgo"]}, "did you mean 'fog'"),
        ({"severities": [6]}, "severit"),
    ],
)
def test_bad_settings_fail_when_the_preset_loads(settings, match):
    doc = {"table": {"seeds": [0], "hooks": ["robustness"], "train": {"dataset": "synthetic"}}}
    doc["table"]["options"] = {"robustness": settings}
    with pytest.raises(ConfigError, match=match) as exc:
        _expand(parse_preset(doc, name="bad"))
    assert "[table.options.robustness]" in str(exc.value)


# ---------------------------------------------------------------- records


def test_hook_records_are_tidy_and_clean_accuracy_is_the_final_test_accuracy(specs, reference):
    assert set(reference) == {s.run_id for s in specs}
    for spec in specs:
        records = reference[spec.run_id]
        train_rows, rows = _train_rows(records), _hook_rows(records)
        assert [r["final"] for r in train_rows] == [False, True] and not any(r["final"] for r in rows)
        final = train_rows[-1]
        every = _hook_rows(records, metric=None)  # accuracy, then ece, nll and brier of each condition
        assert len(rows) == CONDITIONS and len(every) == 4 * CONDITIONS and len(train_rows) + len(every) == len(records)
        assert {(r["condition"], r["severity"], r["intensity"]) for r in rows} == {
            ("clean", None, None),
            *(("gaussian-noise", None, s) for s in (0.1, 0.3, 0.5)),
            *((c, s, None) for c in ("impulse-noise", "rotate", "fog") for s in range(1, 6)),
        }
        for r in rows:
            assert r["run_id"] == spec.run_id and r["arch"] == spec.arch and r["label"] == spec.label
            assert r["seed"] == spec.seed and r["n"] == N_TEST and r["noise"] == "off" and 0.0 <= r["value"] <= 1.0
            assert (r["epoch"], r["step"], r["run_status"]) == (final["epoch"], final["step"], final["run_status"])
        # Oracle: the whole test set in eval mode is exactly what training evaluated last.
        (clean,) = [r for r in rows if r["condition"] == "clean"]
        assert clean["value"] == final["test_acc"]


def test_hook_does_not_change_training_and_runs_are_deterministic(specs, reference):
    table = PARTS.get("table")
    spec = specs[6]  # CNN | in-NINR | seed 0: trained one by one in the sweep too (convolutions do not stack)
    assert spec.options.hooks == ("robustness",)
    assert table.run(spec) == reference[spec.run_id]
    plain = RunSpec(spec.part, spec.study, spec.arch, spec.label, spec.seed, TrainRun(spec.options.train), spec.phase)
    assert plain.run_id != spec.run_id  # the hook and its settings are part of what a run computes
    strip = lambda rows: [{k: v for k, v in r.items() if k != "run_id"} for r in rows]  # noqa: E731
    assert strip(table.run(plain)) == strip(_train_rows(reference[spec.run_id]))


# ---------------------------------------------------------------- report


def _planted(arch: str, label: str, seed: int, clean: float, noisy: float, c1: float, c2: float) -> list[dict]:
    base = {"kind": "robustness", "run_id": f"{arch}-{label}-{seed}", "arch": arch, "label": label, "seed": seed}
    base |= {"metric": "accuracy", "noise": "off", "n": 10, "final": False}
    return [
        {**base, "condition": "clean", "severity": None, "intensity": None, "value": clean},
        {**base, "condition": "gaussian-noise", "severity": None, "intensity": 0.3, "value": noisy},
        {**base, "condition": "c1", "severity": 1, "intensity": None, "value": c1},
        {**base, "condition": "c2", "severity": 1, "intensity": None, "value": c2},
    ]


def test_table_means_and_stds_are_those_of_the_records():
    rows = _planted("FC", "A", 0, 0.9, 0.7, 0.5, 0.3) + _planted("FC", "A", 1, 0.8, 0.6, 0.4, 0.2)
    assert run_metrics(rows[:4]) == pytest.approx(
        {"clean": 0.9, "std=0.3": 0.7, "noise mean": 0.7, "severity=1": 0.4, "corruption mean": 0.4}
    )
    table = robustness_table(rows)
    assert table.headers[3:] == (
        "clean (%)",
        "noise std 0.3 (%)",
        "noise mean (%)",
        "corruption mean (%)",
    )
    sd = statistics.stdev([90.0, 80.0])
    assert table.cells == (("FC", "A", "2", *(f"{m:.1f} ± {sd:.1f}" for m in (85.0, 65.0, 65.0, 35.0))),)
    assert table.data[0]["corruption mean mean"] == pytest.approx(35.0)


def test_report_has_the_robustness_section_after_the_table(swept):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    assert main(["report", str(swept)]) == 0
    out = swept / "report"
    md = (out / "report.md").read_text()
    assert "## Clean accuracy compared with the poster (`table`)" in md
    assert "## Robustness to input corruption (`table-robustness`)" in md and md.count("| runs | 8 of 8 |") == 2
    figures = ["noise", "severity", "corruptions_FC", "corruptions_CNN", "reliability"]
    for name in figures:
        png = out / "figures" / f"table-robustness_robustness_{name}.png"
        assert f"(figures/{png.name})" in md and png.read_bytes().startswith(PNG_MAGIC)
    assert "Test accuracy under Gaussian input noise, mean ± 1 std over seeds" in md
    html = (out / "report.html").read_text()
    assert 'id="figure-table-robustness-robustness_noise"' in html and '<table id="table-robustness">' in html
    assert len(re.findall(r"<img\b", html)) == 2 + len(figures)
    assert "kind" in (out / "records" / "table.csv").read_text().splitlines()[0]

    # The table's numbers are the mean and sample std over seeds of the records' values.
    hook_rows = _hook_rows(ResultStore(swept / "table").records())
    with (out / "tables" / "table-robustness_robustness.csv").open() as f:
        table = {(row["arch"], row["method"]): row for row in csv.DictReader(f)}
    assert len(table) == 4
    for (arch, label), row in table.items():
        for condition, intensity, column in (("clean", None, "clean"), ("gaussian-noise", 0.3, "noise std 0.3")):
            values = [
                100 * r["value"]
                for r in hook_rows
                if (r["arch"], r["label"], r["condition"], r["intensity"]) == (arch, label, condition, intensity)
            ]
            assert len(values) == 2
            assert float(row[f"{column} mean"]) == pytest.approx(statistics.mean(values))
            assert float(row[f"{column} std"]) == pytest.approx(statistics.stdev(values))


def test_repository_presets_turn_the_hook_on_with_their_budgets():
    quick = load_preset(ROOT / "configs" / "quick.toml").section("table")
    paper = load_preset(ROOT / "configs" / "paper.toml").section("table")
    assert "robustness" in quick.hooks and "robustness" in paper.hooks
    q, p = (RobustnessSettings.from_options(s.options) for s in (quick, paper))
    assert q.limit == 500 and len(q.corruptions) == 4 and set(q.corruptions) <= set(MNIST_C)
    assert p.limit is None and p.corruptions == MNIST_C
    assert q.stds == p.stds == NOISE_STD_GRID and q.severities == p.severities == (1, 2, 3, 4, 5)


def test_progress_line_reads_the_final_epoch_row_not_the_last_hook_row(swept):
    from ninr.studies.progress import describe_result

    result = ResultStore(swept / "table").results()[0]
    assert result.records[-1]["kind"] == "robustness"
    final = next(r for r in result.records if r["final"])
    assert f"{final['run_status']} test_acc {final['test_acc']:.4f}" in describe_result(result)


# ---------------------------------------------------------------- certification (the `certify` setting)

# tiny.toml's grid (FC and CNN x {None, in-NINR} x 2 seeds, 5 SGD steps on synthetic data) with the hook certifying
# the first 12 of the 64 test images at two smoothing sigmas, with few samples so the whole study takes seconds.
CERTIFY = {"sigmas": [0.25, 0.5], "radii": [0.0, 0.1, 0.3, 0.6], "n0": 8, "n": 64, "alpha": 0.01, "limit": 12}
CERTIFY_SECTION = {
    **tomllib.loads((ROOT / "configs" / "tiny.toml").read_text())["table"],
    "hooks": ["robustness"],
    "options": {"robustness": {"stds": [0.3], "corruptions": [], "certify": CERTIFY}},
}


def _section(robustness: dict | None) -> dict:
    options = {} if robustness is None else {"robustness": robustness}
    return {**CERTIFY_SECTION, "options": options}


def _ids(section: dict) -> list[str]:
    return [s.run_id for s in _expand(parse_preset({"table": section}, name="ids"))]


def test_certify_setting_is_the_certify_suite_or_a_table_and_absent_by_default():
    assert RobustnessSettings.from_options({}).certify is None
    assert RobustnessSettings.from_options({"robustness": {}}).suite().certify is None
    on = RobustnessSettings.from_options({"robustness": {"certify": True}})
    assert on.certify == SUITES.get("certify")().certify == CertifySpec()
    table = RobustnessSettings.from_options({"robustness": {"certify": CERTIFY}}).suite().certify
    assert table == CertifySpec(sigmas=(0.25, 0.5), radii=(0.0, 0.1, 0.3, 0.6), n0=8, n=64, alpha=0.01, examples=12)
    one = RobustnessSettings.from_options({"robustness": {"certify": {"sigma": 0.5}}}).certify
    assert one == CertifySpec(sigmas=(0.5,))


@pytest.mark.parametrize(
    ("certify", "match"),
    [
        (False, "`certify` must be true or a table"),
        ("yes", "`certify` must be true or a table"),
        ({"sigam": 0.25}, "unknown key 'sigam' in `certify`; did you mean 'sigma'"),
        ({"sigma": 0.0}, r"`certify.sigma` must be a finite number > 0, got 0.0"),
        ({"sigmas": 0.25}, r"`certify.sigmas` must be a list, got 0.25"),
        ({"sigmas": []}, r"`certify.sigmas` must be a non-empty list, got \[\]"),
        ({"sigma": 0.25, "sigmas": [0.5]}, "`sigma` or `sigmas`, not both"),
        ({"radii": [0.5, -0.1]}, r"`certify.radii` must be a finite number >= 0, got -0.1"),
        ({"radii": [0.5, 0.5]}, r"`certify.radii` must be a list without repeats"),
        ({"n0": 0}, r"`certify.n0` must be an integer >= 1, got 0"),
        ({"n": 2.5}, r"`certify.n` must be an integer >= 1, got 2.5"),
        ({"alpha": 1.0}, r"`certify.alpha` must be a number in \(0, 1\), got 1.0"),
        ({"alpha": True}, r"`certify.alpha` must be a number in \(0, 1\), got True"),
        ({"limit": 0}, r"`certify.limit` must be an integer >= 1, got 0"),
    ],
)
def test_bad_certify_settings_fail_when_the_preset_loads(certify, match):
    with pytest.raises(ConfigError, match=match) as exc:
        _ids(_section({"certify": certify}))
    assert "[table.options.robustness]" in str(exc.value)


def test_certify_changes_the_run_ids_only_with_the_records():
    # Every run of the section carries the hook, so certifying changes every run's records, hence every id; a
    # section that does not ask for it keeps the ids it had (the key is absent, not false), and runs that share
    # no setting with the change (another part's section) keep theirs.
    plain, certified = _ids(_section({"stds": [0.3], "corruptions": []})), _ids(CERTIFY_SECTION)
    assert len(plain) == len(certified) == 8 and not set(plain) & set(certified)
    other_sigma = _ids(_section({"stds": [0.3], "corruptions": [], "certify": {**CERTIFY, "sigmas": [0.25]}}))
    assert not set(other_sigma) & set(certified) and not set(other_sigma) & set(plain)
    train_section = {k: v for k, v in CERTIFY_SECTION.items() if k not in ("hooks", "options")}
    preset = {"table": CERTIFY_SECTION, "train": train_section}
    train_ids = [s.run_id for s in PARTS.get("train").expand(parse_preset(preset, name="x").section("train"), "x")]
    alone = PARTS.get("train").expand(parse_preset({"train": train_section}, name="x").section("train"), "x")
    assert train_ids == [s.run_id for s in alone]


@pytest.fixture(scope="module")
def certified(tmp_path_factory) -> harness.Study:
    """The certifying section run in-process (the part harness's reference records)."""
    return harness.run_reference("table", CERTIFY_SECTION, tmp_path_factory.mktemp("certify"))


def test_certify_records_are_tidy_and_bounded(certified):
    max_radius = {s: s * statistics.NormalDist().inv_cdf(CERTIFY["alpha"] ** (1 / CERTIFY["n"])) for s in (0.25, 0.5)}
    for spec in certified.specs:
        records = certified.store.read(spec.run_id).records
        final = [r for r in records if r.get("final")][-1]
        rows = [r for r in records if r.get("condition") == "certify"]
        assert len(rows) == 2 * (len(CERTIFY["radii"]) + 2)  # per sigma: each radius, abstain rate, average radius
        for r in rows:
            assert (r["kind"], r["family"], r["noise"], r["n"], r["draws"]) == ("robustness", "certify", "off", 12, 64)
            assert (r["n0"], r["alpha"], r["run_id"], r["seed"]) == (8, 0.01, spec.run_id, spec.seed)
            assert (r["epoch"], r["step"], r["final"]) == (final["epoch"], final["step"], False)
        for sigma in (0.25, 0.5):
            mine = {(r["metric"], r["epsilon"]): r["value"] for r in rows if r["intensity"] == sigma}
            curve = [mine[("certified-accuracy", radius)] for radius in CERTIFY["radii"]]
            acr, abstain = mine[("average-radius", None)], mine[("abstain-rate", None)]
            # Certified accuracy is a fraction of 12 images, falls with the radius, leaves room for the abstained
            # images, and bounds the average certified radius from below at every radius (radius >= r on that
            # fraction); no certificate exceeds sigma Phi^-1(alpha^(1/n)), the radius of k = n.
            assert all(math.isclose(12 * v, round(12 * v)) for v in [*curve, abstain])
            assert curve == sorted(curve, reverse=True) and curve[0] + abstain <= 1.0
            assert all(acr >= radius * v - 1e-12 for radius, v in zip(CERTIFY["radii"], curve, strict=True))
            assert acr <= max_radius[sigma] * curve[0] + 1e-12


def test_hook_certifies_what_evaluate_certifies_with_the_runs_seed(certified):
    spec = certified.specs[0]
    hook = RobustnessHook(spec)
    data = load_dataset(spec.options.train.dataset, **dict(spec.options.train.dataset_kwargs))
    result = train(spec.options.train, data=data)
    suite = Suite(certify=hook.settings.certify)
    expected = evaluate(
        result.model.eval(), data, suite, noise="off", seed=derive_seed(spec.seed, "robustness"), calibration=False
    )
    got = [r for r in hook.records(result, data) if r["condition"] == "certify"]
    strip = ("kind", "epoch", "step")
    assert [{k: v for k, v in r.items() if k not in strip} for r in got] == [
        r for r in expected if r["condition"] == "certify"
    ]


def test_certify_records_through_a_process_pool(certified, pool, tmp_path):
    harness.check_executor_agrees(certified, pool, tmp_path)


def test_certify_records_through_resume(certified, tmp_path):
    harness.check_resume(certified, tmp_path)


def test_report_draws_certification_from_the_stores(certified, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    harness.check_report_from_stores(certified, tmp_path / "copy", monkeypatch)
    report = build_report(tmp_path / "copy")
    (section,) = [s for s in report.sections if s.body.part == "table-robustness"]
    figures = {f.name: f for f in section.body.figures}
    assert "robustness_reliability" in figures and figures["robustness_certify"].png.startswith(PNG_MAGIC)
    assert "n0 = 8, n = 64, alpha = 0.01, 12 test images" in figures["robustness_certify"].caption
    assert [t.name for t in section.body.tables] == ["robustness", "robustness_certify", "robustness_calibration"]


# ---------------------------------------------------------------- attacks and shifted sets (their settings)

ATTACKS = {
    "stds": [0.3],
    "corruptions": [],
    "attacks": ["fgsm", {"name": "pgd", "budget": 3}],
    "epsilons": [0.05, 0.1],
    "attack_limit": 16,
    "shifts": ["inverted", "flipped-lr"],
}
ATTACK_SECTION = {**CERTIFY_SECTION, "options": {"robustness": ATTACKS}}


def test_attack_and_shift_settings_build_the_suite_and_are_absent_by_default():
    plain = RobustnessSettings.from_options({"robustness": {"stds": [0.3]}})
    assert plain.attacks == () and plain.shifts == () and plain.suite().attacks == () and plain.attack_suite() is None
    settings = RobustnessSettings.from_options({"robustness": ATTACKS})
    assert [a.label for a in settings.attacks] == ["fgsm", "pgd-3"] and settings.shifts == ("inverted", "flipped-lr")
    # with attack_limit, attacks run in a pass of their own and the main pass has none
    assert settings.attack_suite().attacks == settings.attacks and settings.attack_suite().epsilons == (0.05, 0.1)
    assert settings.main_suite().attacks == () and settings.main_suite().shifts == ("inverted", "flipped-lr")
    together = RobustnessSettings.from_options(
        {"robustness": {k: v for k, v in ATTACKS.items() if k != "attack_limit"}}
    )
    assert together.attack_suite() is None and together.main_suite().attacks == settings.attacks
    everything = RobustnessSettings.from_options({"robustness": {"attacks": ["fgsm"], "shifts": "all"}})
    assert everything.epsilons == SUITES.get("attacks")().epsilons and set(everything.shifts) == set(
        SUITES.get("shift")().shifts
    )


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"attacks": ["fgsn"]}, "did you mean 'fgsm'"),
        ({"attacks": [{"name": "pgd", "budgt": 3}]}, "unknown key 'budgt' in `attacks`; did you mean 'budget'"),
        ({"attacks": [{"budget": 3}]}, "`attacks` must be an attack name or a table of name, norm, budget"),
        ({"attacks": [{"name": "fgsm", "budget": 3}]}, "`budget` must be None for 'fgsm'"),
        ({"attacks": "fgsm"}, "`attacks` must be a list"),
        ({"attacks": ["fgsm"], "epsilons": [-0.1]}, "epsilon"),
        ({"attacks": ["fgsm"], "attack_limit": 0}, "`attack_limit` must be an integer >= 1, got 0"),
        ({"epsilons": [0.1]}, "`epsilons` must be set only with `attacks`"),
        ({"attack_limit": 5}, "`attack_limit` must be set only with `attacks`"),
        ({"shifts": ["inverte"]}, "did you mean 'inverted'"),
        ({"shifts": "some"}, "`shifts` must be a list"),
    ],
)
def test_bad_attack_and_shift_settings_fail_when_the_preset_loads(settings, match):
    with pytest.raises(ConfigError, match=match) as exc:
        _ids(_section({"stds": [0.3], "corruptions": [], **settings}))
    assert "[table.options.robustness]" in str(exc.value)


def test_attack_settings_change_the_run_ids_only_where_set():
    plain = _ids(_section({"stds": [0.3], "corruptions": []}))
    assert plain == _ids(_section({"stds": [0.3], "corruptions": []}))
    assert not set(plain) & set(_ids(ATTACK_SECTION))


@pytest.fixture(scope="module")
def attacked(tmp_path_factory) -> harness.Study:
    return harness.run_reference("table", ATTACK_SECTION, tmp_path_factory.mktemp("attacks"))


def test_hook_attacks_the_first_images_as_evaluate_does_with_the_runs_seed(attacked):
    spec = attacked.specs[-1]
    hook = RobustnessHook(spec)
    data = load_dataset(spec.options.train.dataset, **dict(spec.options.train.dataset_kwargs))
    result = train(spec.options.train, data=data)
    got = hook.records(result, data)
    attacks = [r for r in got if r.get("family") == "attack"]
    assert {(r["condition"], r["epsilon"]) for r in attacks} == {
        (a, e) for a in ("fgsm", "pgd-3") for e in (0.05, 0.1)
    } and {r["n"] for r in attacks} == {16}
    expected = evaluate(
        result.model.eval(),
        (data.x_test[:16], data.y_test[:16]),
        hook.settings.attack_suite(),
        noise="off",
        seed=derive_seed(spec.seed, "robustness", "attacks"),
        calibration=False,
    )
    strip = ("kind", "epoch", "step")
    assert [{k: v for k, v in r.items() if k not in strip} for r in attacks] == [
        r for r in expected if r["family"] == "attack"
    ]
    shifts = {r["condition"]: r for r in got if r.get("family") == "shift" and r["metric"] == "accuracy"}
    assert set(shifts) == {"inverted", "flipped-lr"} and {r["n"] for r in shifts.values()} == {N_TEST}
    # each attack accuracy is a count of the 16 attacked images
    by = {(r["condition"], r["epsilon"]): r["value"] for r in attacks}
    assert all(0.0 <= v <= 1.0 and math.isclose(16 * v, round(16 * v)) for v in by.values())


def test_report_has_the_attack_and_shift_tables_and_the_attack_figure(attacked, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    harness.check_report_from_stores(attacked, tmp_path / "copy", monkeypatch)
    report = build_report(tmp_path / "copy")
    (section,) = [s for s in report.sections if s.body.part == "table-robustness"]
    tables = {t.name: t for t in section.body.tables}
    assert {"robustness_attacks", "robustness_shifts"} <= set(tables)
    assert "pgd-3 eps 0.1 (%)" in tables["robustness_attacks"].headers
    assert "first 16 test images" in tables["robustness_attacks"].note
    assert tables["robustness_shifts"].headers[3:] == ("clean (%)", "inverted (%)", "flipped-lr (%)")
    figure = {f.name: f for f in section.body.figures}["robustness_attacks"]
    assert figure.png.startswith(PNG_MAGIC)
    # the table's cells are the records' mean over seeds
    records = [r for s in attacked.specs for r in attacked.store.read(s.run_id).records]
    for row in tables["robustness_attacks"].data:
        values = [
            100 * r["value"]
            for r in records
            if r.get("condition") == "fgsm"
            and r.get("epsilon") == 0.05
            and r.get("metric") == "accuracy"
            and r["arch"] == row["arch"]
            and r["label"] == row["method"]
        ]
        assert row["fgsm eps 0.05 mean"] == pytest.approx(statistics.fmean(values))
