"""Matrix-free building blocks: the operator protocol, random probes, and the Lanczos recurrence.

Everything here sees a symmetric matrix only through ``matvec``; :class:`ninr.curvature.HessianOperator`
and :class:`ninr.curvature.AveragedOperator` are such operators. The Lanczos recurrence is shared by the
top-eigenvalue estimate, the top-k eigenpairs and stochastic Lanczos quadrature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class LinearOperator(Protocol):
    """A symmetric ``dim x dim`` matrix applied to flat vectors; ``products`` counts the calls of ``matvec``."""

    dim: int
    dtype: torch.dtype
    device: torch.device
    products: int

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


def unit_vector(op: LinearOperator, generator: torch.Generator | None) -> torch.Tensor:
    """A random unit vector (normalised Gaussian, drawn in float64 on the CPU, then cast)."""
    v = torch.randn(op.dim, generator=generator, dtype=torch.float64).to(op.dtype).to(op.device)
    return v / v.norm()


def rademacher(op: LinearOperator, generator: torch.Generator | None, count: int | None = None) -> torch.Tensor:
    """Random signs +-1 in ``op``'s dtype and device: a vector (``count=None``) or ``count`` columns (dim, count).

    Drawn on the CPU, so one seed gives the same probes on every device.
    """
    shape = (op.dim,) if count is None else (op.dim, count)
    return torch.randint(0, 2, shape, generator=generator).to(op.dtype).mul_(2).sub_(1).to(op.device)


@dataclass(frozen=True)
class LanczosRun:
    """What :func:`lanczos_run` returns: ``T = tridiag(betas, alphas, betas)`` and the basis reducing ``H`` to it.

    ``residual`` is the norm of the part of ``H q_m`` outside the basis (the next beta): a Ritz pair
    ``(theta_i, Q s_i)`` of ``T`` has ``||H Q s_i - theta_i Q s_i|| = residual |s_i[-1]|``. ``basis`` holds
    every vector only when the run re-orthogonalised; otherwise the last two.
    """

    alphas: np.ndarray
    betas: np.ndarray
    basis: list[torch.Tensor]
    residual: float

    @property
    def steps(self) -> int:
        return len(self.alphas)

    def tridiagonal(self) -> np.ndarray:
        """The (steps, steps) tridiagonal matrix ``T``."""
        off = self.betas[: self.steps - 1]
        return np.diag(self.alphas) + np.diag(off, 1) + np.diag(off, -1)

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (ascending) and eigenvectors (columns) of ``T``."""
        return np.linalg.eigh(self.tridiagonal())


def lanczos_run(op: LinearOperator, start: torch.Tensor, steps: int, *, reorthogonalize: bool = True) -> LanczosRun:
    """``steps`` Lanczos steps from ``start`` (normalised here), stopping early on an invariant subspace.

    With ``reorthogonalize`` each new vector is orthogonalised against the whole basis, twice (one pass
    leaves errors of order ``u kappa`` in float32); without it only the three-term recurrence is applied,
    and the basis keeps just the two vectors the recurrence needs. A step whose remainder has norm at
    most ``1e-10 max |alpha|`` has found an invariant subspace: the run stops there with ``residual`` 0-ish.
    """
    q = start / start.norm()
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    previous: torch.Tensor | None = None
    residual = 0.0
    for j in range(min(steps, op.dim)):
        w = op.matvec(basis[-1])
        alphas.append(float(w @ basis[-1]))
        if reorthogonalize:
            for _ in range(2):
                for v in basis:
                    w = w - (w @ v) * v
        else:
            w = w - alphas[-1] * basis[-1]
            if previous is not None:
                w = w - betas[-1] * previous
        residual = float(w.norm())
        if j == min(steps, op.dim) - 1 or residual <= 1e-10 * max(abs(a) for a in alphas):
            break
        betas.append(residual)
        if not reorthogonalize:
            previous = basis[-1]
            basis = basis[-1:]
        basis.append(w / residual)
    return LanczosRun(np.asarray(alphas), np.asarray(betas), basis, residual)
