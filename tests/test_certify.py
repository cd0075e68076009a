"""Tests of ninr.robustness.certify: the Clopper-Pearson bound, then a linear classifier's exact smoothed
classifier as the oracle (Cohen, Rosenfeld and Kolter 2019).

For f(x) = argmax(W x + b) with two classes, the margin m(x) = w.x + c (w = W[1] - W[0], c = b[1] - b[0])
under x + eps, eps ~ N(0, s^2 I), is N(m(x), s^2 |w|^2): the top class has p_A = Phi(|m| / (s |w|)), the
smoothed classifier is g(x) = [m(x) > 0] and its exact certified radius s Phi^-1(p_A) = |m| / |w| is the
distance to the decision boundary. Probability tolerances are exact binomial tails computed here in pure
Python (log-space sums), independent of the code under test.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch
from torch import nn

from ninr.errors import ConfigError
from ninr.nn import attach_nins, force_noise
from ninr.robustness import ABSTAIN, Certificates, certified_accuracy, certify
from ninr.robustness.certify import (
    NOISE_BLOCK,
    abstain_rate,
    average_certified_radius,
    clopper_pearson_lower,
    regularized_incomplete_beta,
)

pytestmark = pytest.mark.usefixtures("one_thread")

PHI = NormalDist()
LEVEL = 1e-6  # false-failure probability allowed to each statistical assertion below


# ---------------------------------------------------------------- exact binomial tails (the test's own)


def _log_pmf(n: int, k: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def _pmf(n: int, p: float) -> list[float]:
    return [math.exp(_log_pmf(n, k, p)) for k in range(n + 1)]


def _tail(n: int, k: int, p: float) -> float:
    """P(Bin(n, p) >= k), summed in log space."""
    terms = [_log_pmf(n, j, p) for j in range(max(k, 0), n + 1)]
    top = max(terms)
    return math.exp(top) * math.fsum(math.exp(t - top) for t in terms) if top > -math.inf else 0.0


def _upper(n: int, q: float, level: float = LEVEL) -> int:
    """The smallest t with P(Bin(n, q) > t) <= level."""
    pmf, above = _pmf(n, q), 1.0
    for t in range(n + 1):
        above -= pmf[t]
        if above <= level:
            return t
    return n


def _lower(n: int, q: float, level: float = LEVEL) -> int:
    """The largest t with P(Bin(n, q) < t) <= level."""
    pmf, below = _pmf(n, q), 0.0
    for t in range(n + 1):
        if below + pmf[t] > level:
            return t
        below += pmf[t]
    return n


# ---------------------------------------------------------------- the bound


def test_incomplete_beta_closed_forms() -> None:
    x = torch.tensor([0.0, 0.01, 0.3, 0.5, 0.77, 0.999, 1.0], dtype=torch.float64)
    for b in (1.0, 3.0, 250.0):  # I_x(1, b) = 1 - (1 - x)^b
        assert torch.allclose(regularized_incomplete_beta(1.0, b, x), 1 - (1 - x) ** b, rtol=1e-12, atol=1e-14)
    for a in (1.0, 7.0, 4000.0):  # I_x(a, 1) = x^a
        assert torch.allclose(regularized_incomplete_beta(a, 1.0, x), x**a, rtol=1e-11, atol=1e-14)
    for a in (0.5, 2.0, 30.0, 5000.0):  # symmetry: I_{1/2}(a, a) = 1/2
        # the prefactor's log holds lgamma(2a) (8e4 at a = 5000): float64 rounding of ~1e-16 of it, relative
        tol = 1e-15 * max(1.0, abs(math.lgamma(2 * a))) + 1e-14
        assert float(regularized_incomplete_beta(a, a, 0.5)) == pytest.approx(0.5, abs=tol)


@pytest.mark.parametrize("n", [1, 10, 100, 10_000])
def test_clopper_pearson_solves_its_defining_equation(n: int) -> None:
    alpha = 0.001
    ks = sorted(k for k in {0, 1, 2, n // 3, n // 2, n // 2 + 1, (9 * n) // 10, n - 1, n} if k <= n)
    bound = clopper_pearson_lower(torch.tensor(ks), n, alpha)
    assert float(bound[0]) == 0.0  # k = 0
    assert float(bound[-1]) == pytest.approx(alpha ** (1 / n), rel=1e-12)  # k = n: p^n = alpha
    for k, p in zip(ks, bound.tolist(), strict=True):
        if k > 0:
            # P(Bin(n, p_lower) >= k) = alpha; float64 tails of n = 10^4 terms agree to ~1e-11 relative
            assert _tail(n, k, p) == pytest.approx(alpha, rel=1e-9)
        assert p <= k / n
    assert bool((bound[1:] >= bound[:-1]).all()), "the bound grows with k"


def test_clopper_pearson_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match="`alpha` must be a number in \\(0, 1\\)"):
        clopper_pearson_lower(torch.tensor([3]), 10, 1.0)
    with pytest.raises(ConfigError, match=r"`k` must be counts in 0\.\.10"):
        clopper_pearson_lower(torch.tensor([11]), 10, 0.01)


# ---------------------------------------------------------------- the linear oracle


def _linear(w: torch.Tensor, c: float = 0.0) -> nn.Module:
    """f(x) = argmax(W x + b) with W = [0; w], b = [0, c] (float64): margin w.x + c."""
    model = nn.Linear(len(w), 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.stack([torch.zeros_like(w), w]))
        model.bias.copy_(torch.tensor([0.0, c], dtype=torch.float64))
    return model.eval()


def _at_probability(w: torch.Tensor, p_a: float, sigma: float, sign: int = 1) -> torch.Tensor:
    """A point whose top class has probability ``p_a`` under the noise: distance s Phi^-1(p_A) from the
    boundary along w (class 1 if sign > 0)."""
    return sign * sigma * PHI.inv_cdf(p_a) * w / w.norm()


W = torch.tensor([0.5, -1.0, 2.0, 0.25, 0.0, -0.75, 1.5, 1.0], dtype=torch.float64)


def test_certificates_are_lower_bounds_close_to_the_exact_radius() -> None:
    sigma, n, alpha = 0.5, 10_000, 0.001
    probs = [0.7, 0.8, 0.9, 0.95, 0.99]
    x = torch.stack([_at_probability(W, p, sigma, s) for p in probs for s in (1, -1)])
    truth = torch.tensor([1 if s > 0 else 0 for _ in probs for s in (1, -1)])
    exact = torch.tensor([sigma * PHI.inv_cdf(p) for p in probs for _ in (1, -1)], dtype=torch.float64)
    cert = certify(_linear(W), x, truth, sigma=sigma, n=n, alpha=alpha, generator=torch.Generator().manual_seed(0))
    # Selection picks the true class unless Bin(100, p_A) <= 50: probability <= 2e-5 for p_A >= 0.7.
    assert torch.equal(cert.prediction, truth) and bool(cert.correct.all())
    # Each certificate exceeds the exact radius with probability <= alpha (10 examples: <= 1%).
    assert bool((cert.radius <= exact).all()), (cert.radius, exact)
    # Closeness: with probability >= 1 - 1e-6 the count is at least k_low, the exact 1e-6 binomial quantile, so
    # the radius is at least s Phi^-1(CP(k_low)): the Clopper-Pearson width (~ z_{1-alpha} sqrt(p(1-p)/n)) plus
    # the sampling spread of k. For p_A = 0.8 that is 0.054 below the exact 0.421.
    k_low = torch.tensor([_lower(n, p) for p in probs for _ in (1, -1)])
    floor = sigma * torch.special.ndtri(clopper_pearson_lower(k_low, n, alpha))
    assert bool((cert.radius >= floor).all()), (cert.radius, floor)
    assert bool((exact - floor < 0.35 * exact).all())  # the tolerance is informative (< 35% of the radius)


def _violations(cert: Certificates, g: int, radius: float) -> int:
    """Certificates that are wrong: not abstained and another class, or a radius above the exact one."""
    wrong = (cert.prediction != ABSTAIN) & ((cert.prediction != g) | (cert.radius > radius))
    return int(wrong.sum())


def _outcome_probabilities(p_a: float, n0: int, n: int, alpha: float) -> dict[str, float]:
    """Exact probabilities of CERTIFY's outcomes for a 2-class example with top-class probability p_A, from
    the binomial laws of the selection (odd n0: no ties) and estimation counts."""
    bound = clopper_pearson_lower(torch.arange(n + 1), n, alpha).tolist()
    select_a = _tail(n0, n0 // 2 + 1, p_a)
    pmf_a, pmf_b = _pmf(n, p_a), _pmf(n, 1 - p_a)
    cert_a = math.fsum(pr for pr, lb in zip(pmf_a, bound, strict=True) if lb > 0.5)
    cert_b = math.fsum(pr for pr, lb in zip(pmf_b, bound, strict=True) if lb > 0.5)
    above = math.fsum(pr for pr, lb in zip(pmf_a, bound, strict=True) if lb > p_a)  # radius above the exact one
    return {
        "abstain": select_a * (1 - cert_a) + (1 - select_a) * (1 - cert_b),
        "error": (1 - select_a) * cert_b,
        "violation": select_a * above + (1 - select_a) * cert_b,
    }


@pytest.mark.parametrize("p_a", [0.55, 0.6, 0.8])
def test_abstain_error_and_coverage_rates_match_the_exact_laws(p_a: float) -> None:
    """2,000 independent certificates of one example with known p_A (n0 = 11, n = 100, alpha = 0.05).

    Theory (Cohen et al., Prop. 2): the probability of a wrong certificate (wrong class or a radius above the
    exact one) is at most alpha. Each count below is Bin(2000, q) with q computed exactly; it must lie within
    the central 1 - 2e-6 of that law, and q itself must obey the theory.
    """
    sigma, n0, n, alpha, reps = 0.5, 11, 100, 0.05, 2000
    x = _at_probability(W, p_a, sigma).expand(reps, -1).clone()
    y = torch.ones(reps, dtype=torch.long)
    cert = certify(_linear(W), x, y, sigma=sigma, n0=n0, n=n, alpha=alpha, generator=torch.Generator().manual_seed(1))
    exact = _outcome_probabilities(p_a, n0, n, alpha)
    assert exact["violation"] <= alpha and exact["error"] <= alpha
    observed = {
        "abstain": int((cert.prediction == ABSTAIN).sum()),
        "error": int(((cert.prediction != ABSTAIN) & (cert.prediction != 1)).sum()),
        "violation": _violations(cert, 1, sigma * PHI.inv_cdf(p_a)),
    }
    for name, count in observed.items():
        q = exact[name]
        assert _lower(reps, q) <= count <= _upper(reps, q), (name, count, reps * q)
    # The bound the theory gives, without the exact law: violations <= the 1e-6 upper quantile of Bin(2000, alpha).
    assert observed["violation"] <= _upper(reps, alpha)
    if p_a == 0.8:
        # The test has power: the plug-in radius s Phi^-1(k / n) (no confidence bound) exceeds the exact radius
        # about half of the time, far above what alpha allows.
        plug = torch.where(cert.prediction == 1, sigma * torch.special.ndtri(cert.count.double() / n), 0.0)
        assert int((plug > sigma * PHI.inv_cdf(p_a)).sum()) > _upper(reps, alpha)


def test_randomized_base_classifier_has_the_widened_exact_radius() -> None:
    """A noise injection node on the logits adds d * e (e ~ N(0, s_n^2), d = NIW[1] - NIW[0]) to the margin, so
    with its noise on p_A = Phi(|m| / sqrt(s^2 |w|^2 + s_n^2 d^2)): the certificate covers that classifier."""
    sigma, s_n, n, alpha = 0.5, 1.0, 10_000, 0.001
    model = nn.Sequential(_linear(W))
    attach_nins(model, "input", sigma=s_n, niw_init=1.0, seed=4)
    model = model.double().eval()
    niw = model[0].nin.weight.detach().flatten()
    spread = math.sqrt((sigma * float(W.norm())) ** 2 + (s_n * float(niw[1] - niw[0])) ** 2)
    x = _at_probability(W, 0.95, sigma).expand(6, -1).clone()
    margin = float(x[0] @ W)
    p_on = PHI.cdf(margin / spread)
    assert 0.6 < p_on < 0.95, "the node's noise must matter for this test to mean anything"
    y = torch.ones(6, dtype=torch.long)
    gen = torch.Generator().manual_seed(2)
    with force_noise(model, True):
        on = certify(model, x, y, sigma=sigma, n=n, alpha=alpha, generator=gen)
    exact_on = sigma * PHI.inv_cdf(p_on)
    floor = sigma * float(torch.special.ndtri(clopper_pearson_lower(torch.tensor(_lower(n, p_on)), n, alpha)))
    assert bool(((on.radius <= exact_on) & (on.radius >= floor)).all()), (on.radius, exact_on, floor)
    off = certify(model, x, y, sigma=sigma, n=n, alpha=alpha, generator=torch.Generator().manual_seed(2))
    assert bool((off.radius > exact_on).all()), "with its noise off the model is the deterministic one"


def test_batched_equals_one_example_at_a_time_and_any_batch() -> None:
    """Each example's noise comes from its own key, drawn in order, in blocks a forward pass never splits: the
    counts do not depend on ``batch`` or on the other examples. The model is float64 and linear; a different
    blocking of the matrix product changes a logit by a few ulps, which flips a prediction only at a margin
    below ~1e-15 (probability ~1e-15 per row)."""
    sigma = 0.5
    x = torch.stack([_at_probability(W, p, sigma) for p in (0.55, 0.7, 0.9)] + [torch.zeros_like(W)])
    y = torch.tensor([1, 1, 1, 0])
    model = _linear(W, c=0.1)
    kw = {"sigma": sigma, "n0": 150, "n": 1234, "alpha": 0.01}
    whole = certify(model, x, y, batch=1000, generator=torch.Generator().manual_seed(3), **kw)
    small = certify(model, x, y, batch=7, generator=torch.Generator().manual_seed(3), **kw)
    gen = torch.Generator().manual_seed(3)
    ones = [certify(model, x[i : i + 1], y[i : i + 1], batch=250, generator=gen, **kw) for i in range(len(x))]
    for other in (small, *ones):
        assert other.n == whole.n
    assert torch.equal(small.count, whole.count) and torch.equal(small.selected, whole.selected)
    assert torch.equal(torch.cat([c.count for c in ones]), whole.count)
    assert torch.equal(torch.cat([c.radius for c in ones]), whole.radius)
    assert NOISE_BLOCK > 7  # the premise: batch 7 still runs whole blocks


def test_aggregates_and_argument_checks() -> None:
    cert = Certificates(
        prediction=torch.tensor([1, ABSTAIN, 0, 2]),
        radius=torch.tensor([0.5, 0.0, 0.2, 1.0], dtype=torch.float64),
        correct=torch.tensor([True, False, False, True]),
        p_lower=torch.zeros(4, dtype=torch.float64),
        count=torch.zeros(4, dtype=torch.long),
        selected=torch.tensor([1, 0, 0, 2]),
        sigma=0.5,
        n0=1,
        n=1,
        alpha=0.1,
    )
    assert certified_accuracy(cert, [0.0, 0.5, 0.6, 1.0, 1.1]) == [0.5, 0.5, 0.25, 0.25, 0.0]
    assert abstain_rate(cert) == 0.25
    assert average_certified_radius(cert) == pytest.approx((0.5 + 1.0) / 4)
    model, x, y = _linear(W), torch.zeros(2, len(W)), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ConfigError, match="`sigma` must be a finite number > 0"):
        certify(model, x, y, sigma=0.0)
    with pytest.raises(ConfigError, match="`alpha` must be a number in"):
        certify(model, x, y, sigma=0.5, alpha=0.0)
    with pytest.raises(ConfigError, match="`n0` must be an integer >= 1"):
        certify(model, x, y, sigma=0.5, n0=0)
    with pytest.raises(ConfigError, match=r"`y` must be labels of shape \(2,\)"):
        certify(model, x, y[:1], sigma=0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_any_model_dtype(dtype: torch.dtype) -> None:
    """The noise is drawn in float32 and the noisy input cast to the model's dtype."""
    model = _linear(W.float()).to(dtype)
    x = _at_probability(W, 0.99, 0.25).float().expand(3, -1).clone()
    cert = certify(model, x, torch.ones(3, dtype=torch.long), sigma=0.25, n=500, generator=torch.Generator())
    assert bool(cert.correct.all()) and cert.radius.dtype == torch.float64
