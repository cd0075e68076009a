"""The training run: reproducibility, divergence as data, run directories, configs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ninr.data import load_dataset, locate_fashion_mnist
from ninr.errors import ConfigError, DataError
from ninr.nn import nin_nodes
from ninr.train import MethodSpec, TrainConfig, evaluate, load_run, run_id, rundir, train

SYNTH = {"n_train": 256, "n_test": 128}
DATA = load_dataset("synthetic", **SYNTH)
NINR = (MethodSpec("in-ninr", {"sigma": 0.5}),)


def config(**changes: object) -> TrainConfig:
    base = TrainConfig(dataset="synthetic", dataset_kwargs=SYNTH, epochs=2, batch_size=32, lr=0.05)
    return base.replace(**changes)


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in records]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("methods", [(), NINR, (MethodSpec("full-ninr", {"sigma": 0.5}),)])
def test_training_is_bit_for_bit_reproducible(model: str, methods: tuple[MethodSpec, ...]) -> None:
    cfg = config(model=model, methods=methods, epochs=1, max_steps=4)
    a, b = train(cfg, data=DATA), train(cfg, data=DATA)
    assert without_time(a.records) == without_time(b.records)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    other = train(cfg.replace(seed=1), data=DATA)
    assert without_time(other.records) != without_time(a.records)


def test_train_leaves_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(config(methods=NINR, max_steps=3), data=DATA)
    assert torch.equal(torch.rand(3), expected)


def test_training_learns_and_records_niw_norms() -> None:
    result = train(config(methods=NINR, epochs=3), data=DATA)
    assert result.status == "completed"
    assert [r["epoch"] for r in result.records] == [1, 2, 3]
    assert result.records[-1]["train_loss"] < result.records[0]["train_loss"]
    assert result.final["test_acc"] > 0.5  # 10 balanced classes: chance is 0.1
    assert "niw_norm/fc1" in result.final and result.final["niw_norm/fc1"] > 0
    assert result.setup == {"nin_layers": ["fc1"]}


def test_diverging_run_is_recorded_not_raised() -> None:
    result = train(config(lr=1e4, methods=(MethodSpec("in-ninr", {"sigma": 100.0}),)), data=DATA)
    assert result.status == "diverged"
    assert result.records[-1]["status"] == "diverged"
    assert math.isnan(result.records[-1]["test_acc"])


def test_max_steps_stops_early() -> None:
    result = train(config(max_steps=5), data=DATA)
    assert result.status == "stopped"
    assert result.final["step"] == 5 and len(result.records) == 1


def test_run_directory_contents_and_reload(tmp_path: torch.Tensor) -> None:
    out = tmp_path / "run"
    result = train(config(methods=NINR, model="cnn", epochs=1, max_steps=3), data=DATA, out_dir=out)
    meta = json.loads((out / rundir.CONFIG).read_text())
    assert meta["run_id"] == result.run_id == run_id(meta["config"])
    assert meta["config"]["methods"][0]["params"]["sigma"] == 0.5
    assert meta["config"]["methods"][0]["params"]["distribution"] == "gaussian"  # resolved defaults recorded
    metrics = rundir.read_jsonl(out / rundir.METRICS)
    assert without_time(metrics) == without_time(result.records)
    summary = json.loads((out / rundir.SUMMARY).read_text())
    assert summary["status"] == "stopped"
    model, cfg = load_run(out)
    assert cfg.to_dict()["methods"][0]["name"] == "in-ninr"
    channels_last = torch.channels_last
    assert result.model.conv2.weight.is_contiguous(memory_format=channels_last)  # ninr.perf.use_channels_last
    assert model.conv2.weight.is_contiguous(memory_format=channels_last)  # reloaded in the trained layout
    result.model.eval()
    x = DATA.x_test[:16]
    assert torch.equal(model(x), result.model(x))
    _, acc = evaluate(model, DATA.x_test, DATA.y_test)
    assert acc == pytest.approx(result.final["test_acc"])


@pytest.mark.usefixtures("one_thread")
def test_channels_last_changes_a_cnn_run_within_the_kernels_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels-last lets oneDNN pick other convolution algorithms (Winograd among them on AVX-512), whose
    float32 gradients differ from the contiguous ones by up to ~1e-3 relative (Winograd's error order:
    Barabasz et al. 2020). So one step's update agrees within 1% of its size, and six steps' records (losses,
    NIW norms) within 1%; accuracies within two test examples. Bit-identity is a claim for one kernel only."""
    import ninr.train.setup

    def both(steps: int) -> tuple:
        cfg = config(methods=NINR, model="cnn", epochs=1, max_steps=steps)
        with monkeypatch.context() as m:
            m.setattr(ninr.train.setup, "use_channels_last", lambda *args: False)
            plain = train(cfg, data=DATA)
            start = train(cfg.replace(lr=1e-30, max_steps=1), data=DATA)  # the initial weights, in plain layout
        return train(cfg, data=DATA), plain, start

    fast, plain, start = both(1)
    assert not plain.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    init = start.model.state_dict()
    for name, p in fast.model.state_dict().items():
        q = plain.model.state_dict()[name]
        moved = float((q - init[name]).abs().max())
        assert float((p - q).abs().max()) <= 1e-2 * moved, name
    fast, plain, _ = both(6)
    for key, value in without_time(plain.records)[-1].items():
        if key.endswith("_acc"):
            assert abs(fast.records[-1][key] - value) <= 2 / len(DATA.y_test) + 1e-12, key
        elif isinstance(value, float):
            assert fast.records[-1][key] == pytest.approx(value, rel=1e-2), key


def test_existing_run_is_never_overwritten_silently(tmp_path: torch.Tensor) -> None:
    out = tmp_path / "run"
    train(config(max_steps=2), data=DATA, out_dir=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match="already holds a run"):
        train(config(max_steps=3), data=DATA, out_dir=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    train(config(max_steps=3), data=DATA, out_dir=out, overwrite=True)
    assert json.loads((out / rundir.SUMMARY).read_text())["final"]["step"] == 3


def test_checkpoints_never_run_code(tmp_path: torch.Tensor) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "meta": Evil()}, path)
    with pytest.raises(DataError, match=r"is not a ninr checkpoint: it asks to import \S*print") as exc:
        rundir.load_checkpoint(path)
    assert "weights_only" not in str(exc.value)  # torch's own message suggests weights_only=False: never


def test_config_round_trip_and_run_id() -> None:
    cfg = config(methods=NINR, model_kwargs={"width": 32})
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert run_id(cfg.to_dict()) == run_id(config(methods=NINR, model_kwargs={"width": 32}).to_dict())
    assert run_id(cfg.to_dict()) != run_id(cfg.replace(seed=1).to_dict())
    with pytest.raises(ConfigError, match="unknown config key 'lr_'"):
        TrainConfig.from_dict({"lr_": 0.1})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": -0.1}, "`lr` must be a finite number > 0, got -0.1"),
        ({"lr": float("nan")}, "`lr` must be a finite number > 0, got nan"),
        ({"batch_size": 0}, "`batch_size` must be an integer >= 1, got 0"),
        ({"momentum": 1.5}, "`momentum` must be a number in [0, 1), got 1.5"),
        ({"methods": NINR + NINR}, "`methods` must be a list without repeats"),
    ],
)
def test_bad_config_values_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(**changes)
    assert str(info.value).startswith(message)


def test_bad_names_fail_before_training() -> None:
    with pytest.raises(ConfigError, match="did you mean 'mlp'"):
        train(config(model="mpl"), data=DATA)
    with pytest.raises(ConfigError, match="did you mean 'in-ninr'"):
        train(config(methods=(MethodSpec("in_ninr"),)), data=DATA)
    with pytest.raises(ConfigError, match="has no parameter 'sigm'"):
        train(config(methods=(MethodSpec("in-ninr", {"sigm": 1.0}),)), data=DATA)


def fashion_mnist_present() -> bool:
    """Whether the four Fashion-MNIST files are on this machine (only their presence: a corrupt file fails the test)."""
    try:
        locate_fashion_mnist(download=False)
    except DataError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_present(), reason="Fashion-MNIST files are not on this machine (ninr data fetch)")
def test_mlp_reaches_80_percent_on_fashion_mnist_in_one_epoch() -> None:
    data = load_dataset("fashion-mnist", download=False)
    result = train(TrainConfig(epochs=1, seed=0), data=data)
    assert result.status == "completed"
    assert result.final["test_acc"] > 0.80


def test_ninr_method_calibrates_sigma_for_a_requested_phase(tmp_path: torch.Tensor) -> None:
    from ninr.methods.calibrate import PHASE_TARGET_K

    cfg = config(methods=(MethodSpec("in-ninr", {"phase": "decay"}),), max_steps=2)
    result = train(cfg, data=DATA, out_dir=tmp_path / "run")
    cal = result.setup["calibration"]
    assert cal["phase"] == "decay" and cal["k"] == PHASE_TARGET_K["decay"]
    assert cal["sigma"] ** 2 * cfg.lr * cal["curvature"] == pytest.approx(cal["k"], rel=1e-9)
    node = next(iter(nin_nodes(result.model).values()))
    assert node.sigma == pytest.approx(cal["sigma"])
    _, loaded = load_run(tmp_path / "run")
    assert loaded.methods[0].params["sigma"] == pytest.approx(cal["sigma"])
    with pytest.raises(ConfigError, match="`phase` must be one of"):
        train(config(methods=(MethodSpec("in-ninr", {"phase": "decy"}),)), data=DATA)
