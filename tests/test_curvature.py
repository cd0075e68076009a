"""Curvature estimators of ninr.curvature.spectrum against a dense Hessian and closed forms.

Tolerances. Lanczos run to the full dimension in float64 reproduces the spectrum to rounding error:
1e-8 relative to the spectral norm. A Ritz pair with residual r has an eigenvalue within r (symmetric
matrices). Hutch++ is exact when its sketch spans the matrix's range (low rank, or k = dim). Gauss
quadrature with m nodes integrates polynomials of degree below 2m exactly, so each probe's SLQ moments
equal v^T H^k v to rounding error; their mean estimates tr(H^k) / n with the probes' standard error, and
is checked within 4 of them (a correct estimator fails with probability below 1e-4 per check). Stochastic
comparisons use fixed seeds, so they are deterministic.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

import ninr
from ninr.curvature import (
    AveragedOperator,
    HessianOperator,
    hutchinson_trace,
    hutchpp_trace,
    spectral_density,
    top_eigenpairs,
)
from ninr.curvature.krylov import rademacher
from ninr.data import load_dataset, locate_fashion_mnist
from ninr.errors import ConfigError, DataError
from ninr.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def tiny() -> tuple[HessianOperator, np.ndarray]:
    """The cross-entropy Hessian of a 3-4-2 tanh MLP (26 parameters) on 20 points, and its dense matrix."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(3, 4), act=nn.Tanh(), out=nn.Linear(4, 2))).double()
    g = gen(1)
    x, y = torch.randn(20, 3, generator=g, dtype=F64), torch.randint(0, 2, (20,), generator=g)
    op = HessianOperator.for_model(model, x, y, noise="off")
    dense = op.dense().numpy()
    np.testing.assert_allclose(dense, dense.T, atol=1e-12)  # double backward gives a symmetric matrix
    return op, 0.5 * (dense + dense.T)


def quadratic(eigenvalues: torch.Tensor, seed: int = 0) -> tuple[HessianOperator, torch.Tensor]:
    """The Hessian of 1/2 p^T A p with A = Q diag(eigenvalues) Q^T, Q a random rotation."""
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen(seed), dtype=F64))
    a = q @ torch.diag(eigenvalues.to(F64)) @ q.T
    a = 0.5 * (a + a.T)
    return HessianOperator(lambda ps: 0.5 * ps[0] @ a @ ps[0], [torch.zeros(n, dtype=F64)]), a


# ----------------------------------------------------------------------------- eigenpairs


@pytest.mark.parametrize("which", ["largest", "smallest", "magnitude"])
def test_eigenpairs_at_full_dimension_are_the_dense_ones(tiny: tuple[HessianOperator, np.ndarray], which: str) -> None:
    op, dense = tiny
    lam, vec = np.linalg.eigh(dense)
    order = {"largest": np.argsort(-lam), "smallest": np.argsort(lam), "magnitude": np.argsort(-np.abs(lam))}[which]
    k = 3
    pairs = top_eigenpairs(op, k, which=which, steps=op.dim, generator=gen(2))
    scale = float(np.abs(lam).max())
    np.testing.assert_allclose(pairs.values, lam[order[:k]], rtol=0, atol=1e-8 * scale)
    gaps = np.abs(lam[order[:k], None] - np.delete(lam, order[:k])[None, :]).min(axis=1)
    assert (gaps > 1e-3 * scale).all(), "the chosen eigenvalues are isolated, so the vectors are determined"
    v = pairs.vectors.numpy()
    np.testing.assert_allclose(np.abs((v * vec[:, order[:k]]).sum(axis=0)), 1.0, atol=1e-8)
    np.testing.assert_allclose(v.T @ v, np.eye(k), atol=1e-10)
    actual = np.linalg.norm(dense @ v - v * pairs.values, axis=0)
    assert (actual <= 1e-8 * scale).all() and (pairs.residuals <= 1e-8 * scale).all()


def test_eigenpairs_with_few_steps_obey_their_residual_bound(tiny: tuple[HessianOperator, np.ndarray]) -> None:
    op, dense = tiny
    lam = np.linalg.eigvalsh(dense)
    pairs = top_eigenpairs(op, 2, steps=10, generator=gen(3))
    v = pairs.vectors.numpy()
    actual = np.linalg.norm(dense @ v - v * pairs.values, axis=0)
    scale = float(np.abs(lam).max())
    # the recurrence's residual beta_m |s_m| is the true one while the basis is orthonormal (re-orthogonalised)
    np.testing.assert_allclose(pairs.residuals, actual, rtol=1e-6, atol=1e-12 * scale)
    for value, r in zip(pairs.values, pairs.residuals, strict=True):
        assert np.abs(lam - value).min() <= r + 1e-12 * scale
    assert pairs.values[0] == pytest.approx(lam[-1], rel=1e-6), "the top converges first"
    assert op.products >= pairs.steps


def test_eigenpairs_arguments(tiny: tuple[HessianOperator, np.ndarray]) -> None:
    op, _ = tiny
    with pytest.raises(ConfigError, match="`k` must be at most the operator's dimension 26, got 27"):
        top_eigenpairs(op, 27)
    with pytest.raises(ConfigError, match="did you mean 'largest'"):
        top_eigenpairs(op, 1, which="larges")
    with pytest.raises(ConfigError, match="`steps` must be at least k = 3, got 2"):
        top_eigenpairs(op, 3, steps=2)
    low, _ = quadratic(torch.tensor([1.0, 1.0, 1.0, 0.0]))  # one distinct nonzero eigenvalue: a 2-step subspace
    with pytest.raises(ConfigError, match="invariant subspace"):
        top_eigenpairs(low, 3, steps=4, generator=gen())


# ----------------------------------------------------------------------------- Hutch++


def test_hutchpp_is_exact_when_the_sketch_spans_the_range() -> None:
    eig = torch.zeros(40, dtype=F64)
    eig[:5] = torch.tensor([5.0, 3.0, -2.0, 1.0, 0.5], dtype=F64)  # rank 5, indefinite
    op, a = quadratic(eig)
    tr = hutchpp_trace(op, products=18, generator=gen(4))  # k = 6 >= rank: Q spans range(A), the rest is 0
    assert tr.value == pytest.approx(float(torch.trace(a)), abs=1e-10)
    assert tr.stderr < 1e-10 and tr.products == 18 == op.products and tr.samples == 6


def test_hutchpp_with_a_full_sketch_is_the_exact_trace(tiny: tuple[HessianOperator, np.ndarray]) -> None:
    op, dense = tiny
    before = op.products
    tr = hutchpp_trace(op, products=3 * op.dim, generator=gen(5))
    assert tr.value == pytest.approx(float(np.trace(dense)), abs=1e-9 * np.abs(dense).sum())
    assert tr.stderr == 0 and tr.products == 2 * op.dim == op.products - before


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum() -> None:
    """Eigenvalues 1/i^2, n = 200, 60 products. Hutchinson's standard deviation is sqrt(2 (||A||_F^2 -
    sum A_ii^2) / 60), about 0.18 against a trace of 1.64; Hutch++ deflates a 20-column sketch, leaving a
    Frobenius norm of about sum_{i>15} i^-4 ~ 1e-4 for 20 probes: two orders of magnitude less. The check
    asks for a factor 5 in mean absolute error over 20 seeds, and for no bias beyond 4 standard errors."""
    op, a = quadratic(1.0 / torch.arange(1, 201, dtype=F64) ** 2, seed=6)
    exact = float(torch.trace(a))
    plain = np.array([hutchinson_trace(op, samples=60, generator=gen(s)).value for s in range(20)]) - exact
    plus = np.array([hutchpp_trace(op, products=60, generator=gen(s)).value for s in range(20)]) - exact
    assert np.abs(plus).mean() < np.abs(plain).mean() / 5
    assert abs(plus.mean()) < 4 * plus.std(ddof=1) / np.sqrt(len(plus))


def test_hutchpp_on_a_model_is_unbiased(tiny: tuple[HessianOperator, np.ndarray]) -> None:
    """30 products (k = 10 < 26, so a stochastic part remains) over 40 seeds: the mean error is within 4
    standard errors of the seeds' spread. (One estimate's own standard error, from its 10 deflated probes,
    is too rough for a 4-sigma check: the probes' values are far from Gaussian.)"""
    op, dense = tiny
    runs = [hutchpp_trace(op, products=30, generator=gen(s)) for s in range(40)]
    assert all(r.samples == 10 and r.stderr > 0 and r.products == 30 for r in runs)
    errors = np.array([r.value for r in runs]) - float(np.trace(dense))
    assert abs(errors.mean()) < 4 * errors.std(ddof=1) / np.sqrt(len(errors))
    with pytest.raises(ConfigError, match="`products` must be an integer >= 3"):
        hutchpp_trace(op, products=2)


# ----------------------------------------------------------------------------- spectral density


@pytest.mark.parametrize("reorthogonalize", [True, False])
def test_slq_moments_are_each_probes_quadratic_forms(
    tiny: tuple[HessianOperator, np.ndarray], reorthogonalize: bool
) -> None:
    """Gauss quadrature with m = 5 nodes: sum w theta^k = v^T H^k v for k < 10, v the probe / sqrt(n)."""
    op, dense = tiny
    steps, probes = 5, 4
    sd = spectral_density(op, steps=steps, probes=probes, reorthogonalize=reorthogonalize, generator=gen(8))
    g = gen(8)  # the probes are the only draws: replay them
    vs = [rademacher(op, g).numpy() / np.sqrt(op.dim) for _ in range(probes)]
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)
    scale = float(np.abs(np.linalg.eigvalsh(dense)).max())
    for k in range(2 * steps):
        expected = np.array([v @ np.linalg.matrix_power(dense, k) @ v for v in vs])
        np.testing.assert_allclose(sd.probe_moments(k), expected, rtol=0, atol=1e-9 * scale**k)


def test_slq_moments_estimate_the_normalised_traces(tiny: tuple[HessianOperator, np.ndarray]) -> None:
    op, dense = tiny
    sd = spectral_density(op, steps=op.dim, probes=30, generator=gen(9))
    for k in (1, 2, 3, 4):
        exact = float(np.trace(np.linalg.matrix_power(dense, k))) / op.dim
        assert abs(sd.moment(k) - exact) < 4 * sd.moment_stderr(k), k
    assert abs(sd.trace() - float(np.trace(dense))) < 4 * op.dim * sd.moment_stderr(1)


def test_slq_density_is_a_probability_density(tiny: tuple[HessianOperator, np.ndarray]) -> None:
    """Trapezoid on 20,000 points over +-6 sigma beyond the nodes: the truncated Gaussian tails (2e-9) and the
    discretisation error (spacing far below sigma) both stay below 1e-6."""
    op, _ = tiny
    sd = spectral_density(op, steps=12, probes=6, generator=gen(10))
    sigma = sd.default_sigma()
    grid, phi = sd.density(sigma=sigma, points=20_000)
    assert (phi >= 0).all()
    assert np.trapezoid(phi, grid) == pytest.approx(1.0, abs=1e-6)
    assert np.trapezoid(grid * phi, grid) == pytest.approx(sd.moment(1), abs=1e-6 * sigma)
    # each node broadened into N(theta, sigma^2) adds sigma^2 to the second moment
    assert np.trapezoid(grid**2 * phi, grid) == pytest.approx(sd.moment(2) + sigma**2, rel=1e-6)


def test_slq_sees_the_spectrum_of_a_two_cluster_matrix() -> None:
    """Eigenvalues 1 (150 of them) and 10 (50): the density's mass splits 3:1 between the clusters."""
    eig = torch.cat([torch.ones(150, dtype=F64), torch.full((50,), 10.0, dtype=F64)])
    op, _ = quadratic(eig, seed=11)
    sd = spectral_density(op, steps=10, probes=20, generator=gen(12))
    high = float((sd.weights * (sd.nodes > 5)).sum() / len(sd.nodes))
    # per probe the mass at 10 is sum over its 50 eigenvectors of (v . u)^2, mean 1/4, std about 0.03; 20 probes
    assert high == pytest.approx(0.25, abs=4 * 0.035 / np.sqrt(20))
    live = sd.nodes[sd.weights > 1e-12]
    assert np.allclose(live[np.abs(live - 1) < 4.5], 1.0, atol=1e-9)
    assert np.allclose(live[live > 5.5], 10.0, atol=1e-9)


# ----------------------------------------------------------------------------- several batches


def test_averaged_operator_is_the_hessian_of_the_union() -> None:
    """Linear regression split into batches of 120 and 80: the size-weighted mean of the batch Hessians is
    the full-batch X^T X / N, and the mean gradient the full-batch gradient."""
    g = gen(13)
    x = torch.randn(200, 4, generator=g, dtype=F64)
    y = torch.randn(200, generator=g, dtype=F64)
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    full = HessianOperator.for_model(model, x, y, loss="half_mse", noise="off")
    batches = [(x[:120], y[:120]), (x[120:], y[120:])]
    for keep in (True, False):
        avg = AveragedOperator.for_model(model, batches, loss="half_mse", noise="off", keep_graphs=keep)
        torch.testing.assert_close(avg.dense(), full.dense(), atol=1e-12, rtol=0)
        torch.testing.assert_close(avg.gradient(), full.gradient(), atol=1e-12, rtol=0)
        assert avg.products == avg.dim and all(op.products == avg.dim for op in avg.operators)
    unweighted = AveragedOperator(avg.operators)  # equal weights: the mean of the two batch Hessians
    expected = 0.5 * (avg.operators[0].dense() + avg.operators[1].dense())
    torch.testing.assert_close(unweighted.dense(), expected, atol=1e-12, rtol=0)
    assert top_eigenpairs(avg, 1, steps=avg.dim).values[0] == pytest.approx(
        float(torch.linalg.eigvalsh(full.dense())[-1]), rel=1e-10
    )


def test_averaged_operator_draws_independent_noise_per_batch() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    ninr.attach_nins(model, "input", sigma=0.5, seed=0)
    g = gen(14)
    x = torch.randn(10, 3, generator=g, dtype=F64)
    y = torch.randn(10, generator=g, dtype=F64)
    avg = AveragedOperator.for_model(model, [(x, y), (x, y)], params="niw", loss="half_mse")
    first, second = (op.noise[""] for op in avg.operators)  # type: ignore[index]
    assert not torch.equal(first, second), "one stream for all batches, so each batch its own draw"
    # the NIW block of 1/2 mean (r + a eps)^2 is mean eps^2, per batch; the average is their mean
    expected = 0.5 * (first.pow(2).mean() + second.pow(2).mean())
    assert avg.matvec(torch.ones(1, dtype=F64)).item() == pytest.approx(float(expected), rel=1e-12)


def test_averaged_operator_arguments() -> None:
    a, _ = quadratic(torch.ones(3))
    b, _ = quadratic(torch.ones(4))
    with pytest.raises(ConfigError, match="share one dimension"):
        AveragedOperator([a, b])
    with pytest.raises(ConfigError, match="`operators` must be a non-empty list"):
        AveragedOperator([])
    with pytest.raises(ConfigError, match="`weights` must be one weight per operator"):
        AveragedOperator([a, a], [1.0])
    with pytest.raises(ConfigError, match="`weight` must be a finite number > 0"):
        AveragedOperator([a, a], [1.0, 0.0])


# ----------------------------------------------------------------------------- Hutch++ on a real Hessian


def fashion_mnist_present() -> bool:
    try:
        locate_fashion_mnist(download=False)
    except DataError:
        return False
    return True


def dense_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """(tr H, ||H||_F^2, sum H_ii^2) of the mean cross-entropy's Hessian over all parameters, from every column
    of the dense Hessian (vmapped forward-over-reverse products, 256 columns at a time)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(v: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            parts[name] = v[i : i + math.prod(shape)].view(shape)
            i += math.prod(shape)
        return nn.functional.cross_entropy(functional_call(model, parts, (x,)), y)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(grad(loss), (flat,), (v,))[1]

    n = flat.numel()
    diag = torch.empty(n, dtype=flat.dtype)
    frobenius = 0.0
    for start in range(0, n, 256):
        idx = torch.arange(start, min(start + 256, n))
        eye = torch.zeros(len(idx), n, dtype=flat.dtype)
        eye[torch.arange(len(idx)), idx] = 1.0
        cols = vmap(hvp)(eye)
        diag[idx] = cols[torch.arange(len(idx)), idx]
        frobenius += float(cols.pow(2).sum())
    return float(diag.sum()), frobenius, float(diag.pow(2).sum())


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_present(), reason="Fashion-MNIST files are not on this machine")
def test_hutchpp_beats_hutchinson_on_an_mlp_hessian() -> None:
    """The comparison in docs/dynamics.md: a 784-32-10 MLP trained one epoch on Fashion-MNIST, float64, the
    Hessian of the mean cross-entropy on 1000 training images (25,450 parameters), 20 seeds per budget.

    Checks: Hutchinson's RMS error is its theory sqrt(2 (||H||_F^2 - sum H_ii^2) / m) up to the spread of an
    RMS over 20 seeds (chi with 20 degrees of freedom: within [0.5, 1.6] of the theory with probability above
    0.999); Hutch++ has the smaller RMS error at every budget from 60 products on.
    """
    data = load_dataset("fashion-mnist")
    config = TrainConfig(dataset="fashion-mnist", model_kwargs={"width": 32, "depth": 1}, epochs=1, seed=0)
    model = train(config, data=data).model.double().eval()
    x, y = data.x_train[:1000].double(), data.y_train[:1000]
    exact, frobenius, diagonal = dense_trace(model, x, y)
    per_probe = math.sqrt(2 * (frobenius - diagonal))
    op = HessianOperator.for_model(model, x, y, noise="off")
    assert op.dim == 25_450
    print(f"\nexact trace {exact:.4f}; Hutchinson sd per probe {per_probe:.4f} ({100 * per_probe / exact:.1f}%)")
    print("products | Hutchinson mean |err| (RMS) | Hutch++ mean |err| (RMS) | Hutch++ range")
    for m in (30, 60, 99, 150, 300):
        plain = np.array([hutchinson_trace(op, samples=m, generator=gen(s)).value for s in range(20)]) / exact - 1
        plus = np.array([hutchpp_trace(op, products=m, generator=gen(s)).value for s in range(20)]) / exact - 1
        rms_plain, rms_plus = float(np.sqrt((plain**2).mean())), float(np.sqrt((plus**2).mean()))
        print(
            f"{m:8d} | {100 * np.abs(plain).mean():.2f}% ({100 * rms_plain:.2f}%) | "
            f"{100 * np.abs(plus).mean():.2f}% ({100 * rms_plus:.2f}%) | "
            f"{100 * np.abs(plus).min():.2f}-{100 * np.abs(plus).max():.2f}%"
        )
        theory = per_probe / math.sqrt(m) / exact
        assert 0.5 * theory < rms_plain < 1.6 * theory, (m, rms_plain, theory)
        if m >= 60:
            assert rms_plus < rms_plain, (m, rms_plus, rms_plain)
