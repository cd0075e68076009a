"""The training run: reproducibility, divergence as data, run directories, configs."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

import ninr.train.setup as train_setup
from helpers import seeded
from ninr.data import load_dataset, locate_fashion_mnist
from ninr.errors import ConfigError, DataError
from ninr.models import build_model
from ninr.nn import nin_nodes
from ninr.train import MethodSpec, TrainConfig, evaluate, load_run, run_id, rundir, train
from ninr.train.setup import to_conv_layout

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
    """Bits are the claim: both runs use this machine, its kernels and this thread count (another CPU gives other
    bits, alike for both)."""
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
    assert torch.equal(model(x), result.model(x))  # one machine, one layout, one kernel: the same bits
    _, acc = evaluate(model, DATA.x_test, DATA.y_test)
    assert acc == pytest.approx(result.final["test_acc"])


def float32_error(got: torch.Tensor, exact: torch.Tensor) -> float:
    """The L2 norm of a float32 result's error against its float64 value."""
    return float((got.detach().double() - exact.detach()).norm())


@pytest.mark.usefixtures("one_thread")
def test_channels_last_convolutions_are_as_accurate_as_contiguous_ones() -> None:
    """The CNN's two convolution layers, forward and every gradient, in the layout training uses (channels-last)
    and contiguous, against float64. Both layouts run oneDNN's direct convolutions (``alg:convolution_direct``
    in ONEDNN_VERBOSE: blocked jit kernels for contiguous tensors, brgemm kernels for channels-last, on AVX2 and
    AVX-512 alike) and sum the same products in other orders, so their errors are float32 rounding of the same
    order: the ratio of the two error norms was at most 2.0 (AVX-512) and 1.4 (AVX2: ATEN_CPU_CAPABILITY=avx2
    ONEDNN_MAX_CPU_ISA=AVX2) over 10 seeds, each layer and output. A kernel that computes something else
    (oneDNN#6035 returned a weight gradient 52% off) has a ratio of order 1e5. The bound: 10 times the contiguous
    error, or 10 unit roundoffs of the result where that error is below one.

    Whole-model gradients are no test of this: a max-pool window whose two largest inputs lie within the
    layouts' rounding difference of each other (a few in 1e5 windows) sends the gradient to the other input,
    a discrete change (measured: 0.3% of conv2's weight gradient, for 2 of 30 initialisations) that is float
    arithmetic and not the layout; the records test below covers the run."""
    with seeded(0):
        model = build_model("cnn", (1, 28, 28), 10)
    fast = to_conv_layout(copy.deepcopy(model), "cpu")
    g = torch.Generator().manual_seed(0)
    for name, size in (("conv1", 28), ("conv2", 14)):
        plain_layer = getattr(model, name)
        fast_layer = getattr(fast, name)
        assert fast_layer.weight.is_contiguous(memory_format=torch.channels_last)
        x = torch.rand(32, plain_layer.in_channels, size, size, generator=g)
        up = torch.randn(32, plain_layer.out_channels, size, size, generator=g)

        def outputs(layer: torch.nn.Module, inputs: torch.Tensor, upstream: torch.Tensor) -> tuple:
            inputs = inputs.clone().requires_grad_()
            y = layer(inputs)
            return (y, *torch.autograd.grad(y, (inputs, layer.weight, layer.bias), upstream))

        cl = torch.channels_last
        got = outputs(fast_layer, x.contiguous(memory_format=cl), up.contiguous(memory_format=cl))
        plain = outputs(plain_layer, x, up)
        exact = outputs(copy.deepcopy(plain_layer).double(), x.double(), up.double())
        for what, a, b, want in zip(
            ("output", "input grad", "weight grad", "bias grad"), got, plain, exact, strict=True
        ):
            floor = 2.0**-24 * float(want.detach().norm())
            assert float32_error(a, want) <= 10 * max(float32_error(b, want), floor), (name, what)


@pytest.mark.usefixtures("one_thread")
def test_channels_last_changes_a_cnn_run_only_within_float32_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a run records after six steps trained channels-last (the default) and contiguous. Each step's
    gradients differ by float32 rounding, about 2e-6 of their norm (the test above bounds it by the contiguous
    kernels' own error), and, where a max-pool window's two largest inputs lie within that rounding of each other,
    by a gradient routed to the other input (0.3% of one layer's gradient, measured). Six SGD steps at lr 0.05 of a
    run that does not diverge carry such differences into the losses and NIW norms at about 1e-5 relative at most,
    so rel 1e-3 leaves a factor of 100 (measured: 2e-8 on AVX-512 and AVX2). An accuracy changes only where an
    example's two largest logits lie within that difference of each other: within two test examples.
    Bit-identity is a claim for one kernel only (test_training_is_bit_for_bit_reproducible)."""
    cfg = config(methods=NINR, model="cnn", epochs=1, max_steps=6)
    fast = train(cfg, data=DATA)
    monkeypatch.setattr(train_setup, "use_channels_last", lambda *args: False)
    plain = train(cfg, data=DATA)
    assert fast.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    for key, value in without_time(plain.records)[-1].items():
        if key.endswith("_acc"):
            assert abs(fast.records[-1][key] - value) <= 2 / len(DATA.y_test) + 1e-12, key
        elif isinstance(value, float):
            assert fast.records[-1][key] == pytest.approx(value, rel=1e-3), key
        else:
            assert fast.records[-1][key] == value, key


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
