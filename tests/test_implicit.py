"""The implicit regularizer: quadrature of the noise-averaged loss, and where its small-sigma expansion holds.

Tolerances, each from theory:
- quadrature rules on polynomials: exact to rounding (1e-12 relative in float64);
- against Monte Carlo: 4 standard errors of the Monte Carlo mean (two-sided, 6e-5 for a normal estimate);
- a model whose loss is quadratic in the noise (linear model, squared loss): ``E L - L = 1/2 sigma^2 Q`` at any
  sigma, so the rules agree with it to rounding (Gauss, composite: 1e-11; adaptive: its ``rtol`` times the
  ratio of its error scale to the excess, here 1);
- a one-hidden-layer ReLU network with squared loss, whose ``E L_i`` is piecewise a truncated-Gaussian moment
  (closed form): the adaptive rule within 10x its ``rtol`` (error estimate relative to ``E|L_i - L_i(0)|``),
  the composite rule within the kink bound ``sum_kinks |jump of g'| H^2 / 2`` (``H`` its panel width, ``g`` the
  density-weighted integrand; a rule exact on linear functions errs by at most that on one kink);
- Tanh and GELU networks at small sigma: the expansion's remainder after the ``sigma^2`` term lies within
  1.5x the fourth-order term ``sigma^4 M4 / 8`` (the sixth-order term is below half of it there), and after the
  fourth-order term within 2x the sixth-order term, plus a rounding floor of 1e-14 of the loss.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import ninr
from ninr.curvature.replay import replaying
from ninr.dynamics.implicit import (
    GAUSS_TAIL,
    PANEL_POINTS,
    NoiseLine,
    composite_rule,
    excess_loss,
    expansion_map,
    gauss_rule,
    kronrod_rule,
    loss_derivatives,
    nin_quadratic_form,
    noise_averaged_loss,
)
from ninr.errors import ConfigError

F64 = torch.float64


def mlp(activation: type[nn.Module], niw: float, *, d: int = 6, hidden: int = 16, out: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(fc1=nn.Linear(d, hidden), act=activation(), fc2=nn.Linear(hidden, hidden), act2=activation())
    )
    model.add_module("out", nn.Linear(hidden, out))
    ninr.attach_nins(model, "fc1", sigma=1.0, niw_init=niw, seed=0)
    return model.double()


def batch(n: int, d: int = 6, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, d, generator=gen, dtype=F64), torch.randint(0, classes, (n,), generator=gen)


# ----------------------------------------------------------------------------- rules


def test_gauss_rules_are_exact_on_polynomials() -> None:
    z, w = gauss_rule("gaussian", 12)
    for k in range(0, 24):  # E z^k = (k-1)!! for even k, 0 for odd; exact up to degree 2 * 12 - 1
        expected = math.prod(range(k - 1, 0, -2)) if k % 2 == 0 else 0.0
        scale = math.prod(range(k, 0, -2))  # odd k: rounding relative to E|z|^k's size, ~k!!
        assert float(w @ z**k) == pytest.approx(expected, rel=1e-12, abs=1e-13 * scale)
    z, w = gauss_rule("uniform", 6)
    for k in (0, 2, 4, 10):  # uniform on [-sqrt 3, sqrt 3]: E z^k = 3^(k/2) / (k + 1)
        assert float(w @ z**k) == pytest.approx(3 ** (k / 2) / (k + 1), rel=1e-12)
    hz, _ = np.polynomial.hermite.hermgauss(40)  # Golub-Welsch against numpy's Newton iteration
    z, w = gauss_rule("gaussian", 40)
    assert np.allclose(z, np.sort(hz * math.sqrt(2)), rtol=0, atol=1e-10)
    big, _ = gauss_rule("gaussian", 400)  # numpy's hermgauss overflows from about this size
    assert np.all(np.isfinite(big))


def test_kronrod_rule_degrees_of_exactness() -> None:
    nodes, kronrod, gauss = kronrod_rule()
    for k in range(0, 23, 2):  # K15: degree 22; G7: degree 13
        exact = 2.0 / (k + 1)
        assert float(kronrod @ nodes**k) == pytest.approx(exact, rel=1e-13)
        if k <= 13:
            assert float(gauss @ nodes**k) == pytest.approx(exact, rel=1e-13)
    assert float(kronrod @ nodes**24) != pytest.approx(2.0 / 25, rel=1e-9)  # not beyond


def test_composite_rule_moments() -> None:
    z, w = composite_rule("gaussian", 1024)
    assert len(z) == 1024 and float(np.abs(z).max()) < GAUSS_TAIL
    for k, expected in ((0, 1.0), (2, 1.0), (4, 3.0), (6, 15.0)):  # truncation at 8.5 sigma: below 1e-12
        assert float(w @ z**k) == pytest.approx(expected, rel=1e-12)
    z, w = composite_rule("uniform", 8 * PANEL_POINTS)
    assert float(w @ z**2) == pytest.approx(1.0, rel=1e-13)  # piecewise polynomial: exact


# ----------------------------------------------------------------------------- node choice


def test_per_pixel_node_is_refused_even_when_it_is_the_only_node() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(conv=nn.Conv2d(1, 2, 3, padding=1), act=nn.Tanh(), flat=nn.Flatten(), out=nn.Linear(2 * 16, 3))
    )
    x = torch.randn(4, 1, 4, 4)
    ninr.attach_nins(model, "conv", per="pixel", example_input=x, seed=0)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ConfigError, match="per pixel"):
        nin_quadratic_form(model, x, y)
    with pytest.raises(ConfigError, match="per pixel"):
        excess_loss(model, x, y, [1.0])
    with pytest.raises(ConfigError, match="per pixel"):
        expansion_map(model, x, y, [1.0], layer="conv")


# ----------------------------------------------------------------------------- quadrature against truth


def monte_carlo_excess(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int) -> tuple[float, float]:
    """Mean over ``reps`` of the node's own draws (train mode) of ``mean_i L_i - L``, and its standard error."""
    with torch.no_grad():
        model.eval()
        clean = nn.functional.cross_entropy(model(x), y, reduction="none")
        model.train()
        rows = x.repeat(reps, *[1] * (x.dim() - 1))
        noisy = nn.functional.cross_entropy(model(rows), y.repeat(reps), reduction="none").view(reps, -1)
    diff = noisy - clean  # (reps, B): independent draws; examples differ in distribution
    se = math.sqrt(float(diff.var(dim=0).sum()) / reps) / diff.shape[1]
    return float(diff.mean()), se


def small_cnn_additive() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(conv=nn.Conv2d(1, 3, 3, padding=1), act=nn.ReLU(), flat=nn.Flatten(), out=nn.Linear(3 * 36, 4))
    ).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(16, 1, 6, 6, generator=gen, dtype=F64)
    ninr.attach_nins(model, "conv", sigma=1.5, niw_init=1.0, example_input=x, seed=0)
    return model, x, torch.randint(0, 4, (16,), generator=gen)


@pytest.mark.parametrize("case", ["mlp", pytest.param("cnn", marks=pytest.mark.slow)])
def test_quadrature_matches_monte_carlo(case: str) -> None:
    if case == "mlp":
        model = mlp(nn.ReLU, 1.0)
        for node in ninr.nin_nodes(model).values():
            node.sigma = 2.0  # kinks of many units within reach
        x, y = batch(24)
    else:
        model, x, y = small_cnn_additive()  # per-example additive conv node
    mc, se = monte_carlo_excess(model, x, y, reps=6000)
    sigma = next(iter(ninr.nin_nodes(model).values())).sigma
    for rule in ("composite", "gauss", "adaptive"):
        (got,) = excess_loss(model, x, y, [sigma], rule=rule, points=256 if rule == "gauss" else None, rtol=1e-5)
        assert abs(got.excess - mc) < 4 * se, (rule, got.excess, mc, se)
    assert abs(mc) > 8 * se  # the comparison has resolution: the excess is well away from zero


def test_linear_model_closed_form_at_any_sigma() -> None:
    """Squared loss of a linear model: ``L_i(t) = 1/2 |r_i + t u|^2``, so ``E L - L = 1/2 sigma^2 |u|^2 = 1/2
    sigma^2 Q`` exactly at every sigma."""
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    ninr.attach_nins(model, "all", sigma=1.0, niw_init=0.7, seed=0)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(40, 5, generator=gen, dtype=F64), torch.randn(40, 3, generator=gen, dtype=F64)
    u2 = float(ninr.niws(model)[""].detach().pow(2).sum())
    assert nin_quadratic_form(model, x, y, loss="half_mse") == pytest.approx(u2, rel=1e-12)
    sigmas = [0.1, 10.0, 1000.0]
    for rule, tol in (("gauss", 1e-11), ("composite", 1e-11), ("adaptive", 1e-9)):
        rows = expansion_map(
            model, x, y, sigmas, loss="half_mse", rule=rule, points=64 if rule == "gauss" else 1024, rtol=1e-10
        )
        for row in rows:
            assert row["excess"] == pytest.approx(0.5 * row["sigma"] ** 2 * u2, rel=tol)
            assert row["ratio"] == pytest.approx(1.0, rel=tol) and row["holds"]
            assert row["M4"] == pytest.approx(0.0, abs=1e-12 * u2)  # no higher terms
    avg = noise_averaged_loss(model, x, y, sigma=10.0, loss="half_mse")
    assert avg == pytest.approx(rows[0]["clean"] + 50.0 * u2, rel=1e-11)


def relu_exact_excess(
    z: np.ndarray, u: np.ndarray, a: np.ndarray, b: float, y: np.ndarray, sigma: float
) -> tuple[float, np.ndarray]:
    """``mean_i E[L_i(eps) - L_i(0)]`` for ``f_i(t) = a . relu(z_i + t u) + b``, ``L = 1/2 (f - y)^2``, and every
    kink's jump in ``g'`` (``g = (L_i(t) - L_i(0)) phi_sigma(t)``), by pieces: on each piece ``f = A + B t`` and
    ``E[1/2 (A - y + B t)^2; p < t < q]`` is a truncated Gaussian moment."""

    def moments(p: float, q: float) -> tuple[float, float, float]:
        def pdf(v: float) -> float:
            return 0.0 if math.isinf(v) else math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)

        def cdf(v: float) -> float:
            return 0.5 * math.erfc(-v / math.sqrt(2))

        ps, qs = p / sigma, q / sigma
        m0 = cdf(qs) - cdf(ps)
        m1 = sigma * (pdf(ps) - pdf(qs))
        pterm = 0.0 if math.isinf(ps) else ps * pdf(ps)
        qterm = 0.0 if math.isinf(qs) else qs * pdf(qs)
        return m0, m1, sigma**2 * (m0 + pterm - qterm)

    total, jumps = 0.0, []
    for zi, yi in zip(z, y, strict=True):
        f0 = float(a @ np.maximum(zi, 0.0)) + b
        kinks = np.sort(-zi / u)
        edges = [-math.inf, *kinks.tolist(), math.inf]
        for p, q in itertools.pairwise(edges):
            mid = q - 1.0 if math.isinf(p) else p + 1.0 if math.isinf(q) else (p + q) / 2
            on = zi + mid * u > 0
            big_a, big_b = float(a[on] @ zi[on]) + b - float(yi), float(a[on] @ u[on])
            m0, m1, m2 = moments(p, q)
            total += 0.5 * (big_a**2 * m0 + 2 * big_a * big_b * m1 + big_b**2 * m2)
        total -= 0.5 * (f0 - float(yi)) ** 2
        for k in kinks:  # slope of L_i jumps by (f(k) - y) a_j |u_j| where unit j switches
            j = int(np.argmin(np.abs(-zi / u - k)))
            fk = float(a @ np.maximum(zi + k * u, 0.0)) + b
            density = math.exp(-0.5 * (k / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
            jumps.append(abs((fk - float(yi)) * a[j] * u[j]) * density)
    return total / len(z), np.array(jumps) / len(z)


@pytest.mark.parametrize("sigma", [0.3, 3.0])
def test_relu_network_against_its_closed_form(sigma: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 12), act=nn.ReLU(), out=nn.Linear(12, 1))).double()
    ninr.attach_nins(model, "fc1", niw_init=1.0, seed=0)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(30, 4, generator=gen, dtype=F64), torch.randn(30, 1, generator=gen, dtype=F64)
    fc1, out = model.fc1, model.out
    with torch.no_grad():
        z = (x @ fc1.weight.T + fc1.bias).numpy()
        u = ninr.niws(model)["fc1"].detach().numpy()
        exact, jumps = relu_exact_excess(z, u, out.weight[0].detach().numpy(), float(out.bias), y[:, 0].numpy(), sigma)
    (adaptive,) = excess_loss(model, x, y, [sigma], loss="half_mse", rule="adaptive", rtol=1e-9)
    assert adaptive.excess == pytest.approx(exact, abs=10 * 1e-9 * adaptive.magnitude)
    (composite,) = excess_loss(model, x, y, [sigma], loss="half_mse")
    panel = 2 * GAUSS_TAIL * sigma / (1024 / PANEL_POINTS)
    assert abs(composite.excess - exact) <= float(jumps.sum()) * panel**2 / 2
    # autograd's Q misses the kinks: the expansion is off by more than the next smooth term accounts for
    q = nin_quadratic_form(model, x, y, loss="half_mse")
    assert abs(exact - 0.5 * sigma**2 * q) > 0.05 * abs(exact)


# ----------------------------------------------------------------------------- the expansion, smooth models


@pytest.mark.parametrize("activation", [nn.Tanh, pytest.param(nn.GELU, marks=pytest.mark.slow)])
def test_expansion_holds_at_small_sigma_within_the_next_term(activation: type[nn.Module]) -> None:
    model = mlp(activation, 0.5)
    x, y = batch(64)
    derivs = loss_derivatives(model, x, y, order=6)
    clean, q, m4, m6 = derivs[0], derivs[2], derivs[4], derivs[6]
    assert abs(q) > 1e-4  # a non-trivial regularizer
    line = NoiseLine(model, x, y)
    for sigma in (0.2, 0.1, 0.05):
        (got,) = excess_loss(model, x, y, [sigma], line=line)
        floor = 1e-14 * clean
        second, fourth = 0.5 * sigma**2 * q, sigma**4 * m4 / 8
        sixth = sigma**6 * m6 / 48  # E eps^6 = 15 sigma^6
        # the terms fall by at least 2x per order here, so the fourth-order term bounds the remainder with 1.5x
        # (and, the same fall assumed one order on, the sixth-order term bounds what the fourth leaves with 2x)
        assert abs(sixth) < 0.5 * abs(fourth)
        assert abs(got.excess - second) <= 1.5 * abs(fourth) + floor
        assert abs(got.excess - second - fourth) <= 2 * abs(sixth) + floor
    (row,) = expansion_map(model, x, y, [0.05])
    assert row["holds"] and row["fourth"] == pytest.approx(0.05**4 * m4 / 8, rel=1e-12)


# ----------------------------------------------------------------------------- the hooked evaluation


class SkipNet(nn.Module):
    """A skip connection around the node: its layers after the node see the input batch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.out, self.skip = nn.Linear(6, 8), nn.Linear(8, 4), nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.fc1(x))) + self.skip(x)


def test_noise_line_uses_the_hooked_path_only_where_it_is_right() -> None:
    x, y = batch(10)
    seq = mlp(nn.Tanh, 0.5)
    assert NoiseLine(seq, x, y).hooked
    skip = SkipNet().double()
    ninr.attach_nins(skip, "fc1", niw_init=0.5, seed=0)
    line = NoiseLine(skip, x, y, layer="fc1")
    assert not line.hooked
    idx, t = torch.tensor([0, 3, 9]), torch.tensor([0.5, -2.0, 3.0], dtype=F64)
    with torch.no_grad(), replaying(skip, {"fc1": t}):
        expected = nn.functional.cross_entropy(skip(x[idx]), y[idx], reduction="none")
    assert torch.allclose(line(idx, t), expected, rtol=1e-13)
    custom = excess_loss(seq, x, y, [1.0], loss=lambda out, target: nn.functional.cross_entropy(out, target))
    assert custom[0].excess == pytest.approx(excess_loss(seq, x, y, [1.0])[0].excess, rel=1e-12)  # vmap path
    for model in (seq, skip):  # hooked and replayed paths give one answer
        line = NoiseLine(model, x, y, layer="fc1")
        (a,) = excess_loss(model, x, y, [1.0], line=line)
        line.hooked = False
        (b,) = excess_loss(model, x, y, [1.0], line=line)
        assert a.excess == pytest.approx(b.excess, rel=1e-10)


def test_in_place_activation_after_the_node_changes_nothing() -> None:
    x, y = batch(12)
    plain, in_place = mlp(nn.ReLU, 1.0), mlp(nn.ReLU, 1.0)
    in_place.act = nn.ReLU(inplace=True)
    assert NoiseLine(in_place, x, y).hooked  # the layer's output is copied before the activation overwrites it
    a = excess_loss(plain, x, y, [0.7, 3.0])
    b = excess_loss(in_place, x, y, [0.7, 3.0])
    assert [r.excess for r in a] == pytest.approx([r.excess for r in b], rel=1e-12)
