"""Which runs may train as one stack: declared by the config's fields and the methods, checked by building.

Runs share a stack when they agree on every :class:`~ninr.train.config.TrainConfig` field not marked
:data:`~ninr.train.config.PER_RUN` (data set, model, batch size, epochs, device, precision, ...), when every
method they use is :attr:`~ninr.methods.base.Method.stackable` and their methods' ``stack_signature`` agree,
and when their model has a stacked form on their device. A config that cannot share a stack whatever its
partners has a :func:`solo_reason`.

Example:
    >>> from ninr.train import TrainConfig
    >>> cfgs = [TrainConfig(dataset="synthetic", epochs=1, max_steps=2, seed=s) for s in range(3)]
    >>> group_stackable(cfgs)
    [[0, 1, 2]]
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from typing import Any

import torch

from ninr.errors import ConfigError, check_positive_int
from ninr.methods.base import METHODS, Method, build
from ninr.models.registry import build_model
from ninr.nn.nin import DEFAULT_CONV_MODE
from ninr.perf import stack_convolutions
from ninr.rng import scoped_global_seed
from ninr.train.backends.stacked_net import why_not_stackable
from ninr.train.config import TrainConfig, canonical_json

MAX_STACK = 32
"""Default largest stack: beyond it batched products gain little and memory grows linearly."""

DEFAULT_SIGNATURE = {"nin": ["example", DEFAULT_CONV_MODE]}
"""The signature of a run whose methods declare none: it stacks with runs whose noise nodes connect the
default way (a stacked layer's nodes must agree in how they draw and connect; a run without nodes has none)."""

PROBE_INPUT = (1, 28, 28)
"""The nominal input a model is built at to learn its structure (layers do not depend on the input size)."""


def method_stackable(name: str) -> bool:
    """Whether runs using method ``name`` may share a stack: it says so, and has no autograd ``penalty``."""
    cls = METHODS.get(name)
    return bool(cls.stackable) and cls.penalty is Method.penalty


def per_run_fields() -> tuple[str, ...]:
    """The :class:`TrainConfig` fields that may differ inside a stack (metadata ``stack = "per-run"``)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("stack") == "per-run")


def stack_key(config: TrainConfig) -> str | None:
    """Configs with equal keys may share one stack; ``None`` when the config cannot be stacked at all."""
    if not all(method_stackable(m.name) for m in config.methods):
        return None
    per_run = per_run_fields()
    shared: dict[str, Any] = {k: v for k, v in config.to_dict().items() if k not in per_run}
    signatures = [s for s in (build(m.name, dict(m.params)).stack_signature() for m in config.methods) if s]
    shared["signatures"] = signatures or [DEFAULT_SIGNATURE]
    return canonical_json(shared)


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
    convolution's kernel by the total channel count, nor on CUDA, whose libraries pick kernels by size. The
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


def why_alone(config: TrainConfig) -> str:
    """Why ``config`` is a group of one: its :func:`solo_reason`, else that it has no partner."""
    return solo_reason(config) or "no other run shares its architecture, data, batch size, epochs and precision"
