"""Performance policy: threads, the bf16 switch (config, loop, CLI), channels-last helpers."""

from __future__ import annotations

import os

import pytest
import torch

from ninr import perf
from ninr.cli import main
from ninr.data import load_dataset
from ninr.errors import ConfigError
from ninr.train import TrainConfig, run_id, train
from ninr.train.setup import resolve


@pytest.fixture
def restore_threads() -> object:
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def test_threads_per_worker_splits_cores_and_never_drops_below_one() -> None:
    assert perf.threads_per_worker(1, cores=8) == 8
    assert perf.threads_per_worker(3, cores=8) == 2
    assert perf.threads_per_worker(32, cores=8) == 1
    assert 1 <= perf.threads_per_worker() <= perf.available_cores()
    assert 1 <= perf.idle_cores() <= perf.available_cores()
    with pytest.raises(ConfigError, match="`workers` must be"):
        perf.threads_per_worker(0)


def test_configure_threads_sets_torch(restore_threads: object) -> None:
    assert perf.configure_threads(4, cores=4) == 1
    assert torch.get_num_threads() == 1
    assert perf.configure_threads(1, load_aware=True) == torch.get_num_threads() <= perf.available_cores()


def test_num_threads_restores_and_worker_initializer_sets_env(
    restore_threads: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    with perf.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    for var in perf.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    perf.worker_initializer(1)
    assert torch.get_num_threads() == 1
    assert all(os.environ[v] == "1" for v in perf.THREAD_ENV_VARS)
    assert perf.thread_env(3) == dict.fromkeys(perf.THREAD_ENV_VARS, "3")


def test_precision_is_validated_and_fp32_keeps_old_run_ids() -> None:
    with pytest.raises(ConfigError, match="`precision` must be one of"):
        TrainConfig(precision="fp16")
    fp32, bf16 = TrainConfig(), TrainConfig(precision="bf16")
    assert "precision" not in fp32.to_dict() and bf16.to_dict()["precision"] == "bf16"
    assert TrainConfig.from_dict(bf16.to_dict()) == bf16
    assert run_id(resolve(fp32)[0]) != run_id(resolve(bf16)[0])


def test_bf16_without_native_support_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perf, "bf16_support", lambda device="cpu": False)
    monkeypatch.delenv(perf.EMULATED_BF16_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"native bf16.*precision 'fp32'"):
        perf.check_precision("bf16", "cpu")
    assert perf.check_precision("fp32", "cpu") == "fp32"
    monkeypatch.setenv(perf.EMULATED_BF16_ENV, "1")
    assert perf.check_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_resolves_to_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(perf, "bf16_support", lambda device="cpu": native)
    monkeypatch.delenv(perf.EMULATED_BF16_ENV, raising=False)
    expected = "bf16" if native else "fp32"
    assert perf.resolve_precision("auto") == perf.check_precision("auto") == expected  # never an error
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    with perf.autocast("auto"):
        assert torch.bmm(a, b).dtype == (torch.bfloat16 if native else torch.float32)
    auto = TrainConfig(precision="auto")
    assert auto.to_dict()["precision"] == "auto"  # the id names "auto", on every machine alike
    assert run_id(resolve(auto)[0]) not in (
        run_id(resolve(TrainConfig())[0]),
        run_id(resolve(auto.replace(precision="bf16"))[0]),
    )


def test_auto_precision_run_says_what_it_computed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perf, "bf16_support", lambda device="cpu": False)
    data = load_dataset("synthetic", n_train=64, n_test=32)
    cfg = TrainConfig(dataset="synthetic", epochs=1, max_steps=2, batch_size=32, precision="auto")
    result = train(cfg, data=data)
    assert result.status == "completed" and result.setup["precision"] == "fp32"
    assert "precision" not in train(cfg.replace(precision="fp32"), data=data).setup


def test_cli_precision_flag_fails_early_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.setattr(perf, "bf16_support", lambda device="cpu": False)
    monkeypatch.delenv(perf.EMULATED_BF16_ENV, raising=False)
    out = tmp_path / "run"  # type: ignore[operator]
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "synthetic", "--precision", "bf16", "--max-steps", "1", "--out", str(out)])
    assert exc.value.code == 2
    assert "bf16" in capsys.readouterr().err
    assert not out.exists()


def test_autocast_switches_matmuls_to_bf16_and_fp32_is_untouched() -> None:
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    with perf.autocast("fp32"):
        assert torch.bmm(a, b).dtype == torch.float32
    with perf.autocast("bf16"):
        assert torch.bmm(a, b).dtype == torch.bfloat16


def test_bf16_training_through_the_fit_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(perf.EMULATED_BF16_ENV, "1")
    data = load_dataset("synthetic", n_train=128, n_test=64)
    base = TrainConfig(dataset="synthetic", epochs=1, batch_size=32, model_kwargs={"width": 32})
    with perf.num_threads(1):  # tiny steps: extra threads only wait on each other on a shared machine
        fp32, bf16 = train(base, data=data), train(base.replace(precision="bf16"), data=data)
    assert bf16.status == "completed"
    # bf16 keeps 8 significant bits (unit roundoff 2^-8 = 3.9e-3); autocast rounds each matmul's inputs to it and
    # accumulates in float32, so each layer moves the logits by ~2^-8 relative and one epoch's mean loss by a few
    # times that, ~1e-2 at worst: rel 0.05 (measured 1.4e-5 on AVX-512 with AVX512-BF16; emulated bf16 rounds alike)
    assert bf16.final["train_loss"] == pytest.approx(fp32.final["train_loss"], rel=0.05)
    assert bf16.final["train_loss"] != fp32.final["train_loss"]  # the bf16 path really ran


def test_channels_last_helper() -> None:
    x = torch.randn(2, 3, 4, 5)
    y = perf.channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y)
    assert perf.channels_last(x, enabled=False) is x
    assert perf.channels_last(torch.randn(3, 4)).is_contiguous()
    assert isinstance(perf.use_channels_last("cpu"), bool)
    assert isinstance(perf.bf16_support("cpu"), bool)


def test_channels_last_is_refused_where_the_cpu_gets_it_wrong() -> None:
    """Strided 1x1 convolutions (ResNet shortcuts) stay contiguous on the CPU (oneDNN#6035; docs/speed.md)."""
    from ninr.models import build_model
    from ninr.train.setup import to_conv_layout

    cnn = build_model("cnn", (1, 8, 8), 10, channels=(2, 4), hidden=8)
    resnet = build_model("resnet18", (2, 8, 8), 2, width=4)
    assert perf.use_channels_last("cpu", cnn) and not perf.use_channels_last("cpu", resnet)
    assert perf.use_channels_last("cuda", resnet) and not perf.use_channels_last("meta", cnn)
    assert to_conv_layout(cnn, "cpu").conv2.weight.is_contiguous(memory_format=torch.channels_last)
    conv = [m for m in to_conv_layout(resnet, "cpu").modules() if getattr(m, "kernel_size", None) == (3, 3)][-1]
    assert conv.weight.is_contiguous() and not conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not perf.stack_convolutions("cpu") and perf.stack_convolutions("cuda")


def test_machine_names_the_cpu_its_cores_and_the_flags_measurements_depend_on() -> None:
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo to compare the flags with (not Linux)")
    text = perf.machine()
    assert f"{perf.available_cores()} cores, {perf.cpu_capability()}" in text
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    for flag in perf.MACHINE_FLAGS:  # named exactly when the CPU has it
        assert (f" {flag}" in text or f"({flag}" in text) == (flag in flags), flag
