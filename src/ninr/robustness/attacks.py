"""Adversarial attacks: FGSM, PGD, APGD-CE (gradient) and Square (gradient-free), L-inf or L2, many epsilons.

Every epsilon's adversarial batch is computed together (the batch is repeated once per epsilon), so a
list of epsilons costs one set of forward (and backward) passes on a larger batch. The contracts every
registered attack keeps:

* outputs lie in [0, 1] and within ``epsilon`` of the input (in the chosen norm); epsilon 0 returns the
  input exactly; the input tensor is not modified; the output has the input's shape (one batch per
  epsilon in front), dtype and device;
* the model runs in eval mode during the attack and every submodule's mode is restored afterwards;
  parameter gradients are neither computed into ``.grad`` nor changed;
* randomness comes from the attack's ``generator`` only (``None``: torch's global generator), drawn in
  float32 whatever the input's dtype, so one seed gives one set of draws for every dtype;
* a model whose noise is left on (``ninr.nn.force_noise(model, True)``) is attacked with expectation over
  transformation (EOT, Athalye et al. 2018): each gradient, loss or margin is the mean over
  ``eot_samples`` noise draws.

Precision. The iterates are kept in ``float32`` for float16 and bfloat16 inputs (in the input's dtype
otherwise); the model always sees, and the attack returns, the iterate cast to the input's dtype with
every pixel rounded *towards the input* (:func:`round_toward`). Each pixel's perturbation then shrinks
in magnitude under the cast, so the ball and [0, 1] hold in the input's dtype exactly as they hold for
the working-precision iterate. The loss is computed in at least float32 from the model's logits.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ninr.errors import (
    ConfigError,
    as_number,
    check_choice,
    check_nonneg,
    check_positive,
    check_positive_int,
    check_probability,
    fail,
)
from ninr.nn.modes import noise_modules
from ninr.registry import Registry
from ninr.robustness.corruptions.base import check_images, check_labels

NORMS = ("linf", "l2")
EOT_DEFAULT = 8  # gradient samples per step for a model whose noise is on (when not given)
PGD_STEP_FACTOR = 2.5  # Madry et al. (2018): step size 2.5 epsilon / steps
APGD_STEPS = 100  # Croce and Hein (2020): 100 iterations per restart in AutoAttack's APGD-CE
APGD_MOMENTUM = 0.75  # alpha of the momentum step, Croce and Hein (2020), section 3
APGD_RHO = 0.75  # a checkpoint halves the step if fewer than rho of its steps increased the loss
SQUARE_QUERIES = 1000  # model evaluations per example (AutoAttack uses 5000; a budget, not a tuning)
SQUARE_P_INIT = 0.8  # initial fraction of pixels a square covers (AutoAttack's value for both norms)


ATTACKS: Registry[Callable[..., torch.Tensor]] = Registry("attack", group="ninr.attacks")


def check_epsilons(epsilons: Any) -> list[float]:
    """One number or a non-empty sequence of them (a list, a tuple, a 1-d array or tensor), each finite and >= 0.

    Numbers of any numeric type are taken (Python, NumPy scalars, 0-d arrays and tensors, :func:`as_number`).
    """
    if getattr(epsilons, "ndim", None) == 1 and callable(getattr(epsilons, "tolist", None)):
        epsilons = epsilons.tolist()  # a 1-d array or tensor
    single = as_number(epsilons)
    if isinstance(single, int | float) and not isinstance(single, bool):
        epsilons = [single]
    if not isinstance(epsilons, Sequence) or isinstance(epsilons, str) or not epsilons:
        raise fail("epsilons", "a number or a non-empty list of numbers >= 0", epsilons)
    return [check_nonneg("epsilon", as_number(e)) for e in epsilons]


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


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision of an attack's iterates: float32 for float16 and bfloat16, the dtype itself otherwise."""
    return torch.promote_types(dtype, torch.float32)


def round_toward(v: torch.Tensor, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``v`` cast to ``dtype``, each element rounded to the nearest value on ``x``'s side of ``v``.

    ``x`` must be exactly representable in ``dtype`` (it is the caller's input, cast up). Rounding to
    nearest can land beyond ``v`` as seen from ``x``; that element then moves one step back towards ``x``
    (``torch.nextafter``), which lies between ``x`` and ``v`` because ``x`` itself is representable. So
    ``|out - x| <= |v - x|`` element by element, and ``out`` is in [0, 1] when ``v`` is.
    """
    if v.dtype == dtype:
        return v
    out = v.to(dtype)
    back = out.to(v.dtype)
    beyond = ((back > v) & (v > x)) | ((back < v) & (v < x))
    return torch.where(beyond, torch.nextafter(out, x.to(dtype)), out)


@dataclass(frozen=True)
class _Problem:
    """A batch repeated once per epsilon, in working precision."""

    x: torch.Tensor  # (E N, C, H, W)
    y: torch.Tensor  # (E N,)
    eps: torch.Tensor  # (E N, 1, 1, 1)
    count: int  # E
    dtype: torch.dtype  # the caller's dtype: what the model sees and what is returned

    def finish(self, x_adv: torch.Tensor) -> torch.Tensor:
        """Epsilon 0 rows set to the input, cast to the caller's dtype, shaped (E, N, C, H, W)."""
        adv = round_toward(torch.where(self.eps == 0, self.x, x_adv), self.x, self.dtype).detach()
        return adv.view(self.count, -1, *self.x.shape[1:])


def _prepare(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Any, norm: str, *, needs_grad: bool = True
) -> _Problem:
    if not isinstance(model, nn.Module):
        raise fail("model", "a torch.nn.Module", type(model).__name__)
    check_images(x)
    check_labels(y, len(x))
    check_choice("norm", norm, NORMS)
    if needs_grad and torch.is_inference_mode_enabled():
        raise ConfigError("attacks need gradients: call them outside torch.inference_mode()")
    eps = check_epsilons(epsilons)
    work = working_dtype(x.dtype)
    n = len(x)
    x_rep = x.detach().to(work).repeat(len(eps), 1, 1, 1)
    eps_rep = torch.tensor(eps, dtype=work, device=x.device).repeat_interleave(n).view(-1, 1, 1, 1)
    return _Problem(x_rep, y.repeat(len(eps)), eps_rep, len(eps), x.dtype)


@dataclass(frozen=True)
class _Evaluation:
    """Per-example loss, input gradient and mean softmax at one point, averaged over the EOT draws."""

    loss: torch.Tensor  # (B,) cross-entropy
    grad: torch.Tensor  # (B, C, H, W), working precision
    probs: torch.Tensor  # (B, classes)


def _evaluate(
    model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, samples: int, dtype: torch.dtype
) -> _Evaluation:
    """Cross-entropy, its input gradient and the softmax at ``x_adv``, each the mean over ``samples`` passes.

    The model sees ``x_adv`` cast to ``dtype`` (rounded towards the clean ``x``).
    """
    x_in = round_toward(x_adv, x, dtype).detach().requires_grad_(True)
    work = x_adv.dtype
    loss = torch.zeros(len(x_in), dtype=work, device=x_in.device)
    grad = torch.zeros_like(x_adv)
    probs: torch.Tensor | float = 0.0
    with torch.enable_grad():
        for _ in range(samples):
            logits = model(x_in)
            logits = logits.to(torch.promote_types(logits.dtype, work))
            each = F.cross_entropy(logits, y, reduction="none")
            (g,) = torch.autograd.grad(each.sum(), x_in)
            loss += each.detach().to(work)
            grad += g.to(work)
            probs = probs + logits.detach().softmax(dim=1)
    assert isinstance(probs, torch.Tensor)
    return _Evaluation(loss / samples, grad / samples, probs / samples)


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


def _eot(model: nn.Module, eot_samples: int | None) -> int:
    if eot_samples is not None:
        return check_positive_int("eot_samples", eot_samples)
    return EOT_DEFAULT if noise_is_on(model) else 1


def _draw_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else x.device


def _uniform(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U(0, 1) draws in float32 (whatever ``like``'s dtype), returned in ``like``'s dtype and device."""
    u = torch.rand(tuple(shape), generator=generator, device=_draw_device(like, generator), dtype=torch.float32)
    return u.to(device=like.device, dtype=like.dtype)


def _normal(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    z = torch.randn(tuple(shape), generator=generator, device=_draw_device(like, generator), dtype=torch.float32)
    return z.to(device=like.device, dtype=like.dtype)


def _signs(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Independent signs +-1 (fair coins), in ``like``'s dtype and device."""
    bits = torch.randint(0, 2, tuple(shape), generator=generator, device=_draw_device(like, generator))
    return (bits * 2 - 1).to(device=like.device, dtype=like.dtype)


def _integers(high: int, n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` integers uniform in [0, high), on ``like``'s device."""
    return torch.randint(0, high, (n,), generator=generator, device=_draw_device(like, generator)).to(like.device)


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
    p = _prepare(model, x, y, epsilons, norm)
    with eval_mode(model):
        grad = _evaluate(model, p.x, p.x, p.y, _eot(model, eot_samples), p.dtype).grad
    return p.finish(_project(p.x + p.eps * _ascent(grad, norm), p.x, p.eps, norm))


def _random_start(x: torch.Tensor, eps: torch.Tensor, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A uniform point of the ball around each row of ``x`` (L-inf: a uniform cube; L2: uniform in the ball)."""
    if norm == "linf":
        return _project(x + eps * (_uniform(x.shape, x, generator) * 2 - 1), x, eps, norm)
    direction = _normal(x.shape, x, generator)
    radius = _uniform((len(x), 1, 1, 1), x, generator)
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
        steps: number of steps (one gradient each).
        step_ratio: step size as a fraction of epsilon; ``None``: ``2.5 / steps``.
        random_start: start from a uniform point of the ball (drawn from ``generator``).
        eot_samples: gradient samples per step; ``None``: 1, or :data:`EOT_DEFAULT` when noise is on.
        generator: the random start's stream.

    Returns:
        Adversarial images (E, N, C, H, W), one batch per epsilon: the last iterate.
    """
    check_positive_int("steps", steps)
    ratio = PGD_STEP_FACTOR / steps if step_ratio is None else check_positive("step_ratio", step_ratio)
    p = _prepare(model, x, y, epsilons, norm)
    x_adv = p.x
    with eval_mode(model):
        samples = _eot(model, eot_samples)
        if random_start:
            x_adv = _random_start(p.x, p.eps, norm, generator)
        for _ in range(steps):
            grad = _evaluate(model, x_adv, p.x, p.y, samples, p.dtype).grad
            x_adv = _project(x_adv + ratio * p.eps * _ascent(grad, norm), p.x, p.eps, norm)
    return p.finish(x_adv)


# ----------------------------------------------------------------------------- APGD


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step: ``w_j = ceil(p_j steps)`` (Croce and Hein 2020, eq. 4).

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``: checkpoints come
    closer together as the attack proceeds, never closer than 6% of the budget. Returned without ``w_0 = 0``,
    deduplicated, and only those before the last iteration.

    Example:
        >>> apgd_checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
    """
    points = [0.0, 0.22]
    while points[-1] + max(points[-1] - points[-2] - 0.03, 0.06) <= 1.0:
        points.append(points[-1] + max(points[-1] - points[-2] - 0.03, 0.06))
    # p_j steps is a decimal product (0.22 x 100 = 22.000000000000004 in binary): ceil after rounding to 9 digits
    marks = sorted({math.ceil(round(q * steps, 9)) for q in points[1:]})
    return [w for w in marks if 0 < w < steps]


def _apgd_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    *,
    norm: str,
    steps: int,
    start: torch.Tensor,
    samples: int,
    alpha: float,
    rho: float,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run (Algorithm 1) from ``start``: (best point, its loss, whether it fools the model).

    The best point is the first iterate found that the model misclassifies (argmax of the mean softmax
    over the EOT draws differs from the label) if there is one, else the iterate of highest loss.
    """
    step = 2.0 * eps  # eta^(0) = 2 epsilon
    ev = _evaluate(model, start, x, y, samples, dtype)
    x_cur, loss_cur, grad_cur = start, ev.loss, ev.grad
    x_max, loss_max, grad_max = start, ev.loss, ev.grad
    fooled = ev.probs.argmax(dim=1) != y
    x_fool = start
    x_prev = start
    increases = torch.zeros(len(x), dtype=torch.long, device=x.device)
    loss_max_at_mark, halved_at_mark = loss_max, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    marks = apgd_checkpoints(steps)
    last_mark = 0
    for k in range(steps):
        z = _project(x_cur + step * _ascent(grad_cur, norm), x, eps, norm)
        # x^(1) = P(x^(0) + eta grad) has no momentum term; later steps mix z with the last move
        x_new = z if k == 0 else _project(x_cur + alpha * (z - x_cur) + (1 - alpha) * (x_cur - x_prev), x, eps, norm)
        ev = _evaluate(model, x_new, x, y, samples, dtype)
        increases += (ev.loss > loss_cur).long()
        better = (ev.loss > loss_max).view(-1, 1, 1, 1)
        x_max = torch.where(better, x_new, x_max)
        grad_max = torch.where(better, ev.grad, grad_max)
        loss_max = torch.maximum(ev.loss, loss_max)
        newly = (ev.probs.argmax(dim=1) != y) & ~fooled
        x_fool = torch.where(newly.view(-1, 1, 1, 1), x_new, x_fool)
        fooled |= newly
        x_prev, x_cur, loss_cur, grad_cur = x_cur, x_new, ev.loss, ev.grad
        if k + 1 in marks:
            w = k + 1
            # condition 1: fewer than rho (w_j - w_{j-1}) of the steps since the last checkpoint increased f
            slow = increases < rho * (w - last_mark)
            # condition 2: the step was not halved at the last checkpoint and f_max has not improved since
            stuck = ~halved_at_mark & (loss_max <= loss_max_at_mark)
            halve = slow | stuck
            step = torch.where(halve.view(-1, 1, 1, 1), step / 2, step)
            back = halve.view(-1, 1, 1, 1)
            x_cur = torch.where(back, x_max, x_cur)  # restart from the best point, with its gradient
            grad_cur = torch.where(back, grad_max, grad_cur)
            loss_cur = torch.where(halve, loss_max, loss_cur)
            increases.zero_()
            loss_max_at_mark, halved_at_mark, last_mark = loss_max, halve, w
    best = torch.where(fooled.view(-1, 1, 1, 1), x_fool, x_max)
    return best, loss_max, fooled


@ATTACKS.register("apgd")
def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float],
    *,
    norm: str = "linf",
    steps: int = APGD_STEPS,
    restarts: int = 1,
    random_start: bool = True,
    momentum: float = APGD_MOMENTUM,
    rho: float = APGD_RHO,
    eot_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """APGD-CE (Croce and Hein 2020): step-size-free PGD on the cross-entropy, with momentum.

    The step starts at ``2 epsilon`` and is halved at the checkpoints of :func:`apgd_checkpoints` where the
    loss increased in fewer than ``rho`` of the steps since the last checkpoint, or where neither the
    step was halved at the last checkpoint nor the best loss has improved since; a halving restarts
    from the best point found. Each step is ``x + alpha (z - x) + (1 - alpha)(x - x_prev)`` with ``z``
    the projected gradient step, ``alpha = momentum`` (the first step has no momentum term).

    Args:
        model: a classifier returning logits.
        x: images (N, C, H, W) in [0, 1].
        y: labels (N,), int64.
        epsilons: perturbation budgets (>= 0), in the norm ``norm``.
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised gradient steps).
        steps: iterations per restart; each costs one gradient (a run costs ``steps + 1``: the start
            point's gradient too).
        restarts: runs from independent random starts; later runs attack only the examples not yet
            misclassified, and each example keeps the best point over its runs.
        random_start: start from a uniform point of the ball (drawn from ``generator``); else from ``x``.
        momentum: ``alpha`` in (0, 1]: the weight of the new step (1: no momentum).
        rho: the fraction of loss-increasing steps below which a checkpoint halves the step.
        eot_samples: gradient samples per step; ``None``: 1, or :data:`EOT_DEFAULT` when noise is on.
        generator: the random starts' stream.

    Returns:
        Adversarial images (E, N, C, H, W), one batch per epsilon: for each example the first point
        found that the model misclassifies, else the point of highest loss.
    """
    check_positive_int("steps", steps)
    check_positive_int("restarts", restarts)
    alpha = check_positive("momentum", momentum)
    if alpha > 1:
        raise fail("momentum", "a number in (0, 1]", momentum)
    rho = check_probability("rho", rho, closed_right=True)
    p = _prepare(model, x, y, epsilons, norm)
    best = p.x.clone()
    best_loss = torch.full((len(p.x),), -math.inf, dtype=p.x.dtype, device=p.x.device)
    done = torch.zeros(len(p.x), dtype=torch.bool, device=p.x.device)
    with eval_mode(model):
        samples = _eot(model, eot_samples)
        for _ in range(restarts):
            todo = (~done & (p.eps.view(-1) > 0)).nonzero().view(-1)
            if len(todo) == 0:
                break
            xs, ys, es = p.x[todo], p.y[todo], p.eps[todo]
            start = _random_start(xs, es, norm, generator) if random_start else xs
            point, loss, fooled = _apgd_run(
                model,
                xs,
                ys,
                es,
                norm=norm,
                steps=steps,
                start=start,
                samples=samples,
                alpha=alpha,
                rho=rho,
                dtype=p.dtype,
            )
            keep = fooled | (loss > best_loss[todo])
            best[todo] = torch.where(keep.view(-1, 1, 1, 1), point, best[todo])
            best_loss[todo] = torch.where(keep, loss, best_loss[todo])
            done[todo] |= fooled
    return p.finish(best)


# ----------------------------------------------------------------------------- Square

SQUARE_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10,000 iterations: p halves after each
SQUARE_RETRIES = 16  # L-inf redraws of a square's signs while it would leave the image unchanged


def square_fraction(p_init: float, iteration: int, total: int) -> float:
    """The fraction of pixels a square covers at ``iteration`` of ``total`` (Andriushchenko et al. 2020).

    The schedule is given for 10,000 iterations and rescaled to ``total``: ``p_init``, halved after each
    of iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000.

    Example:
        >>> [square_fraction(0.8, i, 1000) for i in (1, 2, 6, 999)]
        [0.8, 0.4, 0.2, 0.0015625]
    """
    i = int(iteration / total * 10_000)
    return p_init / 2 ** sum(i > t for t in SQUARE_HALVINGS)


def _rings(rows: int, cols: int) -> torch.Tensor:
    """A (rows, cols) bump of unit norm: sum of 1/(k+1)^2 over the centred squares of half-width k covering a pixel."""
    if rows == 0:
        return torch.zeros(0, cols, dtype=torch.float64)
    i = torch.arange(rows).view(-1, 1)
    j = torch.arange(cols).view(1, -1)
    dist = torch.maximum((i - rows // 2).abs(), (j - cols // 2).abs())
    layers = max(rows // 2, cols // 2) + 1
    weights = 1.0 / torch.arange(1, layers + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} 1 / (k + 1)^2
    out = tail[dist]
    return out / out.norm()


def square_pattern(size: int) -> torch.Tensor:
    """The L2 Square attack's (size, size) update of unit norm: a bump on one half, its negative on the other.

    Andriushchenko et al. (2020), section 3.2: mass concentrated in the centre of each half, so that the
    update's L2 norm buys a large change of the pixels it touches. Float64.
    """
    return _pattern(check_positive_int("size", size)).clone()


@functools.lru_cache(maxsize=64)
def _pattern(size: int) -> torch.Tensor:
    out = torch.cat([_rings(size // 2, size), -_rings(size - size // 2, size)])
    return out / out.norm()


def _windows(top: torch.Tensor, left: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) masks of the squares ``[top, top + size) x [left, left + size)``, one per row."""
    r = torch.arange(h, device=top.device).view(1, -1) - top.view(-1, 1)
    c = torch.arange(w, device=top.device).view(1, -1) - left.view(-1, 1)
    inside = ((r >= 0) & (r < size)).unsqueeze(2) & ((c >= 0) & (c < size)).unsqueeze(1)
    return inside.unsqueeze(1)


def _place(
    pattern: torch.Tensor, flip: torch.Tensor, top: torch.Tensor, left: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(n, 1, h, w): ``pattern`` (transposed where ``flip``) in each row's square ``mask`` (at top, left)."""
    size, (h, w) = pattern.shape[0], mask.shape[-2:]
    pats = torch.where(flip.view(-1, 1, 1), pattern.T, pattern)
    r = (torch.arange(h, device=top.device).view(1, -1) - top.view(-1, 1)).clamp(0, size - 1)
    c = (torch.arange(w, device=top.device).view(1, -1) - left.view(-1, 1)).clamp(0, size - 1)
    rows = torch.arange(len(top), device=top.device).view(-1, 1, 1)
    return pats[rows, r.unsqueeze(2), c.unsqueeze(1)].unsqueeze(1) * mask


def _margins(
    model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, samples: int, dtype: torch.dtype
) -> torch.Tensor:
    """``logit_y - max_{j != y} logit_j`` at ``x_adv`` (negative: misclassified), the mean over ``samples`` passes."""
    x_in = round_toward(x_adv, x, dtype)
    total = torch.zeros(len(x_in), dtype=x_adv.dtype, device=x_in.device)
    for _ in range(samples):
        logits = model(x_in)
        logits = logits.to(torch.promote_types(logits.dtype, x_adv.dtype))
        true = logits.gather(1, y.view(-1, 1)).view(-1)
        other = logits.scatter(1, y.view(-1, 1), -math.inf).amax(dim=1)
        total += (true - other).to(x_adv.dtype)
    return total / samples


def _square_start(x: torch.Tensor, eps: torch.Tensor, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """The initial perturbation: L-inf vertical stripes of +-epsilon; L2 a grid of signed patterns of norm epsilon."""
    n, c, h, w = x.shape
    if norm == "linf":
        return _signs((n, c, 1, w), x, generator) * eps
    size = max(min(h, w) // 5, 1)
    nh, nw = h // size, w // size
    top, left = (h - nh * size) // 2, (w - nw * size) // 2
    tiles = _signs((n, c, nh, nw), x, generator).repeat_interleave(size, 2).repeat_interleave(size, 3)
    delta = torch.zeros_like(x)
    delta[:, :, top : top + nh * size, left : left + nw * size] = tiles * _pattern(size).to(x).repeat(nh, nw)
    return delta / _norm2(delta) * eps


def _linf_candidate(
    x: torch.Tensor, best: torch.Tensor, eps: torch.Tensor, size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """One random square of side ``size`` per row set to +-epsilon (a sign per channel), a change guaranteed.

    Signs are redrawn (up to :data:`SQUARE_RETRIES` times) for rows whose square would leave the image as
    it is, as the reference does: such a query would be wasted.
    """
    n, c, h, w = x.shape
    mask = _windows(_integers(h - size + 1, n, x, generator), _integers(w - size + 1, n, x, generator), size, h, w)
    signs = _signs((n, c, 1, 1), x, generator)
    delta = best - x
    for _ in range(SQUARE_RETRIES):
        candidate = (x + torch.where(mask, signs * eps, delta)).clamp(0.0, 1.0)
        unchanged = (candidate == best).flatten(1).all(dim=1)
        if not bool(unchanged.any()):
            break
        signs = torch.where(unchanged.view(-1, 1, 1, 1), _signs((n, c, 1, 1), x, generator), signs)
    return candidate


def _l2_candidate(
    x: torch.Tensor, best: torch.Tensor, eps: torch.Tensor, size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """The L2 update (Andriushchenko et al. 2020, algorithm 3): a new pattern in square 1, square 2 emptied.

    Per channel, the energy of the perturbation in both squares plus an equal share of the unused budget
    goes to square 1 (the new signed pattern plus square 1's old content, normalised); the whole
    perturbation is then rescaled to norm epsilon and clipped to [0, 1].
    """
    n, c, h, w = x.shape
    top1, left1 = _integers(h - size + 1, n, x, generator), _integers(w - size + 1, n, x, generator)
    top2, left2 = _integers(h - size + 1, n, x, generator), _integers(w - size + 1, n, x, generator)
    flip = _integers(2, n, x, generator).bool()
    signs = _signs((n, c, 1, 1), x, generator)
    m1, m2 = _windows(top1, left1, size, h, w), _windows(top2, left2, size, h, w)
    delta = best - x
    energy = delta.square()
    spare = (eps.square() - energy.sum(dim=(1, 2, 3), keepdim=True)).clamp(min=0.0) / c
    target = (spare + (energy * (m1 | m2)).sum(dim=(2, 3), keepdim=True)).sqrt()  # (n, c, 1, 1)
    old = delta * m1 / ((energy * m1).sum(dim=(2, 3), keepdim=True).sqrt() + 1e-10)
    new = signs * _place(_pattern(size).to(x), flip, top1, left1, m1) + old
    new = new / new.square().sum(dim=(2, 3), keepdim=True).sqrt() * target
    delta = torch.where(m1, new, torch.where(m2, torch.zeros_like(delta), delta))
    return (x + delta / _norm2(delta).clamp(min=1e-12) * eps).clamp(0.0, 1.0)


@ATTACKS.register("square")
def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float],
    *,
    norm: str = "linf",
    queries: int = SQUARE_QUERIES,
    p_init: float = SQUARE_P_INIT,
    eot_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The Square attack (Andriushchenko et al. 2020): random search over square-shaped updates, no gradients.

    Each iteration proposes, for every example not yet misclassified, a random square of side
    ``round(sqrt(p h w))`` (``p`` from :func:`square_fraction`) and keeps it if the margin
    ``logit_y - max_{j != y} logit_j`` decreases. L-inf: the square is set to +-epsilon per channel,
    starting from vertical stripes. L2: :func:`square_pattern` updates that move energy between two
    squares, starting from a grid of patterns. The model is only evaluated (``torch.no_grad()``), so the
    attack works on models whose gradients are useless (randomized, quantized or masked) and may be called
    inside ``torch.inference_mode()``.

    Args:
        model: a classifier returning logits.
        x: images (N, C, H, W) in [0, 1].
        y: labels (N,), int64.
        epsilons: perturbation budgets (>= 0), in the norm ``norm``.
        norm: ``"linf"`` or ``"l2"``.
        queries: model evaluations per example at most, the start included; an example stops once misclassified.
        p_init: the first squares' share of the image's pixels, in (0, 1].
        eot_samples: forward passes per evaluation (the margin is their mean); ``None``: 1, or
            :data:`EOT_DEFAULT` when noise is on.
        generator: the stream of every random choice (stripes, squares, signs).

    Returns:
        Adversarial images (E, N, C, H, W), one batch per epsilon: the point of lowest margin found.
    """
    check_positive_int("queries", queries)
    p_init = check_probability("p_init", p_init, closed_right=True)
    if p_init == 0:
        raise fail("p_init", "a number in (0, 1]", p_init)
    p = _prepare(model, x, y, epsilons, norm, needs_grad=False)
    _, _, h, w = p.x.shape
    with eval_mode(model), torch.no_grad():
        samples = _eot(model, eot_samples)
        best = (p.x + _square_start(p.x, p.eps, norm, generator)).clamp(0.0, 1.0)
        margin = _margins(model, best, p.x, p.y, samples, p.dtype)
        for i in range(1, queries):
            todo = ((margin > 0) & (p.eps.view(-1) > 0)).nonzero().view(-1)
            if len(todo) == 0:
                break
            frac = square_fraction(p_init, i - 1, queries - 1)
            side = round(math.sqrt(frac * h * w))
            if norm == "linf":
                side = min(max(side, 1), h, w)
                candidate = _linf_candidate(p.x[todo], best[todo], p.eps[todo], side, generator)
            else:
                side = min(max(side + (side % 2 == 0), 3), h, w)  # odd, at least 3 (the pattern's two halves)
                candidate = _l2_candidate(p.x[todo], best[todo], p.eps[todo], side, generator)
            trial = _margins(model, candidate, p.x[todo], p.y[todo], samples, p.dtype)
            better = trial < margin[todo]
            best[todo] = torch.where(better.view(-1, 1, 1, 1), candidate, best[todo])
            margin[todo] = torch.where(better, trial, margin[todo])
    return p.finish(best)


def attack(
    name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float], **options: Any
) -> torch.Tensor:
    """Run the attack registered as ``name`` (see :data:`ATTACKS`); returns (E, N, C, H, W)."""
    return ATTACKS.get(name)(model, x, y, epsilons, **options)
