"""The configuration of one training run, as data.

A :class:`TrainConfig` is frozen and JSON-serialisable. Its *resolved* form fills in every method's
default hyperparameters; the run id is a hash of that resolved form, so two configs that train the
same thing share an id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ninr.errors import (
    ConfigError,
    check_choice,
    check_device,
    check_nonneg_int,
    check_positive,
    check_positive_int,
    check_probability,
    fail,
)
from ninr.perf import PRECISIONS


@dataclass(frozen=True)
class MethodSpec:
    """A regularization method by name, with the hyperparameters the user set."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


PER_RUN: Mapping[str, Any] = {"stack": "per-run"}
"""Field metadata: runs of one stack may differ in this field (:func:`ninr.train.stacking.stack_key`). A field
without it is shared by every run of a stack, so a new field splits stacks until it is declared per-run."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one training run.

    Attributes:
        dataset: a name in ``ninr.data.DATASETS``.
        dataset_kwargs: keyword arguments of the dataset loader (e.g. ``{"val_size": 5000}``).
        model: a name in ``ninr.models.MODELS``.
        model_kwargs: keyword arguments of the model builder (e.g. ``{"width": 512}``).
        methods: regularization methods applied together (empty: plain SGD).
        lr: SGD learning rate.
        momentum: SGD momentum (the paper's setting is plain SGD: 0).
        batch_size: examples per SGD step.
        epochs: passes over the training set, at least 1 (a run of 0 epochs would train nothing and record
            nothing); ``max_steps`` may end the run earlier.
        max_steps: stop after this many SGD steps in total (``None``: no limit).
        seed: the one seed every random stream of the run derives from.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        eval_batch_size: batch size of evaluation passes (no effect on results).
        precision: ``"fp32"`` (default, the reference for every published number), ``"bf16"``
            (autocast around forward and loss, fp32 weights; needs native bf16, see ``ninr.perf``) or
            ``"auto"`` (bf16 where the device has it natively, else fp32: :func:`ninr.perf.resolve_precision`;
            the precision a run computed in is in its setup and its record's ``meta``).
            Left out of :meth:`to_dict` when ``"fp32"``, so the run ids of fp32 runs do not name it.

    Fields marked :data:`PER_RUN` (methods, lr, momentum, seed) may differ between the runs of one stack; every
    other field is shared by them.
    """

    dataset: str = "fashion-mnist"
    dataset_kwargs: Mapping[str, Any] = field(default_factory=dict)
    model: str = "mlp"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    methods: tuple[MethodSpec, ...] = field(default=(), metadata=PER_RUN)
    lr: float = field(default=0.05, metadata=PER_RUN)
    momentum: float = field(default=0.0, metadata=PER_RUN)
    batch_size: int = 64
    epochs: int = 5
    max_steps: int | None = None
    seed: int = field(default=0, metadata=PER_RUN)
    device: str = "cpu"
    eval_batch_size: int = 2000
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_probability("momentum", self.momentum)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("epochs", self.epochs)
        if self.max_steps is not None:
            check_positive_int("max_steps", self.max_steps)
        check_nonneg_int("seed", self.seed)
        check_positive_int("eval_batch_size", self.eval_batch_size)
        check_choice("precision", self.precision, PRECISIONS)
        check_device("device", self.device)  # the format only: a config may be written where its device is absent
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise fail("methods", "a list without repeats", names)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["methods"] = [{"name": m.name, "params": dict(m.params)} for m in self.methods]
        d["dataset_kwargs"] = dict(self.dataset_kwargs)
        d["model_kwargs"] = dict(self.model_kwargs)
        if d["precision"] == "fp32":
            del d["precision"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        d = dict(data)
        d["methods"] = tuple(MethodSpec(m["name"], dict(m.get("params", {}))) for m in d.get("methods", ()))
        return cls(**d)


def canonical_json(data: Any) -> str:
    """Deterministic JSON text (sorted keys, no whitespace) used for hashing."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def run_id(resolved: Mapping[str, Any]) -> str:
    """A short stable id: the first 12 hex digits of the sha256 of the resolved config."""
    return hashlib.sha256(canonical_json(resolved).encode()).hexdigest()[:12]
