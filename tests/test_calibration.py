"""Tests of ninr.robustness.calibration (ECE, NLL, Brier) and of the calibration records of evaluate()."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ninr.data import Dataset, load_dataset
from ninr.errors import ConfigError
from ninr.models import build_model
from ninr.nn import attach_nins, force_noise, noise_modules
from ninr.rng import derive_seed, scoped_global_seed
from ninr.robustness import Suite, evaluate
from ninr.robustness.calibration import (
    ExampleCalibration,
    bin_index,
    brier_score,
    expected_calibration_error,
    mean_softmax,
    negative_log_likelihood,
    per_example,
    reliability,
    summarize,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _probs(confidence: torch.Tensor, predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """Rows with ``confidence`` on ``predicted`` and the rest spread evenly (confidence >= 1 / classes)."""
    rest = (1 - confidence) / (classes - 1)
    probs = rest[:, None].repeat(1, classes)
    probs[torch.arange(len(confidence)), predicted] = confidence
    return probs.double()


def test_hand_computed_values() -> None:
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.35 (wrong) with 3 classes and 5 bins:
    # bins (0.8, 1]: 2 examples, accuracy 0.5, confidence 0.9; (0.4, 0.6]: 1, 1.0, 0.6; (0.2, 0.4]: 1, 0.0, 0.35
    probs = torch.tensor(
        [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.2, 0.2, 0.6], [0.35, 0.33, 0.32]], dtype=torch.float64
    )
    labels = torch.tensor([0, 0, 2, 1])
    ece = (2 * abs(0.5 - 0.9) + 1 * abs(1.0 - 0.6) + 1 * abs(0.0 - 0.35)) / 4
    assert expected_calibration_error(probs, labels, n_bins=5) == pytest.approx(ece, abs=1e-15)
    nll = -(math.log(0.9) + math.log(0.05) + math.log(0.6) + math.log(0.33)) / 4
    assert negative_log_likelihood(probs, labels) == pytest.approx(nll, rel=1e-14)
    brier = (
        (0.1**2 + 2 * 0.05**2)
        + (0.95**2 + 0.9**2 + 0.05**2)
        + (0.2**2 + 0.2**2 + 0.4**2)
        + (0.35**2 + 0.67**2 + 0.32**2)
    ) / 4
    assert brier_score(probs, labels) == pytest.approx(brier, rel=1e-14)
    bins = reliability(per_example(probs, labels), 5)
    assert bins.count == [0, 1, 1, 0, 2] and bins.accuracy[4] == 0.5 and bins.confidence[0] is None


def test_closed_forms_of_nll_and_brier() -> None:
    classes, labels = 10, torch.arange(10) % 10
    uniform = torch.full((10, classes), 1 / classes, dtype=torch.float64)
    assert negative_log_likelihood(uniform, labels) == pytest.approx(math.log(classes), rel=1e-14)
    assert brier_score(uniform, labels) == pytest.approx(1 - 1 / classes, rel=1e-14)
    right = torch.nn.functional.one_hot(labels, classes).double()
    assert negative_log_likelihood(right, labels) == 0.0 and brier_score(right, labels) == 0.0
    assert expected_calibration_error(right, labels) == 0.0
    wrong = right.roll(1, dims=1)
    assert brier_score(wrong, labels) == 2.0 and negative_log_likelihood(wrong, labels) == math.inf
    assert expected_calibration_error(wrong, labels) == 1.0


def test_bins_are_right_closed() -> None:
    # Guo et al.'s ((m - 1) / M, m / M]: a confidence on a boundary belongs to the bin below it; 1.0 to the last
    conf = torch.tensor([1 / 15, 2 / 15, 0.5, 14 / 15, 1.0, 0.0], dtype=torch.float64)
    assert bin_index(conf).tolist() == [0, 1, 7, 13, 14, 0]


def test_calibrated_and_overconfident_predictions() -> None:
    """A predictor whose top class is right with probability equal to its confidence has ECE near 0: by
    Hoeffding each bin's |accuracy - confidence| exceeds sqrt(log(2M/d) / (2 n_m)) with probability <= d/M, so
    with probability >= 1 - d the ECE is below sum_m n_m/N sqrt(log(2M/d)/(2 n_m)) <= sqrt(M log(2M/d) / (2N))
    (Cauchy-Schwarz); d = 1e-6 gives 0.080 for N = 20,000 and M = 15. One right with probability conf^2 has
    population ECE E[conf - conf^2] (0.18 for conf ~ U(0.1, 1)), which the same bound separates."""
    gen = torch.Generator().manual_seed(0)
    n, classes, m = 20_000, 10, 15
    conf = 0.1 + 0.9 * torch.rand(n, generator=gen, dtype=torch.float64)
    predicted = torch.randint(0, classes, (n,), generator=gen)
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    other = (predicted + torch.randint(1, classes, (n,), generator=gen)) % classes
    bound = math.sqrt(m * math.log(2 * m / 1e-6) / (2 * n))
    calibrated = torch.where(u < conf, predicted, other)
    assert expected_calibration_error(_probs(conf, predicted, classes), calibrated) < bound
    over = torch.where(u < conf**2, predicted, other)
    # conf - conf^2 >= 0, so no bin's gap cancels: given the confidences the expected ECE is their mean gap
    expected = float((conf - conf**2).mean())
    ece = expected_calibration_error(_probs(conf, predicted, classes), over)
    assert abs(ece - expected) < bound, (ece, expected)
    assert ece > bound


def test_mean_softmax_is_stable_and_exact() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    direct = torch.softmax(logits, dim=2).mean(dim=0).log()
    assert torch.allclose(mean_softmax(logits), direct, rtol=1e-13, atol=1e-13)
    huge = torch.tensor([[[0.0, 2000.0]], [[0.0, 1000.0]]], dtype=torch.float64)  # p_0 underflows in every draw
    logp = mean_softmax(huge)
    assert logp[0, 0].item() == pytest.approx(-1000.0 - math.log(2), rel=1e-12)
    with pytest.raises(ConfigError, match="`logits` must be a \\(draws, N, C\\) tensor"):
        mean_softmax(logits[0])


def test_chunks_give_the_whole() -> None:
    gen = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(300, 7, generator=gen, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 7, (300,), generator=gen)
    whole, _ = summarize(per_example(probs, labels))
    parts = ExampleCalibration.cat([per_example(probs[i : i + 37], labels[i : i + 37]) for i in range(0, 300, 37)])
    assert summarize(parts)[0] == whole  # per-example quantities are elementwise, the sums run once
    assert whole["ece"] == expected_calibration_error(probs, labels)


# ---------------------------------------------------------------- the records of evaluate()


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_dataset("synthetic", n_train=16, n_test=96)


def _mlp() -> nn.Module:
    with scoped_global_seed(0):
        return build_model("mlp", (1, 28, 28), 10, width=16, depth=1).eval()


def test_evaluate_records_are_the_pure_functions_of_the_model_outputs(data: Dataset) -> None:
    model = _mlp()
    records = evaluate(model, data, Suite(shifts=("inverted",)))
    cal = {(r["condition"], r["metric"]): r for r in records if r["metric"] in ("ece", "nll", "brier")}
    assert [(r["condition"], r["metric"]) for r in records if r["metric"] != "accuracy"] == [
        (c, m) for c in ("clean", "inverted") for m in ("ece", "nll", "brier")
    ]
    for condition, x in (("clean", data.x_test), ("inverted", 1 - data.x_test)):
        with torch.no_grad():
            probs = torch.softmax(model(x).double(), dim=1)
        # evaluate goes through log_softmax, the pure functions through softmax then log: ~1e-15 apart
        assert cal[(condition, "ece")]["value"] == pytest.approx(
            expected_calibration_error(probs, data.y_test), abs=1e-12
        )
        assert cal[(condition, "nll")]["value"] == pytest.approx(negative_log_likelihood(probs, data.y_test), rel=1e-12)
        assert cal[(condition, "brier")]["value"] == pytest.approx(brier_score(probs, data.y_test), rel=1e-12)
    ece = cal[("clean", "ece")]
    assert ece["bins"] == 15 and sum(ece["bin_count"]) == 96 and len(ece["bin_accuracy"]) == 15
    assert ece["n"] == 96 and ece["noise"] == "off" and ece["draws"] == 1
    assert not any(r["metric"] != "accuracy" for r in evaluate(model, data, "clean", calibration=False))


def test_noise_on_probabilities_are_the_mean_softmax_over_draws(data: Dataset) -> None:
    model = _mlp()
    attach_nins(model, "input", sigma=1.0, niw_init=1.0, seed=3)
    model.eval()
    draws = 3
    records = evaluate(model, data, "clean", noise="on", draws=draws, seed=5)
    nll = next(r for r in records if r["metric"] == "nll")
    assert (nll["noise"], nll["draws"]) == ("on", draws)
    # Replay: evaluate reseeds the noise modules from (seed, "eval-noise", condition, index) for each condition
    # and runs the draws on the one chunk of 96 images.
    for i, m in enumerate(noise_modules(model)):
        m.reseed(derive_seed(5, "eval-noise", "clean", i))
    with torch.no_grad(), force_noise(model, True):
        logits = torch.stack([model(data.x_test) for _ in range(draws)])
    logp = mean_softmax(logits)
    expected = float(-logp.gather(1, data.y_test[:, None]).mean())
    assert nll["value"] == pytest.approx(expected, rel=1e-12)
    single = float(-torch.log_softmax(logits.double(), 2).gather(2, data.y_test.expand(draws, -1)[..., None]).mean())
    assert nll["value"] <= single + 1e-12  # Jensen: -log of the mean <= the mean of -log


def test_report_section_has_the_calibration_table_and_the_figures(data: Dataset) -> None:
    """The robustness report section from real records of two methods x two seeds: the calibration table's cells
    are the mean and sample std over seeds of the records, the figures are drawn when their records exist."""
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    from ninr.report.robustness import calibration_table, robustness_report
    from ninr.robustness import CertifySpec

    suite = Suite(shifts=("inverted",), certify=CertifySpec(n0=10, n=100, examples=6, radii=(0.0, 0.1, 0.2)))
    records = []
    for label in ("none", "in-ninr"):
        for seed in (0, 1):
            with scoped_global_seed(seed):
                model = build_model("mlp", (1, 28, 28), 10, width=8, depth=1).eval()
            base = {"kind": "robustness", "run_id": f"{label}-{seed}", "arch": "FC", "label": label, "seed": seed}
            records += [{**base, **r} for r in evaluate(model, data, suite, seed=seed)]
    report = robustness_report(records, {"part": "eval"})
    names = [f.name for f in report.figures]
    assert "robustness_certify" in names and "robustness_reliability" in names
    table = calibration_table([r for r in records if r["metric"] in ("ece", "nll", "brier")])
    assert [t.name for t in report.tables] == [
        "robustness", "robustness_shifts", "robustness_certify", "robustness_calibration"
    ]  # fmt: skip
    row = next(d for d in table.data if d["method"] == "none")
    clean = [r["value"] for r in records if r["label"] == "none" and r["condition"] == "clean" and r["metric"] == "nll"]
    assert row["clean NLL mean"] == pytest.approx(sum(clean) / 2) and row["runs"] == 2
    assert row["clean NLL std"] == pytest.approx(abs(clean[0] - clean[1]) / math.sqrt(2))
    shifted = [
        r["value"] for r in records if r["label"] == "none" and r["condition"] == "inverted" and r["metric"] == "ece"
    ]
    assert row["shifted ECE mean"] == pytest.approx(sum(shifted) / 2)
