"""Gradient noise (Neelakantan et al. 2015) for any torch optimizer, and the ``gradient-noise`` method.

At step t (0-based), i.i.d. N(0, eta / (1 + t)^gamma) noise is added to every gradient before the
optimizer uses it. :class:`GradientNoise` is a step hook, not an optimizer subclass: it works with
SGD, Adam or anything else, after ``clip_grad_norm_`` (which runs before ``optimizer.step()``) and
untouched by learning-rate schedulers (which only change ``lr``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ninr.errors import check_nonneg, check_nonneg_int, fail
from ninr.functional.perturb import NEELAKANTAN_ETA, add_gradient_noise
from ninr.functional.schedules import NEELAKANTAN_GAMMA
from ninr.methods.base import Method, StepContext, register


class GradientNoise:
    """Annealed Gaussian gradient noise as an optimizer step pre-hook.

    Args:
        params: the parameters whose gradients get noise (default: every parameter of the optimizer
            given to :meth:`attach`).
        eta: noise variance at step 0 (Neelakantan et al. pick from {0.01, 0.3, 1.0}; default 0.01).
        gamma: decay exponent of the variance (default 0.55).
        generator: the noise stream (``None``: torch's global generator).
        step: the step counter to start from (e.g. when resuming).

    Example:
        >>> model = nn.Linear(3, 1)
        >>> opt = torch.optim.Adam(model.parameters())
        >>> noise = GradientNoise(eta=0.01, generator=torch.Generator().manual_seed(0))
        >>> handle = noise.attach(opt)  # every opt.step() now adds noise first
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | None = None,
        *,
        eta: float = NEELAKANTAN_ETA,
        gamma: float = NEELAKANTAN_GAMMA,
        generator: torch.Generator | None = None,
        step: int = 0,
    ) -> None:
        self.params = list(params) if params is not None else None
        self.eta = check_nonneg("eta", eta)
        self.gamma = check_nonneg("gamma", gamma)
        self.generator = generator
        self.step = check_nonneg_int("step", step)
        self.last_std: float | None = None

    def apply(self, params: Iterable[torch.Tensor] | None = None) -> float:
        """Add this step's noise to the gradients now and advance the counter; returns the std used."""
        target = params if params is not None else self.params
        if target is None:
            raise fail("params", "given to apply() or to the constructor", None)
        self.last_std = add_gradient_noise(target, self.step, self.eta, self.gamma, generator=self.generator)
        self.step += 1
        return self.last_std

    def attach(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Add noise at the start of every ``optimizer.step()``; remove with the returned handle."""
        return optimizer.register_step_pre_hook(self._pre_step)

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = self.params if self.params is not None else [p for g in optimizer.param_groups for p in g["params"]]
        self.apply(params)

    def state_dict(self) -> dict[str, Any]:
        """The step counter and the generator state, for checkpoints."""
        gen = None if self.generator is None else self.generator.get_state()
        return {"step": self.step, "generator": gen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.step = check_nonneg_int("step", state["step"])
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])


@register
@dataclass(frozen=True)
class GradientNoiseMethod(Method):
    """Gaussian noise added to gradients before each optimizer step, variance eta / (1 + t)^gamma.

    Neelakantan et al. (2015). t is the run's SGD step (0-based); the noise reaches every trainable
    parameter, NIWs included, and is drawn from the method's own generator.

    Args:
        eta: variance at step 0 (default 0.01; the paper picks from {0.01, 0.3, 1.0}).
        gamma: decay exponent (default 0.55, as in the paper).
    """

    name: ClassVar[str] = "gradient-noise"
    stackable: ClassVar[bool] = True

    eta: float = NEELAKANTAN_ETA
    gamma: float = NEELAKANTAN_GAMMA

    def __post_init__(self) -> None:
        check_nonneg("eta", self.eta)
        check_nonneg("gamma", self.gamma)

    def on_grad_computed(self, model: nn.Module, ctx: StepContext) -> None:
        add_gradient_noise(model.parameters(), ctx.step, self.eta, self.gamma, generator=ctx.generator)
