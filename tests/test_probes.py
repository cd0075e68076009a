"""Probe callbacks, fixed per-example noise, sigma calibration and the `ninr phases` command."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import ninr
from ninr.cli import main
from ninr.data import synthetic
from ninr.dynamics.fixed_noise import FixedExampleNoise
from ninr.dynamics.niw import CurvatureProbe, LossProbe, NIWProbe, merge_rows
from ninr.dynamics.phases import classify
from ninr.dynamics.points import linear_series
from ninr.dynamics.theory.simulate import LinearSetup, build_student, simulate_linear, teacher_data
from ninr.errors import ConfigError, NinrError
from ninr.methods.calibrate import PHASE_TARGET_K, calibrate_sigma, nin_curvature, sigma_for_phase
from ninr.studies import ResultStore, final_records
from ninr.train import Callback, FitState, MethodSpec, TrainConfig, train

DATA = synthetic(n_train=192, n_test=64, input_shape=(1, 6, 6), num_classes=3, seed=0)


def config(**kw: object) -> TrainConfig:
    base = dict(
        dataset="synthetic",
        model="mlp",
        model_kwargs={"width": 16},
        epochs=2,
        batch_size=32,
        seed=3,
        methods=(MethodSpec("in-ninr", {"sigma": 2.0}),),
    )
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def probes() -> list[Callback]:
    splits = {"train": (DATA.x_train[:50], DATA.y_train[:50]), "test": (DATA.x_test, DATA.y_test)}
    return [
        NIWProbe(every=1),
        LossProbe(splits, every=2),
        CurvatureProbe(DATA.x_train[:40], DATA.y_train[:40], every=3, iters=5, trace_samples=2),
    ]


def strip_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in records]


@pytest.mark.parametrize("methods", ["in-ninr", "full-ninr"])
def test_probes_leave_the_trajectory_bit_for_bit_unchanged(methods: str) -> None:
    cfg = config(methods=(MethodSpec(methods, {"sigma": 2.0}),))
    plain = train(cfg, data=DATA)
    probed_cbs = probes()
    probed = train(cfg, data=DATA, callbacks=probed_cbs)
    assert strip_times(plain.records) == strip_times(probed.records)
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, probed.model.state_dict()[key]), key
    rows = merge_rows(*probed_cbs)  # type: ignore[arg-type]
    assert rows[0]["step"] == 0 and rows[-1]["step"] == probed.final["step"]
    assert any("top_eig" in r and "trace" in r for r in rows)


def test_niw_probe_reads_the_niw_norm_every_step() -> None:
    probe = NIWProbe(every=1)
    result = train(config(), data=DATA, callbacks=[probe])
    steps, norms = probe.series("niw_norm/fc1")
    assert steps == list(range(result.final["step"] + 1))
    assert norms[-1] == pytest.approx(float(ninr.niws(result.model)["fc1"].detach().norm()))
    assert norms[-1] == pytest.approx(result.final["niw_norm/fc1"])


def test_loss_probe_matches_evaluate_on_the_test_set() -> None:
    probe = LossProbe({"test": (DATA.x_test, DATA.y_test)}, every=1000)
    result = train(config(epochs=1), data=DATA, callbacks=[probe])
    _, losses = probe.series("test_loss")
    assert len(losses) == 1  # only step 0: the cadence is longer than the run
    assert math.isfinite(losses[0]) and result.status == "completed"


class _Spy(Callback):
    """Captures (input batch, noise used) at the NIN layer on every training forward pass."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_start(self, state: FitState) -> None:
        layer = state.model.fc1  # type: ignore[union-attr]

        def hook(m: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if m.training:
                self.seen.append((args[0].detach().clone(), m.nin.last_noise.clone()))  # type: ignore[union-attr]

        layer.register_forward_hook(hook)


def test_fixed_example_noise_replays_each_examples_draw() -> None:
    cfg = config()
    fixed = FixedExampleNoise(DATA, cfg)
    spy = _Spy()
    result = train(cfg, data=DATA, callbacks=[fixed, spy])
    table = fixed.tables["fc1"]
    flat = DATA.x_train.flatten(1)
    standardize = result.model.normalize  # type: ignore[union-attr]
    x_std = standardize(DATA.x_train).flatten(1)
    assert len(spy.seen) == result.final["step"]
    for inp, eps in spy.seen:  # map each row back to its example and check its noise is the table's
        idx = torch.cdist(inp, x_std).argmin(dim=1)
        assert torch.equal(eps, table[idx])
    assert len(set(torch.cat([torch.cdist(i, x_std).argmin(1) for i, _ in spy.seen]).tolist())) == len(flat)
    again = train(cfg, data=DATA, callbacks=[FixedExampleNoise(DATA, cfg)])
    redrawn = train(cfg, data=DATA)
    assert strip_times(again.records) == strip_times(result.records)
    assert strip_times(redrawn.records) != strip_times(result.records)


def test_fixed_example_noise_detects_a_lost_batch_order() -> None:
    cfg = config()
    wrong = FixedExampleNoise(DATA, cfg.replace(seed=99))  # follows another permutation
    with pytest.raises(NinrError, match="lost track of the batch order"):
        train(cfg, data=DATA, callbacks=[wrong])


def test_calibration_on_the_linear_model_recovers_lambda_one() -> None:
    setup = LinearSetup(sigma=1.0)
    x, y, w = teacher_data(256, setup.dim, 0.0, 0)
    student = build_student(setup, w)
    ninr.detach_nins(student)
    curv = nin_curvature(student, x, y, loss="half_mse")
    assert curv[""] == pytest.approx(1.0, rel=1e-12)  # the NIW feeds the output of 1/2 (f - y)^2 directly
    cal = sigma_for_phase(student, x, y, lr=0.01, phase="decay", loss="half_mse")
    assert cal.sigma == pytest.approx(math.sqrt(PHASE_TARGET_K["decay"] / 0.01))
    traj = simulate_linear(LinearSetup(sigma=cal.sigma, eta=0.01, steps=50))
    phase = classify(linear_series(traj.niw, 0.01 * cal.sigma**2))
    assert phase.phase == "decay" and phase.oscillating is False  # monotone decay, as asked
    assert not ninr.nin_nodes(student)  # the model given is not modified


def test_calibrate_sigma_on_an_mlp_leaves_the_model_alone() -> None:
    from ninr.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", DATA.input_shape, DATA.num_classes, width=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    decay = calibrate_sigma(model, DATA, lr=0.05, phase="decay", batch_size=100)
    catapult = calibrate_sigma(model, DATA, lr=0.05, phase="catapult", batch_size=100)
    assert decay.curvature == catapult.curvature > 0
    assert catapult.sigma / decay.sigma == pytest.approx(
        math.sqrt(PHASE_TARGET_K["catapult"] / PHASE_TARGET_K["decay"])
    )
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(ConfigError, match="`phase` must be one of"):
        calibrate_sigma(model, DATA, lr=0.05, phase="chaos")


def test_phases_cli_linear_writes_store_report_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ph"
    code = main(
        ["phases", "--model", "linear", "--sigmas", "1", "5", "12", "20", "--steps", "60", "--out", str(out), "--quiet"]
    )
    assert code == 0
    store = ResultStore(out / "phases")
    rows = final_records(store.records(store.read_study()["run_ids"]))
    assert {r["noise"] for r in rows} == {"redrawn", "fixed"} and len(rows) == 8
    phases = {r["sigma"]: r["linear_phase"] for r in rows if r["noise"] == "redrawn"}
    assert phases == {1.0: "decay", 5.0: "decay", 12.0: "oscillating", 20.0: "divergent"}
    assert (out / "report" / "figures" / "phases_phases.png").stat().st_size > 1000
    assert (out / "report" / "report.md").is_file()
    stdout = capsys.readouterr().out
    assert "predicted boundaries" in stdout and "measured phases (redrawn noise)" in stdout
