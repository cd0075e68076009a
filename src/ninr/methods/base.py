"""The method protocol: a regularization method is a set of hooks into one training run.

A method is a small dataclass of validated hyperparameters with hooks called by the fit loop at the
right place (cf. skorch's callbacks): ``configure_model`` once before the optimizer is built,
``transform_batch`` on each training batch, ``penalty`` added to the loss, ``add_penalty_grad`` and then
``on_grad_computed`` between backward and the optimizer step. Every hook is a no-op by default.

A method declares whether runs using it may share a stack (:attr:`Method.stackable`, read by
:mod:`ninr.train.stacking`): in a stack each hook still sees one run, through that run's own objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ninr.errors import ConfigError
from ninr.registry import Registry


@dataclass(frozen=True)
class SetupContext:
    """What a method may use while configuring a model.

    ``probe`` is a fixed, seeded batch of training examples ``(x, y)`` and ``lr`` the run's learning rate,
    for methods that calibrate themselves (``None`` where unavailable, e.g. when a model is rebuilt from a
    checkpoint). ``pilot(steps)`` trains a copy of the plain model (the same initialisation, no method) for
    ``steps`` SGD steps of the run's own batches and returns it: the curvature a run reaches after the
    sharpening transient, for calibration (``None`` where no training data is at hand).
    """

    seed: int
    example_input: torch.Tensor
    probe: tuple[torch.Tensor, torch.Tensor] | None = None
    lr: float | None = None
    pilot: Callable[[int], nn.Module] | None = None


@dataclass(frozen=True)
class StepContext:
    """What a method may use at one training step. ``generator`` is the method's own stream."""

    step: int
    epoch: int
    generator: torch.Generator


class Method:
    """Base class of regularization methods; subclasses are frozen dataclasses registered by name."""

    name: ClassVar[str] = ""
    conflicts: ClassVar[Mapping[str, str]] = {}
    """Methods this one cannot be combined with, and why (checked both ways by :func:`check_compatible`)."""
    stackable: ClassVar[bool] = False
    """Whether runs using this method may train in a stack of runs (:mod:`ninr.train.stacking`). True when every
    hook it overrides works on one run through that run's own objects: ``transform_batch`` on the run's slice of
    the batch, ``add_penalty_grad`` and ``on_grad_computed`` on the run's model, whose parameters and gradients
    are then views of the stack, and ``configure_model`` only by attaching what the stacked network knows (noise
    injection nodes; the dropout, activation-noise and weight-noise modules of
    :mod:`ninr.train.backends.stacked_noise`). ``penalty`` is never stackable: its autograd graph would not reach
    the stack."""

    def configure_model(self, model: nn.Module, ctx: SetupContext) -> dict[str, Any]:
        """Change the model in place before training; returns facts worth recording (may be empty)."""
        return {}

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch the model sees at this step."""
        return x, y

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the training loss, or ``None``."""
        return None

    def add_penalty_grad(self, model: nn.Module) -> None:
        """Add the gradient of a loss penalty to the parameters' ``.grad``, after ``backward()`` and before every
        method's ``on_grad_computed``: a penalty given by its gradient (what ``l2`` does), which a stack applies
        run by run on gradient views."""

    def stack_signature(self) -> Any:
        """What runs sharing a stack must agree on when they use this method (``None``: nothing), e.g. how a
        noise injection node is connected; part of :func:`ninr.train.stacking.stack_key`."""
        return None

    def on_grad_computed(self, model: nn.Module, ctx: StepContext) -> None:
        """Called after ``backward()`` (and every method's ``add_penalty_grad``) and before ``optimizer.step()``."""

    def params(self) -> dict[str, Any]:
        """The resolved hyperparameters (defaults filled in), for the run's config."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


METHODS: Registry[type[Method]] = Registry("method", group="ninr.methods")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: register a method under its ``name``."""
    METHODS.add(cls.name, cls, doc=cls.__doc__)
    return cls


def get(name: str) -> type[Method]:
    """The method class called ``name`` (did-you-mean on a miss)."""
    return METHODS.get(name)


def check_compatible(methods: Sequence[Method]) -> None:
    """Raise :class:`ConfigError` if two of ``methods`` make no sense together (e.g. in-ninr with full-ninr)."""
    names = [m.name for m in methods]
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            why = a.conflicts.get(b.name) or b.conflicts.get(a.name)
            if why is not None:
                raise ConfigError(
                    f"`methods` must be compatible, got {names}: {a.name!r} and {b.name!r} cannot be combined ({why})"
                )


def build(name: str, params: dict[str, Any] | None = None) -> Method:
    """Instantiate method ``name`` with ``params``; an unknown parameter is an error naming it."""
    cls = get(name)
    params = dict(params or {})
    fields: set[str] = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ConfigError(
            f"method {name!r} has no parameter {unknown[0]!r} (its parameters: {', '.join(sorted(fields)) or 'none'})"
        )
    return cls(**params)
