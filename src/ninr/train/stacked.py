"""Stacked multi-run training: K runs that share an architecture, trained as one batched computation.

A sweep holds many small runs that differ only in seed, sigma, learning rate, momentum, a method's
scalar hyperparameters or NIN placement. Their per-step work is a handful of small matrix products, so
their time goes to per-operation overhead; stacking K of them into ``(K, ...)`` tensors turns K small
products into one batched product (``baddbmm`` for dense layers, a grouped convolution for conv layers).

Each run keeps its own data order, noise streams, initialisation and records, so
:func:`train_stacked` gives, per run, what :func:`ninr.train.train` gives for that config alone (to float
tolerance; the tests check it). :func:`train_many` is the hook for sweeps: it groups configs with
:func:`group_stackable`, stacks each group and trains the rest one by one, saying so in the log. Both take
per-run callbacks, called as :func:`ninr.train.train` calls them.

A config trains one by one (:func:`solo_reason` says why) when a method has no stacked form, when its model
has none (it is built once, at a nominal input, to find out), or when the model has convolutions and the
device is one where stacking them is slower than one by one (:func:`ninr.perf.stack_convolutions`: CPU).

Example:
    >>> from ninr.train import TrainConfig
    >>> cfgs = [TrainConfig(dataset="synthetic", epochs=1, max_steps=2, seed=s) for s in range(3)]
    >>> group_stackable(cfgs)
    [[0, 1, 2]]
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ninr.data.base import Dataset, load_dataset
from ninr.errors import ConfigError, check_positive_int
from ninr.methods.base import METHODS, Method
from ninr.models.layers import channel_stats
from ninr.models.registry import build_model
from ninr.nn.nin import DEFAULT_CONV_MODE
from ninr.perf import check_precision, stack_convolutions, use_channels_last
from ninr.rng import scoped_global_seed
from ninr.train import rundir
from ninr.train.callbacks import Callback
from ninr.train.config import TrainConfig, canonical_json, run_id
from ninr.train.run import TrainResult, _MetricsWriter, _run_meta, _write_outputs, build_setup, resolve, train
from ninr.train.stacked_fit import fit_stacked
from ninr.train.stacked_model import NotStackableError, StackedNet, why_not_stackable

log = logging.getLogger(__name__)

SETUP_METHODS = ("in-ninr", "full-ninr")
"""Methods that change the model and whose result :class:`StackedNet` knows (noise injection nodes)."""

PENALTY_METHODS = ("l2",)
"""Methods with a loss penalty the stacked loop computes itself."""

MAX_STACK = 32
"""Default largest stack: beyond it batched products gain little and memory grows linearly."""

_SHARED = ("dataset", "model", "batch_size", "epochs", "max_steps", "device", "precision", "eval_batch_size")
"""Config fields every run of a stack must share (plus dataset and model kwargs)."""


def method_stackable(name: str) -> bool:
    """Whether runs using method ``name`` can be stacked.

    Yes for ``none``, the NINR methods, ``l2``, and any method whose only hook is ``transform_batch``
    (applied to each run's slice with that run's generator, e.g. ``cdt``, ``input-noise``).
    """
    if name in SETUP_METHODS or name in PENALTY_METHODS:
        return True
    cls = METHODS.get(name)
    hooks = ("configure_model", "penalty", "on_grad_computed")
    return all(getattr(cls, h) is getattr(Method, h) for h in hooks)


def stack_key(config: TrainConfig) -> str | None:
    """Configs with equal keys can share one stack; ``None`` when the config cannot be stacked at all."""
    if not all(method_stackable(m.name) for m in config.methods):
        return None
    shared: dict[str, Any] = {f: getattr(config, f, None) for f in _SHARED}
    shared["dataset_kwargs"] = dict(config.dataset_kwargs)
    shared["model_kwargs"] = dict(config.model_kwargs)
    # Noise nodes of one layer must agree in shape: per-example vs per-pixel, channel vs additive.
    nin = [
        (dict(m.params).get("per", "example"), dict(m.params).get("conv_mode", DEFAULT_CONV_MODE))
        for m in config.methods
    ]
    shared["nin"] = [v for m, v in zip(config.methods, nin, strict=True) if m.name in SETUP_METHODS] or [
        ("example", DEFAULT_CONV_MODE)
    ]
    return canonical_json(shared)


PROBE_INPUT = (1, 28, 28)
"""The nominal input a model is built at to learn its structure (layers do not depend on the input size)."""


@functools.lru_cache(maxsize=64)
def _model_form(model: str, kwargs_json: str) -> tuple[str | None, bool]:
    """(why the model has no stacked form, or None; whether it has convolutions), from one build on the CPU."""
    try:
        with scoped_global_seed(0):  # the build draws its init from the global generator: leave it as it was
            built = build_model(model, PROBE_INPUT, 10, **json.loads(kwargs_json))
    except (ConfigError, TypeError, ValueError, RuntimeError):  # wants another input: the stack finds out itself
        return None, False
    return why_not_stackable(built), any(isinstance(m, torch.nn.Conv2d) for m in built.modules())


def solo_reason(config: TrainConfig) -> str | None:
    """Why ``config`` trains one by one whatever the other configs are; ``None`` when it may share a stack."""
    blocked = [m.name for m in config.methods if not method_stackable(m.name)]
    if blocked:
        return f"method(s) {blocked} have no stacked form"
    no_form, has_conv = _model_form(config.model, canonical_json(dict(config.model_kwargs)))
    if no_form is not None:
        return f"model {config.model!r} has no stacked form ({no_form})"
    if has_conv and not stack_convolutions(config.device):
        where = torch.device(config.device).type
        return f"model {config.model!r} has convolutions, which train faster one by one than stacked on {where}"
    return None


def composition_invariant(config: TrainConfig) -> bool:
    """Whether a run of ``config`` gets bit for bit the same records in any stack (any K, any partners, any slot).

    Yes for a model without convolutions on the CPU: every stacked op computes each run's slice alone with a
    kernel that does not depend on K (a batched matrix product per slice, element-wise ops, per-run
    reductions); tested for K = 1..8 in every order. Not for convolutions: oneDNN picks a grouped
    convolution's kernel by the total channel count (a 1-channel input stacked 3 times takes its 3-channel
    path, whose weight gradient rounds differently), nor on CUDA, whose libraries pick kernels by size. The
    sweep relies on it to resume a part-finished stack with only its missing runs, and to split stacks by
    the number of workers without changing records.
    """
    if torch.device(config.device).type != "cpu":
        return False
    _, has_conv = _model_form(config.model, canonical_json(dict(config.model_kwargs)))
    return not has_conv


def group_stackable(configs: Sequence[TrainConfig], max_stack: int = MAX_STACK) -> list[list[int]]:
    """Indices of ``configs`` grouped into stacks (in order of first appearance, at most ``max_stack`` each).

    A config with a :func:`solo_reason`, or without a partner, is a group of one.
    """
    check_positive_int("max_stack", max_stack)
    groups: list[list[int]] = []
    open_group: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        key = None if solo_reason(config) is not None else stack_key(config)
        if key is None:
            groups.append([i])
            continue
        group = open_group.get(key)
        if group is None or len(group) >= max_stack:
            group = open_group[key] = []
            groups.append(group)
        group.append(i)
    return groups


def train_stacked(
    configs: Sequence[TrainConfig],
    *,
    data: Dataset | None = None,
    out_dirs: Sequence[str | Path | None] | None = None,
    overwrite: bool = False,
    callbacks: Sequence[Sequence[Callback]] | None = None,
) -> list[TrainResult]:
    """Train ``configs`` (one stack: equal :func:`stack_key`) as one computation; one result per config.

    ``callbacks``: one sequence per config, called as :func:`ninr.train.train` calls a run's callbacks (their
    ``state.model`` is the run's own model, its parameters views of the stack until training ends).

    Raises:
        ConfigError: the configs do not share a stack key.
        NotStackableError: the built models have no stacked form (nothing has been written yet).
    """
    started = time.perf_counter()
    keys = {stack_key(c) for c in configs}
    if not configs or None in keys or len(keys) != 1:
        raise ConfigError("`configs` must be non-empty and stackable together (equal stack_key); use train_many")
    user_callbacks = _per_config(callbacks, len(configs))
    cfg = configs[0]
    check_precision(cfg.precision, cfg.device)
    resolved = [resolve(c) for c in configs]
    if data is None:
        data = load_dataset(cfg.dataset, **dict(cfg.dataset_kwargs))
    data = data.to(cfg.device)
    stats = channel_stats(data.x_train)
    setups = [
        build_setup(c, data.input_shape, data.num_classes, ms, stats)
        for c, (_, ms) in zip(configs, resolved, strict=True)
    ]
    models = [model for model, _ in setups]
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in models[0].modules())
    net = StackedNet(models, use_channels_last=has_conv and use_channels_last(cfg.device, models[0]))
    outs = _prepare_outs(out_dirs, len(configs), overwrite)
    metas = []
    for k, ((res, _), (_, setup)) in enumerate(zip(resolved, setups, strict=True)):
        setup["stacked"] = {"runs": len(configs), "index": k}
        metas.append(_run_meta(run_id(res), res, data, setup))
        out = outs[k]
        if out is not None:
            rundir.atomic_write_json(out / rundir.CONFIG, metas[k])

    writers: list[list[Callback]] = [[_MetricsWriter(out / rundir.METRICS)] if out is not None else [] for out in outs]
    per_run = [[*w, *cbs] for w, cbs in zip(writers, user_callbacks, strict=True)]
    states = fit_stacked(net, data, configs, [ms for _, ms in resolved], per_run)
    net.release()
    wall = (time.perf_counter() - started) / len(configs)
    results = []
    for k, state in enumerate(states):
        res, setup = resolved[k][0], setups[k][1]
        out = outs[k]
        result = TrainResult(run_id(res), res, state.status, state.records, state.model, setup, wall, out)
        if out is not None:
            _write_outputs(out, result, metas[k])
        results.append(result)
    return results


def train_many(
    configs: Sequence[TrainConfig],
    data: Dataset | None = None,
    *,
    out_dirs: Sequence[str | Path | None] | None = None,
    overwrite: bool = False,
    max_stack: int = MAX_STACK,
    callbacks: Sequence[Sequence[Callback]] | None = None,
    min_stack: int = 2,
) -> list[TrainResult]:
    """Train every config, stacking those that can share a stack; results in the order of ``configs``.

    Groups come from :func:`group_stackable`; a group smaller than ``min_stack``, or a group whose models
    turn out not to stack, is trained one by one with :func:`ninr.train.train`, and the log (logger
    ``ninr.train.stacked``) says which and why. ``min_stack=1`` trains even a config without a partner as a
    stack of one (unless it has a :func:`solo_reason`), so that its records are bit for bit those a larger
    stack gives it where :func:`composition_invariant` holds (the sweep uses it for a stack split across
    workers or resumed part-way). ``data``, when given, is used for every config (as :func:`train` does);
    otherwise each data set is loaded once per call. ``callbacks``: one sequence per config, stacked or not.
    """
    check_positive_int("min_stack", min_stack)
    outs = list(out_dirs) if out_dirs is not None else [None] * len(configs)
    if len(outs) != len(configs):
        raise ConfigError(f"`out_dirs` must have one entry per config ({len(configs)}), got {len(outs)}")
    cbs = _per_config(callbacks, len(configs))
    cache: dict[str, Dataset] = {}
    results: list[TrainResult | None] = [None] * len(configs)
    for group in group_stackable(configs, max_stack):
        group_data = data if data is not None else _load(configs[group[0]], cache)
        solo = solo_reason(configs[group[0]]) if len(group) == 1 else None
        stack_it = len(group) >= min_stack and solo is None
        if stack_it:
            try:
                done = train_stacked(
                    [configs[i] for i in group],
                    data=group_data,
                    out_dirs=[outs[i] for i in group],
                    overwrite=overwrite,
                    callbacks=[cbs[i] for i in group],
                )
            except NotStackableError as exc:
                log.warning("training %d runs one by one: their models do not stack (%s)", len(group), exc)
            else:
                log.info("trained %d runs as one stack (%s)", len(group), configs[group[0]].model)
                for i, result in zip(group, done, strict=True):
                    results[i] = result
                continue
        for i in group:
            if not stack_it:
                why = solo or (why_alone(configs[i]) if len(group) == 1 else f"groups under min_stack={min_stack}")
                log.info("training run %d one by one: %s", i, why)
            results[i] = train(configs[i], data=group_data, out_dir=outs[i], overwrite=overwrite, callbacks=cbs[i])
    return [r for r in results if r is not None]


def why_alone(config: TrainConfig) -> str:
    """Why ``config`` is a group of one: its :func:`solo_reason`, else that it has no partner."""
    return solo_reason(config) or "no other run shares its architecture, data, batch size, epochs and precision"


def _per_config(callbacks: Sequence[Sequence[Callback]] | None, n: int) -> list[list[Callback]]:
    if callbacks is None:
        return [[] for _ in range(n)]
    if len(callbacks) != n:
        raise ConfigError(f"`callbacks` must have one sequence per config ({n}), got {len(callbacks)}")
    return [list(c) for c in callbacks]


def _load(config: TrainConfig, cache: dict[str, Dataset]) -> Dataset:
    key = canonical_json([config.dataset, dict(config.dataset_kwargs)])
    if key not in cache:
        cache[key] = load_dataset(config.dataset, **dict(config.dataset_kwargs))
    return cache[key]


def _prepare_outs(out_dirs: Sequence[str | Path | None] | None, n: int, overwrite: bool) -> list[Path | None]:
    if out_dirs is None:
        return [None] * n
    if len(out_dirs) != n:
        raise ConfigError(f"`out_dirs` must have one entry per config ({n}), got {len(out_dirs)}")
    return [None if d is None else rundir.prepare_run_dir(Path(d), overwrite=overwrite) for d in out_dirs]
