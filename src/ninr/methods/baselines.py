"""Baselines of the comparison table: ``none``, ``l2`` and ``dropout``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ninr.errors import check_nonneg, check_probability
from ninr.functional.penalties import add_l2_grad_, l2_penalty
from ninr.methods.base import Method, SetupContext, register
from ninr.methods.placement import LAYERS, Where, as_where, select_modules
from ninr.nn.noise_layers import NoiseDropout
from ninr.rng import derive_seed


@register
@dataclass(frozen=True)
class NoMethod(Method):
    """Plain SGD, no regularization."""

    name: ClassVar[str] = "none"
    stackable: ClassVar[bool] = True


@register
@dataclass(frozen=True)
class L2(Method):
    """L2 penalty: coefficient * sum of squared weights of the Linear/Conv layers (biases, NIWs excluded).

    The penalty ``c * sum(w^2)`` enters through its gradient ``2 c w``, added to each weight's gradient after
    backward (:func:`ninr.functional.penalties.add_l2_grad_`; the same values autograd gives for the penalty
    in the loss, and applied run by run in a stack). With plain SGD it is the update of
    ``torch.optim.SGD(weight_decay=2 c)`` restricted to those weights. Biases and noise injection weights are
    left out, as is usual for weight decay (and the NIWs must stay free to decay on their own: that decay is
    what NINR is about).

    Args:
        coefficient: c >= 0 (default 1e-4, i.e. weight decay 2e-4).
    """

    name: ClassVar[str] = "l2"
    stackable: ClassVar[bool] = True

    coefficient: float = 1e-4

    def __post_init__(self) -> None:
        check_nonneg("coefficient", self.coefficient)

    def add_penalty_grad(self, model: nn.Module) -> None:
        add_l2_grad_(l2_weights(model), self.coefficient)

    def value(self, model: nn.Module) -> torch.Tensor:
        """The penalty ``c * sum(w^2)`` over :func:`l2_weights` (for logging; training uses its gradient)."""
        return l2_penalty(l2_weights(model), self.coefficient)


def l2_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors the ``l2`` penalty covers: the ``weight`` of every Linear/Conv layer."""
    out: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, LAYERS):
            w = m._parameters.get("weight")
            if w is not None and w.requires_grad:
                out.append(w)
    return out


@register
@dataclass(frozen=True)
class Dropout(Method):
    """Dropout after each hidden layer: inverted dropout on the output of every hidden activation.

    Works on any model: the hidden activations are the activation modules (``nn.ReLU``, ...) after
    which a Linear/Conv layer still runs (found with one forward pass). Each gets a
    :class:`~ninr.nn.NoiseDropout` child applied by a forward hook, so no parameter moves and the
    ``state_dict`` keys stay the same. Off in ``eval()``; seeded from the run's seed.

    Args:
        rate: drop probability in [0, 1) (default 0.5, Srivastava et al. 2014 for hidden units).
        where: ``"hidden"`` or module names / globs after which to drop.
    """

    name: ClassVar[str] = "dropout"
    stackable: ClassVar[bool] = True

    rate: float = 0.5
    where: Where = "hidden"

    def __post_init__(self) -> None:
        check_probability("rate", self.rate)
        object.__setattr__(self, "where", as_where("where", self.where))

    def configure_model(self, model: nn.Module, ctx: SetupContext) -> dict[str, Any]:
        names = select_modules(model, self.where, ctx.example_input)
        modules = dict(model.named_modules())
        for n in names:
            NoiseDropout(self.rate, seed=derive_seed(ctx.seed, "dropout", n)).attach_after(modules[n], "dropout")
        return {"dropout_after": names}
