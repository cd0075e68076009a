"""Curvature beyond the top eigenvalue: Hutch++ trace, top-k eigenpairs, spectral density, averaged batches.

All estimators see the Hessian only through Hessian-vector products (any
:class:`~ninr.curvature.krylov.LinearOperator`), and count them in ``op.products``.

* :func:`hutchpp_trace`: Hutch++ (Meyer, Musco, Musco and Woodruff 2021). A third of the products sketch
  the top of the spectrum (``Q = orth(H S)``), whose trace ``tr(Q^T H Q)`` is exact; Hutchinson's estimate
  covers only the rest. Its error falls as ``1/m`` in the number of products ``m`` instead of
  ``1/sqrt(m)``, and is far smaller when a few eigenvalues dominate, as in network Hessians.
* :func:`top_eigenpairs`: the k largest (or smallest, or largest in magnitude) eigenpairs by Lanczos with
  full re-orthogonalisation, with each pair's residual ``||H v - lambda v||`` (free from the recurrence).
* :func:`spectral_density`: stochastic Lanczos quadrature (Ubaru, Chen and Saad 2017; Ghorbani, Krishnan
  and Xiao 2019). Each probe's Lanczos run gives a Gauss quadrature: nodes (Ritz values) and weights
  (squared first components of ``T``'s eigenvectors) whose moments of order below ``2 steps`` equal
  ``v^T H^k v`` exactly; averaged over unit Rademacher probes they estimate ``tr(H^k) / dim``.
* :class:`AveragedOperator`: the Hessian of the loss averaged over several batches (each batch weighted by
  its size, so it is the Hessian of the mean loss over their union), applied as the weighted mean of the
  batches' products.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ninr.curvature.hessian import HessianOperator, LossFn, TraceResult
from ninr.curvature.krylov import LinearOperator, lanczos_run, rademacher, unit_vector
from ninr.curvature.replay import NoiseMap
from ninr.errors import ConfigError, check_choice, check_positive, check_positive_int, fail
from ninr.rng import make_generator

SLQ_STEPS = 64  # Lanczos steps per probe: quadrature exact for moments below 128
SLQ_PROBES = 8  # probes: the moments' sampling error falls as 1 / sqrt(probes)


# ----------------------------------------------------------------------------- Hutch++


def _apply(op: LinearOperator, columns: torch.Tensor) -> torch.Tensor:
    """``H @ columns`` for a (dim, k) matrix, one product per column."""
    if columns.shape[1] == 0:
        return columns.clone()
    return torch.stack([op.matvec(columns[:, i]) for i in range(columns.shape[1])], dim=1)


def hutchpp_trace(op: LinearOperator, *, products: int = 60, generator: torch.Generator | None = None) -> TraceResult:
    """Hutch++ estimate of ``tr H`` from ``products`` Hessian-vector products (Meyer et al. 2021, algorithm 1).

    ``k = products // 3`` Rademacher columns ``S`` give ``Q = orth(H S)`` (k products); ``tr(Q^T H Q)`` is
    computed exactly (k products); the remaining ``products - 2k`` Rademacher probes ``g`` estimate the
    trace of the deflated part, ``mean g^T (I - Q Q^T) H (I - Q Q^T) g``. Unbiased; the standard error is
    the deflated probes' sample error. When ``k`` reaches ``dim`` the sketch spans everything and the
    estimate is exact with ``2 dim`` products. Memory: three (dim, k) matrices.

    Returns:
        :class:`TraceResult` with ``samples`` the deflated probes and ``products`` the products spent.
    """
    check_positive_int("products", products)
    if products < 3:
        raise fail("products", "an integer >= 3 (a sketch, its trace and one probe)", products)
    k = min(products // 3, op.dim)
    probes = 0 if k == op.dim else products - 2 * k
    sketch = _apply(op, rademacher(op, generator, k))
    q, _ = torch.linalg.qr(sketch)
    top = float((q * _apply(op, q)).sum())
    if probes == 0:
        return TraceResult(top, 0.0, 0, 2 * k)
    g = rademacher(op, generator, probes)
    g = g - q @ (q.T @ g)
    values = (g * _apply(op, g)).sum(dim=0).double().cpu().numpy()
    err = float(values.std(ddof=1) / math.sqrt(probes)) if probes > 1 else math.inf
    return TraceResult(top + float(values.mean()), err, probes, 2 * k + probes)


# ----------------------------------------------------------------------------- eigenpairs

WHICH = ("largest", "smallest", "magnitude")


@dataclass(frozen=True)
class EigenPairs:
    """Eigenpair estimates, in the order asked for (``largest``: descending values).

    ``residuals[i] = ||H v_i - values[i] v_i||``: for a symmetric ``H`` some eigenvalue lies within
    ``residuals[i]`` of ``values[i]`` (and within ``residuals[i]^2 / gap`` once the pair is isolated by a
    gap to the rest of the spectrum).
    """

    values: np.ndarray  # (k,)
    vectors: torch.Tensor  # (dim, k), orthonormal columns
    residuals: np.ndarray  # (k,)
    steps: int  # Lanczos steps taken (= products)

    def converged(self, tol: float = 1e-6) -> np.ndarray:
        """Which pairs have ``residual <= tol max |value|``."""
        return self.residuals <= tol * max(float(np.abs(self.values).max()), 1e-30)


def top_eigenpairs(
    op: LinearOperator,
    k: int = 1,
    *,
    which: str = "largest",
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> EigenPairs:
    """``k`` extreme eigenpairs by Lanczos with full re-orthogonalisation (one product per step).

    Args:
        op: the operator.
        k: how many pairs.
        which: ``"largest"`` (algebraic, descending), ``"smallest"`` (ascending) or ``"magnitude"``
            (descending ``|lambda|``).
        steps: Lanczos steps; ``None``: ``min(dim, 2 k + 30)``. Extreme pairs converge first; ``dim``
            steps give every pair to rounding error.
        generator: the starting vector's stream.
    """
    check_positive_int("k", k)
    check_choice("which", which, WHICH)
    if k > op.dim:
        raise fail("k", f"at most the operator's dimension {op.dim}", k)
    steps = min(op.dim, 2 * k + 30) if steps is None else check_positive_int("steps", steps)
    if steps < k:
        raise fail("steps", f"at least k = {k}", steps)
    run = lanczos_run(op, unit_vector(op, generator), steps)
    theta, s = run.ritz()
    if run.steps < k:  # an invariant subspace of dimension < k: restarting would be needed
        raise ConfigError(
            f"Lanczos found an invariant subspace after {run.steps} steps, fewer than k = {k}: the start "
            "vector sees too few eigenvalues (try another generator seed)"
        )
    if which == "largest":
        order = np.argsort(-theta)[:k]
    elif which == "smallest":
        order = np.argsort(theta)[:k]
    else:
        order = np.argsort(-np.abs(theta))[:k]
    basis = torch.stack(run.basis[: run.steps], dim=1)
    coords = torch.as_tensor(s[:, order], dtype=basis.dtype, device=basis.device)
    return EigenPairs(theta[order], basis @ coords, run.residual * np.abs(s[-1, order]), run.steps)


# ----------------------------------------------------------------------------- spectral density


@dataclass(frozen=True)
class SpectralDensity:
    """A stochastic Lanczos quadrature: per probe, nodes and weights (each probe's weights sum to 1).

    Rows are probes; a probe whose run stopped early (an invariant subspace) is padded with weight 0.
    The density is ``phi(t) = mean over probes of sum_i w_i delta(t - theta_i)``, a probability
    distribution over the spectrum: the eigenvalue counting measure divided by ``dim``, in expectation.
    """

    nodes: np.ndarray  # (probes, steps)
    weights: np.ndarray  # (probes, steps)
    dim: int

    def probe_moments(self, k: int) -> np.ndarray:
        """``sum_i w_i theta_i^k`` per probe: ``v^T H^k v`` for the probe's unit ``v`` while ``k < 2 steps``."""
        return (self.weights * self.nodes**k).sum(axis=1)

    def moment(self, k: int) -> float:
        """The estimate of ``tr(H^k) / dim`` (the mean over probes)."""
        return float(self.probe_moments(k).mean())

    def moment_stderr(self, k: int) -> float:
        """The standard error of :meth:`moment` over the probes (``inf`` for one probe)."""
        m = self.probe_moments(k)
        return float(m.std(ddof=1) / math.sqrt(len(m))) if len(m) > 1 else math.inf

    def trace(self) -> float:
        """``dim`` times the first moment: a Hutchinson-type estimate of ``tr H``."""
        return self.dim * self.moment(1)

    def default_sigma(self) -> float:
        """1% of the node range (the width of each Gaussian in :meth:`density`); 1e-3 for a single point."""
        live = self.nodes[self.weights > 0]
        span = float(live.max() - live.min()) if live.size else 0.0
        return 0.01 * span if span > 0 else 1e-3

    def density(
        self, grid: np.ndarray | None = None, *, sigma: float | None = None, points: int = 1000
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(grid, phi_sigma(grid))``: every node broadened into a Gaussian of standard deviation ``sigma``.

        ``phi_sigma`` integrates to 1; its mean is :meth:`moment` (1) and its second moment
        ``moment(2) + sigma^2``. Default grid: ``points`` points from 6 sigma below the lowest node to 6
        sigma above the highest.
        """
        sigma = self.default_sigma() if sigma is None else check_positive("sigma", sigma)
        live = self.nodes[self.weights > 0]
        if grid is None:
            grid = np.linspace(float(live.min()) - 6 * sigma, float(live.max()) + 6 * sigma, points)
        grid = np.asarray(grid, dtype=np.float64)
        z = (grid[:, None] - self.nodes.reshape(1, -1)) / sigma
        kernel = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
        return grid, kernel @ self.weights.reshape(-1) / len(self.nodes)


def spectral_density(
    op: LinearOperator,
    *,
    steps: int = SLQ_STEPS,
    probes: int = SLQ_PROBES,
    reorthogonalize: bool = True,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of ``H``'s spectrum: ``probes`` Lanczos runs of ``steps`` steps each.

    Each run starts from a Rademacher vector divided by ``sqrt(dim)``; its tridiagonal ``T = U Theta U^T``
    gives nodes ``Theta`` and weights ``U[0, :]^2``. Full re-orthogonalisation (default) keeps the
    quadrature faithful in floating point at the cost of storing ``steps`` vectors; without it, Lanczos'
    loss of orthogonality produces spurious copies of converged extreme Ritz values (the "ghosts" the
    papers above accept and smooth over).
    """
    check_positive_int("steps", steps)
    check_positive_int("probes", probes)
    width = min(steps, op.dim)
    nodes = np.zeros((probes, width))
    weights = np.zeros((probes, width))
    for p in range(probes):
        run = lanczos_run(op, rademacher(op, generator), steps, reorthogonalize=reorthogonalize)
        theta, s = run.ritz()
        nodes[p, : run.steps] = theta
        weights[p, : run.steps] = s[0] ** 2
    return SpectralDensity(nodes, weights, op.dim)


# ----------------------------------------------------------------------------- several batches


class AveragedOperator:
    """The weighted mean of several operators of one dimension: ``H v = sum_b w_b H_b v / sum_b w_b``.

    With :meth:`for_model` the members are the Hessians of one model's loss on several batches, weighted
    by batch size: for a loss that is a mean over examples this is the Hessian of the mean loss over the
    union of the batches, without holding the union in one graph. ``keep_graphs=False`` frees each
    member's gradient graph after its product (memory of one batch at a time, at the cost of rebuilding
    the graph, one forward and backward pass, in every product).

    ``products`` counts averaged products; each member counts its own.
    """

    def __init__(
        self,
        operators: Sequence[HessianOperator],
        weights: Sequence[float] | None = None,
        *,
        keep_graphs: bool = True,
    ) -> None:
        ops = list(operators)
        if not ops:
            raise fail("operators", "a non-empty list", ops)
        first = ops[0]
        for op in ops[1:]:
            if (op.dim, op.dtype, op.device) != (first.dim, first.dtype, first.device):
                raise ConfigError(
                    "`operators` must share one dimension, dtype and device, got "
                    f"{(first.dim, first.dtype, first.device)} and {(op.dim, op.dtype, op.device)}"
                )
        w = [1.0] * len(ops) if weights is None else [check_positive("weight", float(x)) for x in weights]
        if len(w) != len(ops):
            raise fail("weights", f"one weight per operator ({len(ops)})", len(w))
        total = sum(w)
        self.operators = ops
        self.weights = [x / total for x in w]
        self.keep_graphs = keep_graphs
        self.dim, self.dtype, self.device = first.dim, first.dtype, first.device
        self.names = list(getattr(first, "names", []))
        self.products = 0

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        *,
        params: str | Sequence[str] = "all",
        loss: str | LossFn = "cross_entropy",
        noise: str | NoiseMap = "frozen",
        generator: torch.Generator | None = None,
        keep_graphs: bool = True,
    ) -> AveragedOperator:
        """The batch-size-weighted mean of :meth:`HessianOperator.for_model` over ``batches`` of ``(x, y)``.

        With ``noise="frozen"`` each batch's noise is drawn in turn from one generator (``generator``, else
        the probe stream of seed 0), so different batches get independent draws.
        """
        if not batches:
            raise fail("batches", "a non-empty list of (x, y) pairs", batches)
        if noise == "frozen" and generator is None:
            generator = make_generator(0, "probe-noise", device=batches[0][0].device)
        ops = [
            HessianOperator.for_model(model, x, y, params=params, loss=loss, noise=noise, generator=generator)
            for x, y in batches
        ]
        if not keep_graphs:
            for op in ops:
                op.release()
        return cls(ops, [len(x) for x, _ in batches], keep_graphs=keep_graphs)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``sum_b w_b H_b v``."""
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for op, w in zip(self.operators, self.weights, strict=True):
            total += w * op.matvec(v)
            if not self.keep_graphs:
                op.release()
        self.products += 1
        return total

    def gradient(self) -> torch.Tensor:
        """The weighted mean of the members' flat gradients."""
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for op, w in zip(self.operators, self.weights, strict=True):
            total += w * op.gradient()
            if not self.keep_graphs:
                op.release()
        return total

    def dense(self) -> torch.Tensor:
        """The full matrix, column by column (for small problems and tests)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(self.dim)], dim=1)
