"""Hessian estimates from Hessian-vector products: top eigenvalue (power iteration, Lanczos), Hutchinson trace.

Further estimators on the same operators (Hutch++, top-k eigenpairs, spectral density, curvature averaged
over batches) are in :mod:`ninr.curvature.spectrum`.

A :class:`HessianOperator` is the Hessian of a scalar loss with respect to some tensors, applied to
vectors by double backward; it never forms the matrix. :meth:`HessianOperator.for_model` builds the
Hessian of a model's loss on one batch with respect to all parameters, a named subset or the NIW block
(``params="niw"``), with the NIN noise *frozen*: drawn once from the probe's generator and replayed in
every product, so the operator is one fixed symmetric matrix. The model's parameters, modes and random
streams are left untouched (``torch.func.functional_call`` on detached copies).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ninr.curvature.krylov import LinearOperator, lanczos_run, rademacher, unit_vector
from ninr.curvature.replay import NoiseMap, probe_noise, replaying
from ninr.errors import ConfigError, check_choice, check_positive_int, did_you_mean
from ninr.nn.attach import nin_nodes
from ninr.rng import make_generator

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def half_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1/2 (f - y)^2`` summed over outputs, averaged over examples (curvature 1 per output)."""
    diff = output - target.reshape(output.shape)
    return 0.5 * diff.pow(2).reshape(len(diff), -1).sum(dim=1).mean()


LOSSES: dict[str, LossFn] = {"cross_entropy": F.cross_entropy, "half_mse": half_mse}


def get_loss(loss: str | LossFn) -> LossFn:
    """A loss by name (``cross_entropy``, ``half_mse``) or the callable itself."""
    if callable(loss):
        return loss
    return LOSSES[check_choice("loss", loss, LOSSES)]


def select_params(model: nn.Module, params: str | Sequence[str] = "all") -> list[str]:
    """Parameter names: ``"all"``, ``"niw"`` (every NIW), or names / globs (``"fc1.*"``)."""
    named = [n for n, p in model.named_parameters() if p.requires_grad]
    if params == "all":
        return named
    if params == "niw":
        niw = [f"{layer}.nin.weight" if layer else "nin.weight" for layer in nin_nodes(model)]
        if not niw:
            raise ConfigError("`params` must select parameters of the model, got 'niw' but the model has no NINs")
        return niw
    patterns = [params] if isinstance(params, str) else list(params)
    chosen: list[str] = []
    for pattern in patterns:
        hits = fnmatch.filter(named, pattern)
        if not hits:
            raise ConfigError(
                f"`params` must name parameters of the model, got {pattern!r}{did_you_mean(pattern, named)}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


class HessianOperator:
    """The Hessian of ``fn(primals)`` at ``primals``, applied to flat vectors.

    Example:
        >>> a = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> op = HessianOperator(lambda ps: 0.5 * ps[0] @ a @ ps[0], [torch.ones(2, dtype=torch.float64)])
        >>> op.matvec(torch.tensor([1.0, 0.0], dtype=torch.float64)).tolist()
        [2.0, 1.0]
    """

    def __init__(self, fn: Callable[[list[torch.Tensor]], torch.Tensor], primals: Sequence[torch.Tensor]) -> None:
        self._fn = fn
        self.primals = [p.detach().clone().requires_grad_(True) for p in primals]
        self.shapes = [p.shape for p in self.primals]
        self.dim = sum(p.numel() for p in self.primals)
        self.dtype, self.device = self.primals[0].dtype, self.primals[0].device
        self._grads: tuple[torch.Tensor, ...] | None = None
        self.products = 0
        self.names: list[str] = [f"p{i}" for i in range(len(self.primals))]
        self.noise: NoiseMap | None = None

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        params: str | Sequence[str] = "all",
        loss: str | LossFn = "cross_entropy",
        noise: str | NoiseMap = "frozen",
        generator: torch.Generator | None = None,
    ) -> HessianOperator:
        """The Hessian of ``loss(model(x), y)`` w.r.t. ``params``, the NIN noise frozen.

        ``noise``: ``"frozen"`` (one draw from ``generator``, default seed 0, replayed in every product),
        ``"off"`` (the clean model) or a mapping of layer name to the noise to replay.
        """
        names = select_params(model, params)
        loss_fn = get_loss(loss)
        if isinstance(noise, str):
            check_choice("noise", noise, ("frozen", "off"))
            gen = generator if generator is not None else make_generator(0, "probe-noise", device=x.device)
            frozen: NoiseMap | None = probe_noise(model, x, generator=gen) if noise == "frozen" else None
        else:
            frozen = noise
        table = dict(model.named_parameters())

        def fn(ps: list[torch.Tensor]) -> torch.Tensor:
            with replaying(model, frozen):
                return loss_fn(functional_call(model, dict(zip(names, ps, strict=True)), (x,)), y)

        op = cls(fn, [table[n] for n in names])
        op.names, op.noise = names, frozen
        return op

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(v[start : start + n].view(shape))
            start += n
        return out

    def gradient(self) -> torch.Tensor:
        """The flat gradient at the primals."""
        return torch.cat([g.detach().reshape(-1) for g in self._graph()])

    def _graph(self) -> tuple[torch.Tensor, ...]:
        if self._grads is None:
            with torch.enable_grad():
                value = self._fn(self.primals)
                self._grads = torch.autograd.grad(value, self.primals, create_graph=True)
        return self._grads

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat ``v`` of length :attr:`dim`."""
        grads = self._graph()
        with torch.enable_grad():
            zero = torch.zeros((), dtype=self.dtype, device=self.device)
            dot = sum(((g * u).sum() for g, u in zip(grads, self._split(v.to(self.dtype)), strict=True)), zero)
            hv = torch.autograd.grad(dot, self.primals, retain_graph=True, allow_unused=True)
        self.products += 1
        parts = [torch.zeros_like(p) if h is None else h for h, p in zip(hv, self.primals, strict=True)]
        return torch.cat([h.detach().reshape(-1) for h in parts])

    def release(self) -> None:
        """Drop the cached gradient graph (memory); the next product builds it again."""
        self._grads = None

    def dense(self) -> torch.Tensor:
        """The full matrix, column by column (for small problems and tests)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(self.dim)], dim=1)


@dataclass(frozen=True)
class EigenResult:
    """An eigenvalue estimate."""

    value: float
    iterations: int
    converged: bool
    vector: torch.Tensor | None = None


def _unit(n: int, like: LinearOperator, generator: torch.Generator | None) -> torch.Tensor:
    return unit_vector(like, generator)


def power_iteration(
    op: LinearOperator,
    *,
    iters: int = 100,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
) -> EigenResult:
    """The eigenvalue of largest magnitude (signed), by power iteration with a Rayleigh quotient.

    ``start``: the first vector (e.g. the previous estimate along a run, which converges in a few steps);
    default a random unit vector from ``generator``.
    """
    check_positive_int("iters", iters)
    if start is not None and float(start.norm()) > 0:
        v = (start / start.norm()).to(op.dtype).to(op.device)
    else:
        v = _unit(op.dim, op, generator)
    value = 0.0
    for i in range(1, iters + 1):
        hv = op.matvec(v)
        new = float(v @ hv)
        norm = hv.norm()
        if norm == 0:
            return EigenResult(0.0, i, True, v)
        v = hv / norm
        if i > 1 and abs(new - value) <= tol * max(abs(new), 1e-30):
            return EigenResult(new, i, True, v)
        value = new
    return EigenResult(value, iters, False, v)


def lanczos(op: LinearOperator, *, steps: int = 30, generator: torch.Generator | None = None) -> np.ndarray:
    """Ritz values (ascending) after ``steps`` Lanczos steps with full re-orthogonalisation.

    Extreme Ritz values converge first: ``[-1]`` estimates the top (algebraic) eigenvalue.
    """
    steps = check_positive_int("steps", steps)
    run = lanczos_run(op, unit_vector(op, generator), steps)
    return np.linalg.eigvalsh(run.tridiagonal())


def top_eigenvalue(
    op: LinearOperator,
    *,
    method: str = "lanczos",
    iters: int = 30,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
) -> EigenResult:
    """Top eigenvalue: ``"lanczos"`` (algebraic top) or ``"power"`` (largest magnitude)."""
    check_choice("method", method, ("lanczos", "power"))
    if method == "power":
        return power_iteration(op, iters=iters, tol=tol, generator=generator)
    ritz = lanczos(op, steps=iters, generator=generator)
    return EigenResult(float(ritz[-1]), len(ritz), True)


@dataclass(frozen=True)
class TraceResult:
    """A stochastic trace estimate with its standard error.

    ``samples``: the random probes the standard error comes from; ``products``: the operator products spent
    (Hutchinson: one per probe; Hutch++: also the sketch's, see :func:`ninr.curvature.hutchpp_trace`).
    """

    value: float
    stderr: float
    samples: int
    products: int | None = None


def hutchinson_trace(op: LinearOperator, *, samples: int = 50, generator: torch.Generator | None = None) -> TraceResult:
    """``tr H = E[v^T H v]`` with Rademacher ``v``; the standard error is the sample's."""
    check_positive_int("samples", samples)
    values = []
    for _ in range(samples):
        v = rademacher(op, generator)
        values.append(float(v @ op.matvec(v)))
    arr = np.asarray(values)
    err = float(arr.std(ddof=1) / math.sqrt(samples)) if samples > 1 else math.inf
    return TraceResult(float(arr.mean()), err, samples, samples)


def nin_block_names(model: nn.Module) -> Mapping[str, str]:
    """Layer name -> NIW parameter name, for every NIN of ``model``."""
    return {layer: (f"{layer}.nin.weight" if layer else "nin.weight") for layer in nin_nodes(model)}
