"""``train(config) -> TrainResult``: one training run from a config, with no global state.

This is the entry point the CLI and the experiment runner call. It loads the data, builds the
model under a seed derived from the config, applies the methods, trains, and (given ``out_dir``)
writes the run directory.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ninr
from ninr.data.base import Dataset, load_dataset
from ninr.methods.base import Method, SetupContext, build, check_compatible
from ninr.models.layers import InputStats, channel_stats
from ninr.models.registry import build_model
from ninr.perf import use_channels_last
from ninr.rng import derive_seed, make_generator, scoped_global_seed
from ninr.train import rundir
from ninr.train.callbacks import Callback, FitState
from ninr.train.config import MethodSpec, TrainConfig, run_id
from ninr.train.loop import fit


@dataclass
class TrainResult:
    """The outcome of :func:`train`."""

    run_id: str
    config: dict[str, Any]
    status: str
    records: list[dict[str, Any]]
    model: nn.Module
    setup: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    out_dir: Path | None = None

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's record (empty if no epoch finished)."""
        return self.records[-1] if self.records else {}


def resolve(config: TrainConfig) -> tuple[dict[str, Any], list[Method]]:
    """The config as a dict with every method's hyperparameters filled in, and the method objects."""
    methods = [build(spec.name, dict(spec.params)) for spec in config.methods]
    check_compatible(methods)
    resolved = config.to_dict()
    resolved["methods"] = [{"name": m.name, "params": m.params()} for m in methods]
    return resolved, methods


def build_setup(
    config: TrainConfig,
    input_shape: Sequence[int],
    num_classes: int,
    methods: Sequence[Method],
    input_stats: InputStats = ((0.0,), (1.0,)),
    probe: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The model with every method applied, initialised from the config's seed, on its device.

    ``input_stats`` (per-channel mean and std of the training images) become the model's fixed
    input standardisation.
    """
    kwargs = {"input_stats": input_stats, **dict(config.model_kwargs)}
    with scoped_global_seed(derive_seed(config.seed, "model-init")):
        model = build_model(config.model, input_shape, num_classes, **kwargs)
    model.to(config.device)
    example = torch.zeros((2, *input_shape), device=config.device)
    setup: dict[str, Any] = {}
    for method in methods:
        setup.update(method.configure_model(model, SetupContext(config.seed, example, probe, config.lr)))
    return model, setup


def train(
    config: TrainConfig,
    *,
    data: Dataset | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train one run described by ``config``; with ``out_dir``, write its run directory.

    Example:
        >>> cfg = TrainConfig(dataset="synthetic", epochs=1, max_steps=2)
        >>> train(cfg).status
        'stopped'
    """
    started = time.perf_counter()
    resolved, methods = resolve(config)
    rid = run_id(resolved)
    out = rundir.prepare_run_dir(Path(out_dir), overwrite=overwrite) if out_dir is not None else None
    if data is None:
        data = load_dataset(config.dataset, **dict(config.dataset_kwargs))
    data = data.to(config.device)
    probe = calibration_probe(data, config.seed)
    model, setup = build_setup(config, data.input_shape, data.num_classes, methods, channel_stats(data.x_train), probe)
    to_conv_layout(model, config.device)
    meta = _run_meta(rid, resolved, data, setup)
    if out is not None:
        rundir.atomic_write_json(out / rundir.CONFIG, meta)
    writers: list[Callback] = [_MetricsWriter(out / rundir.METRICS)] if out is not None else []
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    with scoped_global_seed(derive_seed(config.seed, "global")):
        state = fit(model, optimizer, data, config, methods, [*writers, *callbacks])
    result = TrainResult(rid, resolved, state.status, state.records, model, setup, time.perf_counter() - started, out)
    if out is not None:
        _write_outputs(out, result, meta)
    return result


def to_conv_layout(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Put a model with convolutions in channels-last memory format where :func:`ninr.perf.use_channels_last` says so.

    Why: a CNN's training step is about a quarter faster channels-last on CPU (docs/speed.md). The weights alone
    suffice (the first convolution then outputs channels-last and the rest follow). Layout changes rounding in
    the last bit only, so :func:`train` and :func:`load_run` both call this: a reloaded checkpoint computes
    exactly what the trained model computed. Models without convolutions, and models with a convolution the
    CPU's channels-last path gets wrong (strided 1x1: ResNet shortcuts), are left alone. In place; returns it.
    """
    if any(isinstance(m, nn.Conv2d) for m in model.modules()) and use_channels_last(device, model):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


PROBE_SIZE = 1000
"""Training examples in the fixed batch methods may calibrate on (enough for a stable curvature estimate)."""


def calibration_probe(data: Dataset, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of training examples drawn with the run's ``"calibration-probe"`` stream."""
    gen = make_generator(seed, "calibration-probe")
    idx = torch.randperm(len(data.x_train), generator=gen)[:PROBE_SIZE].to(data.x_train.device)
    return data.x_train[idx], data.y_train[idx]


def _run_meta(rid: str, resolved: dict[str, Any], data: Dataset, setup: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": rid,
        "config": resolved,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "setup": setup,
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    """Versions that can change results."""
    return {"ninr": ninr.__version__, "torch": torch.__version__, "python": platform.python_version()}


def _write_outputs(out: Path, result: TrainResult, meta: dict[str, Any]) -> None:
    summary = {
        "run_id": result.run_id,
        "status": result.status,
        "epochs_completed": len(result.records),
        "final": result.final,
        "wall_time_s": result.wall_time_s,
    }
    rundir.atomic_write_json(out / rundir.SUMMARY, summary)
    rundir.save_checkpoint(out / rundir.CHECKPOINT, result.model.state_dict(), meta)


class _MetricsWriter(Callback):
    """Appends each epoch's record to ``metrics.jsonl`` as soon as it exists."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_epoch_end(self, state: FitState, record: dict[str, Any]) -> None:
        rundir.append_jsonl(self.path, record)


def _with_calibrated_sigma(config: TrainConfig, setup: dict[str, Any]) -> TrainConfig:
    """Replace a method's ``phase`` by the sigma it was calibrated to (no data is needed to rebuild)."""
    calibration = setup.get("calibration")
    if not calibration:
        return config
    specs = []
    for spec in config.methods:
        params = dict(spec.params)
        if params.get("phase") is not None:
            params.update(phase=None, sigma=float(calibration["sigma"]))
        specs.append(MethodSpec(spec.name, params))
    return config.replace(methods=tuple(specs))


def load_run(run_dir: str | Path, *, device: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild a trained model from its run directory (checkpoint loaded with ``weights_only=True``)."""
    path = Path(run_dir)
    state_dict, meta = rundir.load_checkpoint(path / rundir.CHECKPOINT, map_location=device)
    config = _with_calibrated_sigma(TrainConfig.from_dict({**meta["config"], "device": device}), meta.get("setup", {}))
    _, methods = resolve(config)
    model, _ = build_setup(config, meta["input_shape"], meta["num_classes"], methods)
    to_conv_layout(model, device)
    model.load_state_dict(state_dict)
    model.eval()
    return model, config
