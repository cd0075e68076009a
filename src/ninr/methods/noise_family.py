"""The classic noise-injection family: ``cdt``, ``input-noise``, ``activation-noise``, ``weight-noise``.

``cdt`` and ``input-noise`` are training-only batch transforms drawn from the method's own
generator: the model itself carries no noise, so ``eval()`` and :func:`~ninr.nn.force_noise` do not
concern them. ``activation-noise`` and ``weight-noise`` put noise modules in the model (on in
``train()``, off in ``eval()``, forced on by ``force_noise``), each seeded from the run's seed and
its own name. ``scale`` is a standard deviation for every distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ninr.errors import check_choice, check_nonneg, check_probability
from ninr.functional.noise import DISTRIBUTIONS
from ninr.functional.perturb import NOISE_MODES, add_noise, corrupt_batch
from ninr.functional.schedules import NEELAKANTAN_GAMMA, Schedule
from ninr.methods.base import Method, SetupContext, StepContext, register
from ninr.methods.placement import Where, as_where, select_modules, select_parameters
from ninr.nn.noise_layers import ActivationNoise, WeightNoise
from ninr.rng import derive_seed

CDT_STRENGTHS = (0.2, 0.4)
"""The corruption strengths of the NINR poster's CDT baseline."""


@register
@dataclass(frozen=True)
class CDT(Method):
    """Training on corrupted data: additive Gaussian noise of std ``strength`` on each training batch.

    The noise is added in pixel space ([0, 1]) and the result clipped to [0, 1], so corrupted
    images are valid images (see :func:`ninr.functional.perturb.corrupt_batch`). A ``fraction`` of
    each batch (``round(fraction * B)`` examples, drawn anew each step) is corrupted; the rest is clean.

    Args:
        strength: noise std in pixel units (default 0.2; the poster uses 0.2 and 0.4).
        fraction: share of each batch corrupted, in [0, 1] (default 1.0).
    """

    name: ClassVar[str] = "cdt"
    stackable: ClassVar[bool] = True

    strength: float = CDT_STRENGTHS[0]
    fraction: float = 1.0

    def __post_init__(self) -> None:
        check_nonneg("strength", self.strength)
        check_probability("fraction", self.fraction, closed_right=True)

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        return corrupt_batch(x, strength=self.strength, fraction=self.fraction, generator=ctx.generator), y


@register
@dataclass(frozen=True)
class InputNoiseMethod(Method):
    """Noise added to the inputs at each training step (data augmentation), with a scale schedule.

    Unlike ``cdt`` the noisy inputs are not clipped (the classic input-noise regularizer of Bishop
    1995) and every example gets noise. The std at step t is ``scale * schedule(t)``.

    Args:
        scale: noise std in pixel units at step 0 (default 0.1).
        distribution: gaussian, uniform, laplace or impulse (``ninr list distributions``).
        schedule: constant, linear, cosine or anneal (``ninr list schedules``).
        decay_steps: steps over which ``linear``/``cosine`` decay to ``final`` (required by them).
        final: factor reached after ``decay_steps`` (default 0).
        gamma: exponent of ``anneal``: variance falls as (1 + t)^-gamma (default 0.55).
    """

    name: ClassVar[str] = "input-noise"
    stackable: ClassVar[bool] = True

    scale: float = 0.1
    distribution: str = "gaussian"
    schedule: str = "constant"
    decay_steps: int | None = None
    final: float = 0.0
    gamma: float = NEELAKANTAN_GAMMA

    def __post_init__(self) -> None:
        check_nonneg("scale", self.scale)
        DISTRIBUTIONS.get(self.distribution)
        self.scale_schedule()

    def scale_schedule(self) -> Schedule:
        """The validated schedule of this method's noise scale."""
        return Schedule(self.schedule, decay_steps=self.decay_steps, final=self.final, gamma=self.gamma)

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.scale * self.scale_schedule()(ctx.step)
        return add_noise(x, scale=scale, distribution=self.distribution, generator=ctx.generator), y


@register
@dataclass(frozen=True)
class ActivationNoiseMethod(Method):
    """Additive or multiplicative (Gaussian-dropout style) noise on the hidden activations.

    Multiplicative Gaussian noise of std ``s`` is Gaussian dropout of rate ``p = s^2 / (1 + s^2)``;
    the default ``s = 1`` matches dropout's default rate 0.5 (Srivastava et al. 2014, section 10).

    Args:
        scale: noise std (default 1.0).
        distribution: a registered distribution (default gaussian).
        mode: ``"multiplicative"`` (x (1 + s eps), default) or ``"additive"`` (x + s eps).
        where: ``"hidden"`` (after every hidden activation, default) or module names / globs.
    """

    name: ClassVar[str] = "activation-noise"
    stackable: ClassVar[bool] = True

    scale: float = 1.0
    distribution: str = "gaussian"
    mode: str = "multiplicative"
    where: Where = "hidden"

    def __post_init__(self) -> None:
        check_nonneg("scale", self.scale)
        DISTRIBUTIONS.get(self.distribution)
        check_choice("mode", self.mode, NOISE_MODES)
        object.__setattr__(self, "where", as_where("where", self.where))

    def configure_model(self, model: nn.Module, ctx: SetupContext) -> dict[str, Any]:
        names = select_modules(model, self.where, ctx.example_input)
        modules = dict(model.named_modules())
        for n in names:
            noise = ActivationNoise(
                self.scale,
                distribution=self.distribution,
                mode=self.mode,
                seed=derive_seed(ctx.seed, "activation-noise", n),
            )
            noise.attach_after(modules[n], "activation_noise")
        return {"activation_noise_after": names}


@register
@dataclass(frozen=True)
class WeightNoiseMethod(Method):
    """Weights perturbed by fresh noise on every forward pass; the stored weights stay untouched.

    Gradients are taken at the perturbed weights (Graves 2011-style weight noise). See
    :class:`~ninr.nn.WeightNoise`.

    Args:
        scale: absolute noise std in weight units (default 0.01).
        distribution: a registered distribution (default gaussian).
        which: ``"weights"`` (every Linear/Conv weight, default), ``"all"`` (weights and biases), or
            names / globs of parameters (``"fc1.weight"``, ``"*.bias"``). NIWs are never perturbed.
    """

    name: ClassVar[str] = "weight-noise"
    stackable: ClassVar[bool] = True

    scale: float = 0.01
    distribution: str = "gaussian"
    which: Where = "weights"

    def __post_init__(self) -> None:
        check_nonneg("scale", self.scale)
        DISTRIBUTIONS.get(self.distribution)
        object.__setattr__(self, "which", as_where("which", self.which))

    def configure_model(self, model: nn.Module, ctx: SetupContext) -> dict[str, Any]:
        targets = select_parameters(model, self.which)
        modules = dict(model.named_modules())
        for layer, names in targets.items():
            noise = WeightNoise(
                names, self.scale, distribution=self.distribution, seed=derive_seed(ctx.seed, "weight-noise", layer)
            )
            noise.attach(modules[layer])
        return {"weight_noise_params": [f"{layer}.{n}" if layer else n for layer, ns in targets.items() for n in ns]}
