"""Tests of ninr.robustness.evaluate, suites, shift, the table, the plots and `ninr eval`."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from ninr.cli import main
from ninr.cli.eval import merge_records
from ninr.data import Dataset, load_dataset
from ninr.errors import ConfigError, UnknownNameError
from ninr.models import build_model
from ninr.nn import attach_nins, force_noise, noise_modules
from ninr.rng import make_generator, scoped_global_seed
from ninr.robustness import (
    CORRUPTIONS,
    CertifySpec,
    RandomizedModelWarning,
    Suite,
    TrainModeWarning,
    certified_accuracy,
    certify,
    corrupt,
    evaluate,
    format_table,
    get_suite,
    outputs_differ,
)
from ninr.robustness.certify import abstain_rate, average_certified_radius
from ninr.robustness.suites import AttackSpec
from ninr.studies import ResultStore
from ninr.train import TrainConfig, train
from ninr.train import evaluate as train_evaluate

KEYS = {"condition", "family", "severity", "intensity", "epsilon", "metric", "value", "noise", "draws", "n"}
CALIBRATION = ("ece", "nll", "brier")

pytestmark = pytest.mark.usefixtures("one_thread")


def _accuracy(records: list[dict]) -> list[dict]:
    return [r for r in records if r["metric"] == "accuracy"]


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_dataset("synthetic", n_train=16, n_test=96)


def _mlp() -> nn.Module:
    with scoped_global_seed(0):
        return build_model("mlp", (1, 28, 28), 10, width=16, depth=1).eval()


def _nin_mlp() -> nn.Module:
    model = _mlp()
    attach_nins(model, "input", sigma=1.0, niw_init=1.0, seed=3)
    return model.eval()


SMALL = Suite(
    corruptions=("gaussian-noise", "zigzag"), severities=(1, 5), attacks=(AttackSpec("fgsm"),), epsilons=(0.1,)
)


def test_records_are_tidy_and_start_with_clean(data: Dataset) -> None:
    records = evaluate(_mlp(), data, SMALL, meta={"run_id": "abc"})
    assert records[0]["condition"] == "clean" and records[0]["family"] == "clean"
    accuracy = records[:6]  # the accuracy records first, then the calibration records
    for r in records:
        assert set(r) >= KEYS and r["run_id"] == "abc" and r["noise"] == "off" and r["n"] == 96
    for r in accuracy:
        assert r["metric"] == "accuracy" and 0.0 <= r["value"] <= 1.0
    levels = [(r["condition"], r["severity"], r["epsilon"]) for r in accuracy[1:]]
    assert levels == [("gaussian-noise", 1, None), ("gaussian-noise", 5, None), ("zigzag", 1, None),
                      ("zigzag", 5, None), ("fgsm", None, 0.1)]  # fmt: skip
    # every condition but the attack, in the same order, gets ece, nll and brier
    calibrated = [(r["condition"], r["severity"], r["metric"]) for r in records[6:]]
    assert calibrated == [(c, s, m) for c, s, _ in [("clean", None, None), *levels[:4]] for m in CALIBRATION]
    for r in records[6:]:
        assert r["value"] >= 0.0 and (r["metric"] == "nll" or r["value"] <= (2.0 if r["metric"] == "brier" else 1.0))


def test_values_match_direct_computation(data: Dataset) -> None:
    model = _mlp()
    records = evaluate(model, data, SMALL, batch_size=7, seed=4)
    assert records[0]["value"] == pytest.approx(train_evaluate(model, data.x_test, data.y_test)[1])
    x_c = corrupt(data.x_test, "zigzag", 5, generator=make_generator(4, "corruption", "zigzag"))
    expected = train_evaluate(model, x_c, data.y_test)[1]
    assert next(r for r in records if r["condition"] == "zigzag" and r["severity"] == 5)["value"] == expected
    again = evaluate(model, data, SMALL, batch_size=50, seed=4)
    assert _accuracy(records) == _accuracy(again), "chunking must not change results"
    # Calibration sums per-example float64 values once over the test set; the model's float32 logits for a row may
    # differ in the last ulps (~6e-8 relative) between batch sizes (another blocking of the product), which moves
    # a probability by ~1e-7 relative: the metrics and bin confidences agree to 1e-6, and the bin counts are equal
    # unless a confidence lies within ~1e-7 of a bin edge.
    approx = ("value", "bin_confidence")
    for r, s in zip(records, again, strict=True):
        assert {k: v for k, v in r.items() if k not in approx} == {k: v for k, v in s.items() if k not in approx}
        assert r["value"] == pytest.approx(s["value"], rel=1e-6)
        for a, b in zip(r.get("bin_confidence", []), s.get("bin_confidence", []), strict=True):
            assert a == b or a == pytest.approx(b, rel=1e-6)  # None (an empty bin) in both, or close


def test_plain_model_is_not_flagged(data: Dataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = evaluate(_nin_mlp(), data, "clean")  # NINs in eval mode: noise off, deterministic
    assert [r["noise"] for r in _accuracy(records)] == ["off"]


def test_train_mode_is_flagged(data: Dataset) -> None:
    model = _mlp().train()
    with pytest.warns(TrainModeWarning, match="train mode"):
        evaluate(model, data, "clean")
    assert model.training, "evaluate must not change the model's mode"


def test_noise_on_is_flagged_as_randomized_and_reported_both_ways(data: Dataset) -> None:
    model = _nin_mlp()
    nodes = noise_modules(model)
    with force_noise(model, True):
        assert outputs_differ(model, data.x_test[:8])
        before = [(m.seed, m.get_rng_state()) for m in nodes]
        with pytest.warns(RandomizedModelWarning, match="noise off and on"):
            records = evaluate(model, data, SMALL, draws=3, eot_samples=2)
        with pytest.warns(RandomizedModelWarning):
            again = evaluate(model, data, SMALL, draws=3, eot_samples=2)
    assert records == again, "noise-on evaluation must be reproducible from the seed"
    modes = {(r["condition"], r["severity"], r["epsilon"]): [] for r in _accuracy(records)}
    for r in _accuracy(records):
        modes[(r["condition"], r["severity"], r["epsilon"])].append((r["noise"], r["draws"]))
    assert all(v == [("off", 1), ("on", 3)] for v in modes.values())
    off_clean = records[0]["value"]
    assert off_clean == pytest.approx(train_evaluate(model, data.x_test, data.y_test)[1])
    after = [(m.seed, m.get_rng_state()) for m in nodes]
    assert [a[0] for a in after] == [b[0] for b in before], "noise seeds must be restored"
    assert all(torch.equal(a[1][d], b[1][d]) for a, b in zip(after, before, strict=True) for d in b[1])
    assert all(m.force is None for m in nodes)


def test_noise_modes(data: Dataset) -> None:
    on = evaluate(_nin_mlp(), data, "clean", noise="on", draws=2)
    assert [(r["noise"], r["draws"], r["metric"]) for r in on] == [("on", 2, m) for m in ("accuracy", *CALIBRATION)]
    both = evaluate(_nin_mlp(), data, "clean", noise="both")
    assert [r["noise"] for r in _accuracy(both)] == ["off", "on"]
    assert [(r["noise"], r["metric"]) for r in both[2:]] == [(n, m) for n in ("off", "on") for m in CALIBRATION]
    with pytest.raises(ConfigError, match="without noise modules"):
        evaluate(_mlp(), data, "clean", noise="on")
    with pytest.raises(ConfigError, match="`noise` must be one of"):
        evaluate(_mlp(), data, "clean", noise="sometimes")


def test_suites_validate_early() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'fmnist-c'"):
        get_suite("fmnist")
    with pytest.raises(UnknownNameError, match="did you mean 'motion-blur'"):
        Suite(corruptions=("motion-blurr",))
    with pytest.raises(ConfigError, match="severity"):
        get_suite("fmnist-c", severities=[0, 3])
    with pytest.raises(ConfigError, match="epsilon"):
        get_suite("attacks", epsilons=[0.1, -0.01])
    with pytest.raises(ConfigError, match="curves"):
        Suite(curves=("fog",), intensities=(0.1,))
    full = get_suite("all")
    assert (
        len(full.corruptions) == len(CORRUPTIONS.names())
        and full.severities == (1, 2, 3, 4, 5)
        and len(full.epsilons) == 4
    )
    assert {0.1, 0.3, 0.5} <= set(full.intensities)


def test_shifts(data: Dataset) -> None:
    model = _mlp()
    other = load_dataset("synthetic", n_train=8, n_test=40, seed=5)
    records = _accuracy(
        evaluate(model, data, Suite(shifts=("inverted", "translated")), shift_data={"synthetic-5": other})
    )
    assert [(r["condition"], r["family"]) for r in records[1:]] == [
        ("inverted", "shift"), ("translated", "shift"), ("synthetic-5", "shift")]  # fmt: skip
    assert records[1]["value"] == pytest.approx(train_evaluate(model, 1 - data.x_test, data.y_test)[1])
    assert records[3]["n"] == 40
    wrong = load_dataset("synthetic", n_train=8, n_test=8, input_shape=(1, 14, 14))
    with pytest.raises(ConfigError, match="input shape"):
        evaluate(model, data, "clean", shift_data={"small": wrong})


def test_table_and_merge(data: Dataset) -> None:
    records = evaluate(_mlp(), data, SMALL.replace(curves=("gaussian-noise",), intensities=(0.1, 0.3)))
    text = format_table(records)
    for word in ("clean", "gaussian-noise", "zigzag", "fgsm", "severity", "noise (std)", "epsilon"):
        assert word in text
    changed = [{**records[0], "value": 0.5}]
    merged = merge_records(records, changed)
    assert len(merged) == len(records) and merged[-1]["value"] == 0.5


def test_plots(data: Dataset, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from ninr.robustness.plots import curve_points, plot_all, plot_curves

    records = []
    for method in ("none", "in-ninr"):
        for seed in (0, 1):
            model = _mlp()
            recs = evaluate(model, data, Suite(corruptions=("contrast",), severities=(1, 3)), seed=seed)
            records += [{**r, "method": method, "seed": seed, "value": r["value"] + 0.01 * seed} for r in recs]
    points = curve_points(records, "contrast", "severity")
    assert set(points) == {"none", "in-ninr"}
    level, _, std, seeds = points["none"][1]
    assert (level, seeds) == (1.0, 2) and std == pytest.approx(0.01 / 2**0.5)
    fig = plot_curves(records, axis="severity")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
    written = plot_all(records, tmp_path)
    names = {"robustness-digital", "robustness-reliability"}  # calibration records give the reliability diagram
    assert {p.name for p in written} == {f"{n}.{ext}" for n in names for ext in ("png", "pdf")}
    assert all(p.stat().st_size > 0 for p in written)


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from ninr.robustness import plots

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"ninr\[plot\]"):
        plots.plot_curves([], axis="severity")


def test_cli_eval_writes_records_next_to_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    config = TrainConfig(dataset="synthetic", dataset_kwargs={"n_train": 64, "n_test": 32}, epochs=1, max_steps=2)
    train(config, out_dir=run)
    args = ["eval", str(run), "--suite", "gaussian", "--stds", "0.1", "0.3", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "gaussian-noise" in out and "robustness.jsonl" in out
    lines = (run / "robustness.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["condition"] for r in _accuracy(records)] == ["clean", "gaussian-noise", "gaussian-noise"]
    trained_id = json.loads((run / "config.json").read_text())["run_id"]
    assert all(r["method"] == "none" and r["seed"] == 0 and r["trained_run_id"] == trained_id for r in records)
    assert main([*args[:-1], "--eps", "0.05", "--suite", "attacks", "--quiet"]) == 0
    rows = [json.loads(line) for line in (run / "robustness.jsonl").read_text().splitlines()]
    conditions = [r["condition"] for r in _accuracy(rows)]
    assert conditions.count("clean") == 1 and "pgd-10" in conditions and "gaussian-noise" in conditions
    # each evaluation (run and settings) is one run of the store RUN_DIR/eval
    assert len(ResultStore(run / "eval").run_ids()) == 2
    # evaluations of two trained runs merged into one file keep each run's records
    other = tmp_path / "other"
    train(config.replace(seed=1), out_dir=other)
    merged = tmp_path / "all.jsonl"
    for run_dir in (run, other):
        assert main(["eval", str(run_dir), "--suite", "clean", "--out", str(merged), "--quiet"]) == 0
    rows = _accuracy([json.loads(line) for line in merged.read_text().splitlines()])
    other_id = json.loads((other / "config.json").read_text())["run_id"]
    assert [(r["condition"], r["trained_run_id"]) for r in rows] == [("clean", trained_id), ("clean", other_id)]
    # the certify suite through the command line (the eval part passes the suite name to evaluate)
    assert main(["eval", str(run), "--suite", "certify", "--limit", "3", "--quiet"]) == 0
    assert "certified (L2 radius)" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "robustness.jsonl").read_text().splitlines()]
    certified = [r for r in rows if r["condition"] == "certify"]
    assert len(certified) == 16 + 2 and all(r["kind"] == "robustness" and r["n"] == 3 for r in certified)
    assert "pgd-10" in {r["condition"] for r in rows}, "other evaluations' records are kept"


def _unsupported(dtype: torch.dtype) -> str | None:
    """torch's message when this build cannot multiply matrices of ``dtype`` on the CPU, else ``None``."""
    try:
        torch.ones(2, 2, dtype=dtype) @ torch.ones(2, 2, dtype=dtype)
    except (RuntimeError, NotImplementedError) as exc:
        if "not implemented" in str(exc).lower():
            return str(exc)
        raise
    return None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_models_of_any_float_dtype(data: Dataset, dtype: torch.dtype) -> None:
    """Inputs stay float32 (corruption and smoothing noise drawn in float32) and are cast to the model's dtype
    right before each forward pass; attacks differentiate through the cast."""
    reason = _unsupported(dtype)
    if reason is not None:
        pytest.skip(f"this torch build has no {dtype} matmul on this CPU: {reason}")
    model = _mlp().to(dtype)
    suite = Suite(
        corruptions=("gaussian-noise",),
        severities=(3,),
        shifts=("inverted",),
        attacks=(AttackSpec("fgsm"),),
        epsilons=(0.05,),
        certify=CertifySpec(n0=20, n=200, examples=8, radii=(0.0, 0.1)),
    )
    records = evaluate(model, data, suite)
    with torch.no_grad():  # the same kernel on the same 96 rows (one chunk): the same predictions
        expected = float((model(data.x_test.to(dtype)).argmax(dim=1) == data.y_test).double().mean())
    assert records[0]["value"] == expected
    assert all(math.isfinite(r["value"]) for r in records)
    metrics = {r["metric"] for r in records}
    assert metrics == {"accuracy", "ece", "nll", "brier", "certified-accuracy", "abstain-rate", "average-radius"}
    assert all(p.dtype == dtype for p in model.parameters())


def test_certify_suite_records_are_the_certificates(data: Dataset) -> None:
    model = _mlp()
    spec = CertifySpec(sigmas=(0.25, 0.5), radii=(0.0, 0.05, 0.2), n0=20, n=300, alpha=0.01, examples=10)
    records = evaluate(model, data, Suite(certify=spec), seed=7, batch_size=256)
    assert records[0]["condition"] == "clean"
    rows = [r for r in records if r["condition"] == "certify"]
    for sigma in spec.sigmas:
        gen = make_generator(7, "certify", f"{sigma:g}")
        direct = certify(
            model, data.x_test[:10], data.y_test[:10], sigma=sigma, n0=20, n=300, alpha=0.01, generator=gen
        )
        mine = [r for r in rows if r["intensity"] == sigma]
        assert [r["value"] for r in mine if r["metric"] == "certified-accuracy"] == certified_accuracy(
            direct, spec.radii
        )
        assert [r["epsilon"] for r in mine if r["metric"] == "certified-accuracy"] == list(spec.radii)
        by_metric = {r["metric"]: r["value"] for r in mine}
        assert by_metric["abstain-rate"] == abstain_rate(direct)
        assert by_metric["average-radius"] == average_certified_radius(direct)
        assert all((r["n"], r["draws"], r["n0"], r["alpha"], r["noise"]) == (10, 300, 20, 0.01, "off") for r in mine)
    # every record has its own key in the records file (RECORD_KEY of `ninr eval`)
    keys = {(r["condition"], r["severity"], r["intensity"], r["epsilon"], r["noise"], r["metric"]) for r in records}
    assert len(keys) == len(records)
    assert get_suite("certify").certify == CertifySpec() and CertifySpec().n == 10_000
    assert get_suite("certify-sigmas").certify.sigmas == (0.12, 0.25, 0.5)
    with pytest.raises(ConfigError, match="`alpha` must be a number in"):
        CertifySpec(alpha=1.5)
    with pytest.raises(ConfigError, match="`sigmas` must be a non-empty list"):
        CertifySpec(sigmas=())


def test_attack_specs_carry_each_attacks_budget_and_seed(data: Dataset) -> None:
    assert AttackSpec("apgd").label == "apgd-100" and AttackSpec("pgd", budget=10).label == "pgd-10"
    assert AttackSpec("square", "l2", budget=50).options() == {"norm": "l2", "queries": 50}
    assert AttackSpec("fgsm").options() == {"norm": "linf"} and AttackSpec("fgsm").label == "fgsm"
    with pytest.raises(ConfigError, match="`budget`"):
        AttackSpec("fgsm", budget=3)
    # randomized attacks draw from the evaluation's seeded generator: two evaluations agree, whatever the global RNG
    suite = Suite(attacks=(AttackSpec("square", budget=30), AttackSpec("apgd", budget=5)), epsilons=(0.1,))
    first = evaluate(_mlp(), data, suite, seed=1)
    torch.manual_seed(123)
    torch.rand(7)
    assert evaluate(_mlp(), data, suite, seed=1) == first
    assert {r["condition"] for r in first} >= {"square-30", "apgd-5"}
