"""Certified L2 robustness by randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019).

The smoothed classifier of a base classifier ``f`` is ``g(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ N(0,
sigma^2 I)``. If the top class ``A`` has probability ``p_A`` under the noise, ``g`` is constant on the L2 ball
of radius ``sigma * Phi^-1(p_A)`` around ``x`` (the paper's Theorem 1 with the runner-up bounded by ``1 - p_A``).
:func:`certify` is the paper's CERTIFY:

1. draw ``n0`` noisy copies of ``x``, take the most frequent class ``A`` (selection);
2. draw ``n`` fresh noisy copies, count ``k`` predictions of ``A`` (estimation);
3. ``p_lower`` = the one-sided ``(1 - alpha)`` Clopper-Pearson lower bound on ``p_A`` from ``(k, n)``: the
   ``alpha`` quantile of ``Beta(k, n - k + 1)`` (0 when ``k = 0``);
4. if ``p_lower > 1/2`` return ``A`` and the radius ``sigma * Phi^-1(p_lower)``, else abstain (:data:`ABSTAIN`,
   radius 0).

With probability at least ``1 - alpha`` a returned class is ``g(x)`` and the radius is a true certificate
(the paper's Proposition 2). A randomized base classifier (a noise-injected model with its noise on) is
covered as well: ``P(f(x + eps) = c)`` then averages over the model's own noise too, and
``x -> sigma * Phi^-1(E h(x + eps))`` is 1-Lipschitz for any ``h`` with values in [0, 1] (Salman et al.
2019, "Provably Robust Deep Learning via Adversarially Trained Smoothed Classifiers"), so the radius holds
for that average; each noisy copy is a separate row, so the model's per-example noise is independent across
samples.

Batching: the noisy copies of several examples share forward passes (``batch`` rows each), so small
``n0`` passes and the tails of the estimation passes are not paid per example. Randomness: one 62-bit key per
example is drawn from ``generator`` in order; each example's noise comes from its own generator seeded with
its key, in blocks of :data:`NOISE_BLOCK` rows (selection blocks first, then estimation blocks), and a
forward pass holds whole blocks. The noise an example gets therefore does not depend on ``batch`` or on the
other examples of the call: certifying a batch draws what certifying its examples one call at a time with
the same generator draws. The noise is drawn in float32 and the noisy input cast to the model's parameter
dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ninr.errors import check_positive, check_positive_int, fail

ABSTAIN = -1
"""The prediction of an example CERTIFY abstains on."""

NOISE_BLOCK = 100
"""Rows of noise drawn per generator call for one example (a forward pass holds whole blocks)."""

KEY_BOUND = 1 << 62
"""Per-example generator seeds are drawn uniformly from ``[0, KEY_BOUND)``."""

_TINY = 1e-300
_CF_EPS = 1e-15
_CF_MAX_ITER = 100_000
_NEWTON_MAX_ITER = 200
_ULPS = 4  # Newton stops when its step is below this many float64 ulps of p


def _check_alpha(alpha: float) -> float:
    ok = isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0.0 < alpha < 1.0
    if not ok:
        raise fail("alpha", "a number in (0, 1)", alpha)
    return float(alpha)


def _beta_cf(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The continued fraction of the regularized incomplete beta function (DLMF 8.17.22), by the modified
    Lentz method; converges fast for ``x < (a + 1) / (a + b + 2)``."""
    c = torch.ones_like(x)
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = torch.where(d.abs() < _TINY, torch.full_like(d, _TINY), d).reciprocal()
    f = d.clone()
    done = torch.zeros_like(x, dtype=torch.bool)
    for m in range(1, _CF_MAX_ITER):
        for even in (True, False):
            if even:
                coef = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            else:
                coef = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            d = 1.0 + coef * d
            d = torch.where(d.abs() < _TINY, torch.full_like(d, _TINY), d).reciprocal()
            c = 1.0 + coef / c
            c = torch.where(c.abs() < _TINY, torch.full_like(c, _TINY), c)
            delta = c * d
            f = torch.where(done, f, f * delta)
            if not even:
                done |= (delta - 1.0).abs() < _CF_EPS
        if bool(done.all()):
            return f
    raise RuntimeError("the incomplete beta continued fraction did not converge")  # pragma: no cover


def regularized_incomplete_beta(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``I_x(a, b)`` for ``a, b > 0`` and ``x`` in [0, 1], elementwise in float64.

    ``I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) * CF`` where ``x < (a + 1) / (a + b + 2)``, and
    ``1 - I_{1-x}(b, a)`` elsewhere (the symmetry keeps the continued fraction in its fast region).
    """
    a, b, x = (torch.as_tensor(t, dtype=torch.float64) for t in (a, b, x))
    a, b, x = torch.broadcast_tensors(a, b, x)
    swap = x > (a + 1.0) / (a + b + 2.0)
    aa, bb, xx = torch.where(swap, b, a), torch.where(swap, a, b), torch.where(swap, 1.0 - x, x)
    inner = (xx > 0) & (xx < 1)
    xs = torch.where(inner, xx, torch.full_like(xx, 0.5))
    log_front = (
        aa * torch.log(xs)
        + bb * torch.log1p(-xs)
        - torch.log(aa)
        - (torch.lgamma(aa) + torch.lgamma(bb) - torch.lgamma(aa + bb))
    )
    value = torch.exp(log_front) * _beta_cf(aa, bb, xs)
    value = torch.where(inner, value, torch.where(xx <= 0, torch.zeros_like(xx), torch.ones_like(xx)))
    return torch.where(swap, 1.0 - value, value)


def clopper_pearson_lower(k: torch.Tensor, n: int, alpha: float) -> torch.Tensor:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower confidence bound on a binomial proportion.

    For ``k`` successes in ``n`` trials: the ``p`` with ``P(Bin(n, p) >= k) = alpha``, i.e. the ``alpha``
    quantile of ``Beta(k, n - k + 1)``, and 0 for ``k = 0``; ``P(bound <= p) >= 1 - alpha`` for every true
    ``p``. Solved by Newton's method on ``I_p(k, n - k + 1) = alpha`` inside a shrinking bracket (bisection
    when a step leaves it), once per distinct ``k``. Returns float64 of ``k``'s shape.
    """
    check_positive_int("n", n)
    alpha = _check_alpha(alpha)
    k = torch.as_tensor(k).to(torch.int64)
    if bool(((k < 0) | (k > n)).any()):
        raise fail("k", f"counts in 0..{n}", k.tolist())
    values, inverse = torch.unique(k.flatten().cpu(), return_inverse=True)
    a = values.to(torch.float64)
    b = n - a + 1.0
    pos = a > 0
    a_, b_ = torch.where(pos, a, torch.ones_like(a)), b
    lo, hi = torch.zeros_like(a), torch.ones_like(a)
    # start from the normal approximation of the bound, inside (0, 1)
    p_hat = a / n
    z = -torch.special.ndtri(torch.tensor(alpha, dtype=torch.float64))
    p = (p_hat - z * torch.sqrt(p_hat * (1 - p_hat) / n)).clamp(1e-12, 1 - 1e-12)
    log_beta = torch.lgamma(a_) + torch.lgamma(b_) - torch.lgamma(a_ + b_)
    active = pos.nonzero().flatten()  # an entry stops moving once converged: its value does not depend on others
    for _ in range(_NEWTON_MAX_ITER):
        if len(active) == 0:
            break
        pa, aa, bb, la, ha = p[active], a_[active], b_[active], lo[active], hi[active]
        f = regularized_incomplete_beta(aa, bb, pa) - alpha
        la = torch.where(f < 0, pa, la)
        ha = torch.where(f >= 0, pa, ha)
        density = torch.exp((aa - 1) * torch.log(pa) + (bb - 1) * torch.log1p(-pa) - log_beta[active])
        step = pa - f / density
        inside = (step > la) & (step < ha) & torch.isfinite(step)
        # converged: Newton's step is below a few ulps of p (it is then rounded away) or the bracket collapsed
        small = (step - pa).abs() <= _ULPS * torch.finfo(torch.float64).eps * pa
        new = torch.where(small & ~inside, pa, torch.where(inside, step, 0.5 * (la + ha)))
        converged = small | (ha - la <= _ULPS * torch.finfo(torch.float64).eps * ha)
        p[active], lo[active], hi[active] = new, la, ha
        active = active[~converged]
    out = torch.where(pos, p, torch.zeros_like(p))
    return out[inverse].reshape(k.shape)


@dataclass(frozen=True)
class Certificates:
    """CERTIFY's outcome per example (CPU tensors of length N) and the settings that produced it.

    Attributes:
        prediction: the smoothed class, or :data:`ABSTAIN` (-1).
        radius: the certified L2 radius (float64; 0 where abstaining).
        correct: not abstained and the prediction is the label.
        p_lower: the Clopper-Pearson lower bound on the selected class's probability (float64).
        count: estimation samples that predicted the selected class (of ``n``).
        selected: the class chosen from the ``n0`` selection samples.
    """

    prediction: torch.Tensor
    radius: torch.Tensor
    correct: torch.Tensor
    p_lower: torch.Tensor
    count: torch.Tensor
    selected: torch.Tensor
    sigma: float
    n0: int
    n: int
    alpha: float

    def __len__(self) -> int:
        return len(self.prediction)


def _param(model: nn.Module, fallback: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    dtype = fallback.dtype if fallback.is_floating_point() else torch.float32
    return fallback.device, dtype


def _blocks(examples: int, num: int) -> list[tuple[int, int]]:
    """``(example, rows)`` blocks in order: each example's ``num`` rows in blocks of :data:`NOISE_BLOCK`."""
    sizes = [NOISE_BLOCK] * (num // NOISE_BLOCK) + ([num % NOISE_BLOCK] if num % NOISE_BLOCK else [])
    return [(i, s) for i in range(examples) for s in sizes]


def _chunks(blocks: Sequence[tuple[int, int]], batch: int) -> Iterator[list[tuple[int, int]]]:
    """Consecutive blocks grouped into forward passes of at most ``max(batch, NOISE_BLOCK)`` rows."""
    chunk: list[tuple[int, int]] = []
    rows = 0
    for block in blocks:
        if chunk and rows + block[1] > batch:
            yield chunk
            chunk, rows = [], 0
        chunk.append(block)
        rows += block[1]
    if chunk:
        yield chunk


@torch.inference_mode()
def _sample_counts(
    model: nn.Module,
    x: torch.Tensor,
    num: int,
    sigma: float,
    generators: Sequence[torch.Generator],
    batch: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Class counts ``(N, C)`` of ``model`` on ``num`` noisy copies of each example of ``x`` (float32)."""
    device = x.device
    gen_device = generators[0].device if generators else device
    shape = tuple(x.shape[1:])
    counts: torch.Tensor | None = None
    for chunk in _chunks(_blocks(len(x), num), batch):
        rows = sum(s for _, s in chunk)
        noise = torch.empty((rows, *shape), dtype=torch.float32, device=gen_device)
        owner = torch.empty(rows, dtype=torch.long)
        offset = 0
        for i, size in chunk:
            noise[offset : offset + size].normal_(0.0, 1.0, generator=generators[i])
            owner[offset : offset + size] = i
            offset += size
        owner_d = owner.to(device)
        noisy = noise.to(device).mul_(sigma).add_(x.index_select(0, owner_d))
        logits = model(noisy.to(dtype))
        pred = logits.argmax(dim=1)
        if counts is None:
            counts = torch.zeros((len(x), logits.shape[1]), dtype=torch.long, device=device)
        flat = owner_d * counts.shape[1] + pred
        counts.view(-1).index_add_(0, flat, torch.ones_like(flat))
    assert counts is not None
    return counts.cpu()


def certify(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 10_000,
    alpha: float = 0.001,
    batch: int = 1000,
    generator: torch.Generator | None = None,
) -> Certificates:
    """Cohen et al.'s CERTIFY for every example of ``x`` (``(N, ...)``, labels ``y``) at once.

    Args:
        model: the base classifier (logits); run as it is (call ``model.eval()`` first for a deterministic
            base classifier; with its noise on, the certificate covers the randomized classifier).
        x, y: examples (pixel space, any float dtype) and their labels.
        sigma: the std of the Gaussian smoothing noise (> 0).
        n0: selection samples per example; n: estimation samples per example.
        alpha: the failure probability of each certificate, in (0, 1).
        batch: noisy rows per forward pass (at least :data:`NOISE_BLOCK`; results do not depend on it).
        generator: where the per-example noise keys come from (``None``: torch's global generator).

    Returns:
        :class:`Certificates` (prediction or :data:`ABSTAIN`, radius, correct, ...), on the CPU.
    """
    sigma = check_positive("sigma", sigma)
    check_positive_int("n0", n0)
    check_positive_int("n", n)
    check_positive_int("batch", batch)
    alpha = _check_alpha(alpha)
    if x.ndim < 2:
        raise fail("x", "a batch (N, ...) of examples", tuple(x.shape))
    if y.shape != x.shape[:1]:
        raise fail("y", f"labels of shape ({x.shape[0]},)", tuple(y.shape))
    device, dtype = _param(model, x)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    keys = torch.randint(0, KEY_BOUND, (len(x),), generator=generator, dtype=torch.int64, device=gen_device)
    generators = [torch.Generator(device=gen_device) for _ in range(len(x))]
    for g, key in zip(generators, keys.tolist(), strict=True):
        g.manual_seed(key)
    labels = y.detach().to("cpu", torch.long)
    if len(x) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        z64 = torch.zeros(0, dtype=torch.float64)
        return Certificates(empty, z64, empty.bool(), z64, empty, empty, sigma, n0, n, alpha)
    xs = x.detach().to(device, torch.float32)
    counts0 = _sample_counts(model, xs, n0, sigma, generators, batch, dtype)
    selected = counts0.argmax(dim=1)
    counts = _sample_counts(model, xs, n, sigma, generators, batch, dtype)
    count = counts.gather(1, selected[:, None])[:, 0]
    p_lower = clopper_pearson_lower(count, n, alpha)
    certified = p_lower > 0.5
    radius = torch.where(certified, sigma * torch.special.ndtri(p_lower), torch.zeros_like(p_lower))
    prediction = torch.where(certified, selected, torch.full_like(selected, ABSTAIN))
    correct = certified & (selected == labels)
    return Certificates(prediction, radius, correct, p_lower, count, selected, sigma, n0, n, alpha)


def certified_accuracy(certificates: Certificates, radii: Sequence[float]) -> list[float]:
    """Per radius ``r``: the fraction of examples certified correct with radius ``>= r`` (Cohen et al.)."""
    if len(certificates) == 0:
        return [math.nan for _ in radii]
    return [float((certificates.correct & (certificates.radius >= r)).double().mean()) for r in radii]


def abstain_rate(certificates: Certificates) -> float:
    """The fraction of examples CERTIFY abstains on."""
    if len(certificates) == 0:
        return math.nan
    return float((certificates.prediction == ABSTAIN).double().mean())


def average_certified_radius(certificates: Certificates) -> float:
    """The mean over examples of the radius where certified correct, else 0 (Zhai et al. 2020's ACR)."""
    if len(certificates) == 0:
        return math.nan
    return float(torch.where(certificates.correct, certificates.radius, torch.zeros_like(certificates.radius)).mean())
