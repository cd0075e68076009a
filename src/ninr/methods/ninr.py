"""in-NINR and full-NINR: noise injection nodes at the input layer or at every layer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from ninr.errors import ConfigError, check_choice, check_nonneg
from ninr.functional.noise import DISTRIBUTIONS
from ninr.methods.base import Method, SetupContext, register
from ninr.methods.calibrate import PILOT_STEPS, Calibration, sigma_for_phase
from ninr.nn.attach import attach_nins
from ninr.nn.nin import CONV_MODES, DEFAULT_CONV_MODE, NOISE_PER
from ninr.rng import derive_seed

CALIBRATED_PHASES = ("decay", "catapult")
"""Phases a NINR method can be asked for instead of a sigma (see :mod:`ninr.methods.calibrate`)."""


@dataclass(frozen=True)
class _NINR(Method):
    """Shared body of the NINR methods; ``where`` is set by the subclass."""

    sigma: float = 1.0
    distribution: str = "gaussian"
    per: str = "example"
    conv_mode: str = DEFAULT_CONV_MODE
    niw_init: str | float = "layer"
    phase: str | None = None

    where: ClassVar[str] = "input"
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_nonneg("sigma", self.sigma)
        if self.phase is not None:
            check_choice("phase", self.phase, CALIBRATED_PHASES)
        DISTRIBUTIONS.get(self.distribution)
        check_choice("per", self.per, NOISE_PER)
        check_choice("conv_mode", self.conv_mode, CONV_MODES)

    def stack_signature(self) -> Any:
        """How the nodes connect: a stacked layer's nodes must all draw per example or all per pixel, and
        feed a convolution the same way."""
        return {"nin": [self.per, self.conv_mode]}

    def configure_model(self, model: nn.Module, ctx: SetupContext) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        sigma = self.sigma
        if self.phase is not None:
            calibration = self._calibrate(model, ctx)
            sigma = calibration.sigma
            facts["calibration"] = calibration.as_dict()
        report = attach_nins(
            model,
            self.where,
            sigma=sigma,
            distribution=self.distribution,
            per=self.per,  # type: ignore[arg-type]
            conv_mode=self.conv_mode,  # type: ignore[arg-type]
            niw_init=self.niw_init,
            seed=derive_seed(ctx.seed, "nin"),
            example_input=ctx.example_input,
        )
        return {"nin_layers": report.layers, **facts}

    def _calibrate(self, model: nn.Module, ctx: SetupContext) -> Calibration:
        """The sigma that puts the NINs in ``self.phase`` (:func:`sigma_for_phase`) on the curvature of the
        calibration pilot (the plain model after ``PILOT_STEPS`` steps), replacing ``sigma``."""
        if ctx.probe is None or ctx.lr is None or ctx.pilot is None:
            raise ConfigError(
                f"`phase` must be None when no training data is at hand to calibrate sigma, got {self.phase!r}"
            )
        x, y = ctx.probe
        pilot = ctx.pilot(PILOT_STEPS)
        at_init = sigma_for_phase(model, x, y, lr=ctx.lr, phase=str(self.phase), where=self.where, seed=ctx.seed)
        cal = sigma_for_phase(pilot, x, y, lr=ctx.lr, phase=str(self.phase), where=self.where, seed=ctx.seed)
        return dataclasses.replace(cal, pilot_steps=PILOT_STEPS, curvature_init=at_init.curvature)


@register
@dataclass(frozen=True)
class InNINR(_NINR):
    """One noise injection node at the input layer (in-NINR)."""

    name: ClassVar[str] = "in-ninr"
    where: ClassVar[str] = "input"


@register
@dataclass(frozen=True)
class FullNINR(_NINR):
    """A noise injection node at every Linear/Conv2d layer (full-NINR)."""

    name: ClassVar[str] = "full-ninr"
    where: ClassVar[str] = "all"
    conflicts: ClassVar[Mapping[str, str]] = {"in-ninr": "full-ninr already puts a node on the input layer"}
