"""What a run is before its first step: the resolved config, the model with every method applied, its facts.

One path for every backend: :func:`prepare_run` builds a run's model under the seed its config derives,
applies its methods (with the calibration batch a phase-calibrated method needs), and says what the methods
did (``setup``). A run trained alone and the same run inside a stack start from this same state.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ninr.data.base import Dataset, is_registered
from ninr.methods.base import Method, SetupContext, build, check_compatible
from ninr.models.layers import InputStats, channel_stats
from ninr.models.registry import build_model
from ninr.perf import resolve_precision, use_channels_last
from ninr.rng import derive_seed, make_generator, scoped_global_seed
from ninr.train.backends.single import SingleBackend
from ninr.train.config import MethodSpec, TrainConfig, run_id
from ninr.train.fit import fit
from ninr.version import __version__

PROBE_SIZE = 1000
"""Training examples in the fixed batch methods may calibrate on (enough for a stable curvature estimate)."""


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
    pilot: Callable[[int], nn.Module] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The model with every method applied, initialised from the config's seed, on its device.

    ``input_stats`` (per-channel mean and std of the training images) become the model's fixed
    input standardisation; ``probe`` is the batch and ``pilot`` the pilot run a phase-calibrated method
    calibrates on.
    """
    kwargs = {"input_stats": input_stats, **dict(config.model_kwargs)}
    with scoped_global_seed(derive_seed(config.seed, "model-init")):
        model = build_model(config.model, input_shape, num_classes, **kwargs)
    model.to(config.device)
    example = torch.zeros((2, *input_shape), device=config.device)
    setup: dict[str, Any] = {}
    for method in methods:
        ctx = SetupContext(config.seed, example, probe, config.lr, pilot)
        setup.update(method.configure_model(model, ctx))
    return model, setup


def pilot_run(config: TrainConfig, data: Dataset, input_stats: InputStats) -> Callable[[int], nn.Module]:
    """``pilot(steps)``: the plain model of ``config`` (its initialisation, no method) trained for ``steps`` SGD
    steps of the run's own batches (its ``data-order`` stream), as :func:`ninr.train.fit.fit` trains it."""

    def pilot(steps: int) -> nn.Module:
        plain = config.replace(
            methods=(), max_steps=steps, epochs=math.ceil(steps * config.batch_size / len(data.x_train)) + 1
        )
        model, _ = build_setup(plain, data.input_shape, data.num_classes, [], input_stats)
        fit(SingleBackend(model, lr=plain.lr, momentum=plain.momentum), data, [plain], [[]])
        return model

    return pilot


def calibration_probe(data: Dataset, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of training examples drawn with the run's ``"calibration-probe"`` stream."""
    gen = make_generator(seed, "calibration-probe")
    idx = torch.randperm(len(data.x_train), generator=gen)[:PROBE_SIZE].to(data.x_train.device)
    return data.x_train[idx], data.y_train[idx]


def data_identity(config: TrainConfig, data: Dataset) -> dict[str, Any] | None:
    """``None`` when ``data`` is exactly the registered data set ``config`` names (``load_dataset(config.dataset,
    **config.dataset_kwargs)``, unchanged); otherwise the data's :meth:`~ninr.data.Dataset.identity` (its
    content's sha256 and shapes), which then joins the run's id and its ``config.json``."""
    if is_registered(data, config.dataset, config.dataset_kwargs):
        return None
    return data.identity()


def config_run_id(resolved: dict[str, Any], data: dict[str, Any] | None) -> str:
    """The run id: the hash of the resolved config, and of the data's identity when the data is not the
    registered data set the config names (so the run ids of registered data are the config's alone)."""
    return run_id(resolved if data is None else {**resolved, "data": data})


@dataclass
class PreparedRun:
    """A run ready to train: its config, resolved config and id, method objects, model and setup facts.

    ``data``: the identity of the data it trains on when that is not the registered data set the config
    names (:func:`data_identity`), else ``None``.
    """

    config: TrainConfig
    resolved: dict[str, Any]
    run_id: str
    methods: list[Method]
    model: nn.Module
    setup: dict[str, Any]
    data: dict[str, Any] | None = None


def prepare_run(config: TrainConfig, data: Dataset, input_stats: InputStats | None = None) -> PreparedRun:
    """Resolve ``config`` and build its model on ``data`` (already on the config's device), methods applied.

    The run's id is its resolved config's, joined by the data's identity where ``data`` is not the registered
    data set the config names (:func:`data_identity`): two runs on different data never share an id.

    ``input_stats``: the training images' per-channel mean and std, when the caller has them (runs that share
    a data set share them; computing them reads every training image).
    """
    resolved, methods = resolve(config)
    probe = calibration_probe(data, config.seed)
    stats = channel_stats(data.x_train) if input_stats is None else input_stats
    pilot = pilot_run(config, data, stats)
    model, setup = build_setup(config, data.input_shape, data.num_classes, methods, stats, probe, pilot)
    if config.precision == "auto":  # the id names "auto"; the setup says what this machine computed in
        setup["precision"] = resolve_precision(config.precision, config.device)
    identity = data_identity(config, data)
    return PreparedRun(config, resolved, config_run_id(resolved, identity), methods, model, setup, identity)


def to_conv_layout(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Put a model with convolutions in channels-last memory format where :func:`ninr.perf.use_channels_last` says so.

    Why: a CNN's training step is about a quarter faster channels-last on CPU (docs/speed.md). The weights alone
    suffice (the first convolution then outputs channels-last and the rest follow). The layout lets oneDNN pick
    other convolution kernels, whose float32 results differ in rounding, so :func:`ninr.train.train` and
    :func:`ninr.train.load_run` both call this: a reloaded checkpoint computes with the kernels it was trained
    with. Models without convolutions, and models with a convolution the CPU's channels-last path gets wrong
    (strided 1x1: ResNet shortcuts), are left alone. In place; returns it.
    """
    if any(isinstance(m, nn.Conv2d) for m in model.modules()) and use_channels_last(device, model):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def with_calibrated_sigma(config: TrainConfig, setup: dict[str, Any]) -> TrainConfig:
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


def versions() -> dict[str, str]:
    """Versions that can change results."""
    return {"ninr": __version__, "torch": torch.__version__, "python": platform.python_version()}
