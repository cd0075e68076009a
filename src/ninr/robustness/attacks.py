"""Gradient attacks: FGSM and PGD under the L-inf or L2 norm, several epsilons in one call.

Every epsilon's adversarial batch is computed together (the batch is repeated once per epsilon), so a
list of epsilons costs one set of forward and backward passes on a larger batch. The contracts:

* outputs lie in [0, 1] and within ``epsilon`` of the input (in the chosen norm); epsilon 0 returns the
  input exactly; the input tensor is not modified;
* the model runs in eval mode during the attack and every submodule's mode is restored afterwards;
  parameter gradients are neither computed into ``.grad`` nor changed;
* a model whose noise is left on (``ninr.nn.force_noise(model, True)``) is attacked with expectation over
  transformation (EOT, Athalye et al. 2018): each gradient is the mean over ``eot_samples`` noise draws.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ninr.errors import ConfigError, check_choice, check_nonneg, check_positive, check_positive_int, fail
from ninr.nn.modes import noise_modules
from ninr.registry import Registry
from ninr.robustness.corruptions.base import check_images

NORMS = ("linf", "l2")
EOT_DEFAULT = 8  # gradient samples per step for a model whose noise is on (when not given)
PGD_STEP_FACTOR = 2.5  # Madry et al. (2018): step size 2.5 epsilon / steps


ATTACKS: Registry[Callable[..., torch.Tensor]] = Registry("attack", group="ninr.attacks")


def check_epsilons(epsilons: Any) -> list[float]:
    """A non-empty sequence of finite numbers >= 0."""
    if isinstance(epsilons, int | float) and not isinstance(epsilons, bool):
        epsilons = [epsilons]
    if not isinstance(epsilons, Sequence) or isinstance(epsilons, str) or not epsilons:
        raise fail("epsilons", "a non-empty list of numbers >= 0", epsilons)
    return [check_nonneg("epsilon", e) for e in epsilons]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode inside the block and restore every submodule's own mode afterwards."""
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in saved:
            m.training = mode


def noise_is_on(model: nn.Module) -> bool:
    """Whether any noise module of ``model`` injects noise in its current mode."""
    return any(m.noise_active for m in noise_modules(model))


def _prepare(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Any, norm: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    if not isinstance(model, nn.Module):
        raise fail("model", "a torch.nn.Module", type(model).__name__)
    check_images(x)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
        raise fail("y", f"an int64 tensor of shape ({len(x)},)", getattr(y, "shape", type(y).__name__))
    check_choice("norm", norm, NORMS)
    if torch.is_inference_mode_enabled():
        raise ConfigError("attacks need gradients: call them outside torch.inference_mode()")
    eps = check_epsilons(epsilons)
    n = len(x)
    x_rep = x.detach().repeat(len(eps), 1, 1, 1)
    eps_rep = torch.tensor(eps, dtype=x.dtype, device=x.device).repeat_interleave(n).view(-1, 1, 1, 1)
    return x_rep, y.repeat(len(eps)), eps_rep, x_rep.clone(), len(eps)


def _gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, samples: int) -> torch.Tensor:
    """The input gradient of the summed cross-entropy, averaged over ``samples`` forward passes."""
    x_adv = x_adv.detach().requires_grad_(True)
    total = torch.zeros_like(x_adv)
    with torch.enable_grad():
        for _ in range(samples):
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            total += grad
    return total / samples


def _norm2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit norm: sign(g) for L-inf, g / ||g|| for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / _norm2(grad).clamp(min=1e-12)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Back into the epsilon ball around ``x``, then into [0, 1] (which keeps it inside the ball)."""
    delta = x_adv - x
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, eps), -eps)
    else:
        delta = delta * torch.clamp(eps / _norm2(delta).clamp(min=1e-12), max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def _finish(adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, count: int) -> torch.Tensor:
    adv = torch.where(eps == 0, x, adv).detach()
    return adv.view(count, -1, *x.shape[1:])


def _eot(model: nn.Module, eot_samples: int | None) -> int:
    if eot_samples is not None:
        return check_positive_int("eot_samples", eot_samples)
    return EOT_DEFAULT if noise_is_on(model) else 1


@ATTACKS.register("fgsm")
def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float],
    *,
    norm: str = "linf",
    eot_samples: int | None = None,
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size epsilon.

    Args:
        model: a classifier returning logits.
        x: images (N, C, H, W) in [0, 1].
        y: labels (N,), int64.
        epsilons: perturbation budgets (>= 0), in the norm ``norm``.
        norm: ``"linf"`` (sign of the gradient) or ``"l2"`` (normalised gradient).
        eot_samples: gradient samples per step; ``None``: 1, or :data:`EOT_DEFAULT` when noise is on.

    Returns:
        Adversarial images (E, N, C, H, W), one batch per epsilon.
    """
    x_rep, y_rep, eps, x_adv, count = _prepare(model, x, y, epsilons, norm)
    with eval_mode(model):
        grad = _gradient(model, x_adv, y_rep, _eot(model, eot_samples))
    adv = _project(x_rep + eps * _ascent(grad, norm), x_rep, eps, norm)
    return _finish(adv, x_rep, eps, count)


def _random_start(x: torch.Tensor, eps: torch.Tensor, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device) * 2 - 1
        return _project(x + eps * noise, x, eps, norm)
    direction = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    radius = torch.rand((len(x), 1, 1, 1), generator=generator, device=device, dtype=x.dtype).to(x.device)
    dims = math.prod(x.shape[1:])
    step = direction / _norm2(direction).clamp(min=1e-12) * radius ** (1.0 / dims)
    return _project(x + eps * step, x, eps, norm)


@ATTACKS.register("pgd")
def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float],
    *,
    norm: str = "linf",
    steps: int = 10,
    step_ratio: float | None = None,
    random_start: bool = True,
    eot_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018): ``steps`` ascent steps, each projected on the ball.

    Args:
        model: a classifier returning logits.
        x: images (N, C, H, W) in [0, 1].
        y: labels (N,), int64.
        epsilons: perturbation budgets (>= 0), in the norm ``norm``.
        norm: ``"linf"`` or ``"l2"``.
        steps: number of steps.
        step_ratio: step size as a fraction of epsilon; ``None``: ``2.5 / steps``.
        random_start: start from a uniform point of the ball (drawn from ``generator``).
        eot_samples: gradient samples per step; ``None``: 1, or :data:`EOT_DEFAULT` when noise is on.
        generator: the random start's stream.

    Returns:
        Adversarial images (E, N, C, H, W), one batch per epsilon.
    """
    check_positive_int("steps", steps)
    ratio = PGD_STEP_FACTOR / steps if step_ratio is None else check_positive("step_ratio", step_ratio)
    x_rep, y_rep, eps, x_adv, count = _prepare(model, x, y, epsilons, norm)
    with eval_mode(model):
        samples = _eot(model, eot_samples)
        if random_start:
            x_adv = _random_start(x_rep, eps, norm, generator)
        for _ in range(steps):
            grad = _gradient(model, x_adv, y_rep, samples)
            x_adv = _project(x_adv + ratio * eps * _ascent(grad, norm), x_rep, eps, norm)
    return _finish(x_adv, x_rep, eps, count)


def attack(
    name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float], **options: Any
) -> torch.Tensor:
    """Run the attack registered as ``name`` (see :data:`ATTACKS`); returns (E, N, C, H, W)."""
    return ATTACKS.get(name)(model, x, y, epsilons, **options)
