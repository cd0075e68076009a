"""Exact, vectorised Poisson sampling from per-element uniforms (for shot noise).

Means below :data:`PTRS_MIN_MEAN` are drawn by inversion (a walk up the CDF over the elements still
below their uniform); larger means by Hoermann's transformed rejection with squeeze (PTRS, "The
transformed rejection method for generating Poisson random variables", 1993, the algorithm numpy uses),
whose first round uses the given uniforms and whose rare retries draw fresh ones from the element's key.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

PTRS_MIN_MEAN = 10.0  # PTRS is valid from mean 10 (Hoermann 1993; numpy switches there too)
_WALK_BLOCK = 8  # CDF steps between compactions of the still-walking set
_MAX_ROUNDS = 200  # PTRS accepts at least ~85% per round; 200 rounds never run out in practice

Retry = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def poisson_quantile(lam: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The Poisson(``lam``) quantile at ``u``: the smallest k with P(K <= k) >= u, elementwise (float64).

    Exact inversion for means up to about 700 (where exp(-lam) underflows); the cost grows with the mean.
    """
    lam_f, u_f = lam.reshape(-1).double(), u.reshape(-1).double()
    k = torch.zeros_like(lam_f)
    pmf = torch.exp(-lam_f)
    active = torch.nonzero(pmf < u_f).squeeze(1)
    lam_a, u_a, pmf_a = lam_f[active], u_f[active], pmf[active]
    cdf_a, k_a = pmf_a.clone(), torch.zeros_like(pmf_a)
    step = 0
    while active.numel():
        # an element still in the set has k >= step + 1 exactly while cdf(step) < u
        for _ in range(_WALK_BLOCK):
            step += 1
            k_a += cdf_a < u_a
            pmf_a.mul_(lam_a).div_(step)
            cdf_a += pmf_a
        done = cdf_a >= u_a
        k[active[done]] = k_a[done]
        keep = ~done
        if step > 2000:  # only float round-off (cdf stuck below u) can get here
            k[active[keep]] = k_a[keep]
            break
        active, lam_a, u_a, pmf_a, cdf_a, k_a = (t[keep] for t in (active, lam_a, u_a, pmf_a, cdf_a, k_a))
    return k.view(lam.shape)


def _ptrs_round(lam: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One PTRS attempt per element: (candidate k, accepted)."""
    slam = lam.sqrt()
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    uu = u - 0.5
    us = 0.5 - uu.abs()
    k = torch.floor((2 * a / us + b) * uu + lam + 0.43)
    quick = (us >= 0.07) & (v <= vr)
    rejected = (k < 0) | ((us < 0.013) & (v > us))
    lhs = torch.log(v) + torch.log(inv_alpha) - torch.log(a / (us * us) + b)
    rhs = -lam + k * torch.log(lam) - torch.lgamma(k.clamp(min=0) + 1)
    return k, quick | (~rejected & (lhs <= rhs))


def poisson_ptrs(lam: torch.Tensor, u: torch.Tensor, v: torch.Tensor, retry: Retry) -> torch.Tensor:
    """Poisson draws (float64) for 1-D means >= :data:`PTRS_MIN_MEAN`, first attempt from uniforms ``u``, ``v``.

    ``retry(indices, round)`` returns fresh uniforms for the elements at ``indices`` (round 1, 2, ...).
    """
    out = torch.empty_like(lam)
    todo = torch.arange(len(lam), device=lam.device)
    for rnd in range(_MAX_ROUNDS):
        if rnd:
            u, v = retry(todo, rnd)
        k, ok = _ptrs_round(lam, u, v)
        out[todo[ok]] = k[ok]
        todo, lam = todo[~ok], lam[~ok]
        if not todo.numel():
            return out
    raise RuntimeError(f"PTRS rejected {todo.numel()} draws {_MAX_ROUNDS} times in a row")  # pragma: no cover


def poisson(lam: torch.Tensor, u: torch.Tensor, v: torch.Tensor, retry: Retry) -> torch.Tensor:
    """Poisson(``lam``) draws elementwise (float64, ``lam``'s shape): inversion below mean 10, PTRS above.

    ``u`` and ``v`` are two independent uniforms per element; ``retry(flat_indices, round)`` returns fresh
    ones for PTRS retries (indices into the flattened ``lam``).
    """
    lam_f = lam.reshape(-1).double()
    out = torch.zeros_like(lam_f)
    small = torch.nonzero((lam_f > 0) & (lam_f < PTRS_MIN_MEAN)).squeeze(1)
    if small.numel():
        out[small] = poisson_quantile(lam_f[small], u.reshape(-1)[small])
    big = torch.nonzero(lam_f >= PTRS_MIN_MEAN).squeeze(1)
    if big.numel():

        def retry_big(sub: torch.Tensor, rnd: int) -> tuple[torch.Tensor, torch.Tensor]:
            return retry(big[sub], rnd)

        out[big] = poisson_ptrs(lam_f[big], u.reshape(-1)[big].double(), v.reshape(-1)[big].double(), retry_big)
    return out.view(lam.shape)
