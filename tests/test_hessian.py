"""Hessian tools against closed forms (linear regression, quadratics), and the implicit-regularizer check.

Tolerances: deterministic estimates (Lanczos run to the full dimension, power iteration to 1e-12) must
match the closed form to 1e-8 relative in float64; Hutchinson estimates must lie within 4 of their own
standard errors of the exact trace (and are exact for a diagonal matrix, where every Rademacher probe
gives the trace).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import ninr
from ninr.curvature.hessian import HessianOperator, hutchinson_trace, lanczos, power_iteration, top_eigenvalue
from ninr.dynamics.implicit import check_implicit_regularization, nin_quadratic_form, noise_averaged_loss
from ninr.errors import ConfigError

F64 = torch.float64


def regression(n: int = 200, d: int = 5) -> tuple[nn.Linear, torch.Tensor, torch.Tensor, np.ndarray]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=gen, dtype=F64) * torch.linspace(0.5, 2.0, d, dtype=F64)
    y = torch.randn(n, generator=gen, dtype=F64)
    torch.manual_seed(0)
    model = nn.Linear(d, 1).double()
    xa = torch.cat([x, torch.ones(n, 1, dtype=F64)], dim=1)
    return model, x, y, (xa.T @ xa / n).numpy()  # Hessian of 1/2 mean (w.x + b - y)^2 over (w, b)


def quadratic(a: torch.Tensor) -> HessianOperator:
    return HessianOperator(lambda ps: 0.5 * ps[0] @ a @ ps[0], [torch.randn(a.shape[0], dtype=F64)])


def spd(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    return q @ torch.diag(torch.linspace(0.1, 5.0, n, dtype=F64)) @ q.T


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalue_linear_regression(method: str) -> None:
    model, x, y, hess = regression()
    op = HessianOperator.for_model(model, x, y, loss="half_mse", noise="off")
    est = top_eigenvalue(op, method=method, iters=500, tol=1e-13, generator=torch.Generator().manual_seed(0))
    assert est.value == pytest.approx(np.linalg.eigvalsh(hess)[-1], rel=1e-8)


def test_dense_and_trace_linear_regression() -> None:
    model, x, y, hess = regression()
    op = HessianOperator.for_model(model, x, y, loss="half_mse", noise="off")
    np.testing.assert_allclose(op.dense().numpy(), hess, atol=1e-12)
    tr = hutchinson_trace(op, samples=400, generator=torch.Generator().manual_seed(0))
    assert abs(tr.value - np.trace(hess)) < 4 * tr.stderr
    assert tr.stderr < 0.05 * np.trace(hess)


def test_named_subset_is_the_weight_block() -> None:
    model, x, y, hess = regression()
    op = HessianOperator.for_model(model, x, y, params="weight", loss="half_mse", noise="off")
    assert op.names == ["weight"]
    np.testing.assert_allclose(op.dense().numpy(), hess[:-1, :-1], atol=1e-12)


def test_quadratic_lanczos_power_and_trace() -> None:
    a = spd(30)
    op = quadratic(a)
    ritz = lanczos(op, steps=30, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(ritz, np.linalg.eigvalsh(a.numpy()), rtol=1e-8)
    pw = power_iteration(op, iters=2000, tol=1e-13, generator=torch.Generator().manual_seed(0))
    assert pw.converged and pw.value == pytest.approx(5.0, rel=1e-6)
    tr = hutchinson_trace(op, samples=300, generator=torch.Generator().manual_seed(1))
    assert abs(tr.value - float(torch.trace(a))) < 4 * tr.stderr


def test_hutchinson_is_exact_on_a_diagonal() -> None:
    diag = torch.linspace(-1.0, 3.0, 17, dtype=F64)
    tr = hutchinson_trace(quadratic(torch.diag(diag)), samples=5, generator=torch.Generator().manual_seed(0))
    assert tr.value == pytest.approx(float(diag.sum()), abs=1e-12) and tr.stderr == pytest.approx(0, abs=1e-12)


def test_indefinite_lanczos_top_vs_power_magnitude() -> None:
    a = torch.diag(torch.tensor([-4.0, -1.0, 0.5, 2.0], dtype=F64))
    op = quadratic(a)
    assert top_eigenvalue(op, method="lanczos", iters=4).value == pytest.approx(2.0, rel=1e-10)
    pw = top_eigenvalue(op, method="power", iters=500, tol=1e-12, generator=torch.Generator().manual_seed(0))
    assert pw.value == pytest.approx(-4.0, rel=1e-8)


def nin_regression(sigma: float = 0.7) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    model, x, y, _ = regression()
    ninr.attach_nins(model, "input", sigma=sigma, seed=0)
    return model, x, y


def test_niw_block_is_mean_noise_power_and_noise_is_frozen() -> None:
    model, x, y = nin_regression()
    node = ninr.nin_nodes(model)[""]
    node.generator(x.device)
    rng_before = node.get_rng_state()
    params_before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    op = HessianOperator.for_model(model, x, y, params="niw", loss="half_mse")
    eps = op.noise[""]  # type: ignore[index]
    # d^2/da^2 of 1/2 mean (r_i + a eps_i)^2 is mean eps_i^2, exactly
    assert op.matvec(torch.ones(1, dtype=F64)).item() == pytest.approx(float(eps.pow(2).mean()), rel=1e-12)
    assert float(eps.std()) == pytest.approx(0.7, rel=0.15)
    v = torch.ones(1, dtype=F64)
    assert torch.equal(op.matvec(v), op.matvec(v))  # the same noise in every product
    for dev, state in node.get_rng_state().items():
        assert torch.equal(state, rng_before[dev])  # the node's own stream was not consumed
    assert all(torch.equal(model.state_dict()[k], v) for k, v in params_before.items())
    assert model.training and node.force is None


def test_select_params_errors() -> None:
    model, x, y, _ = regression()
    with pytest.raises(ConfigError, match="did you mean 'weight'"):
        HessianOperator.for_model(model, x, y, params="weigth", loss="half_mse", noise="off")
    with pytest.raises(ConfigError, match="no NINs"):
        HessianOperator.for_model(model, x, y, params="niw", loss="half_mse", noise="off")
    with pytest.raises(ConfigError, match="`noise` must be one of"):
        HessianOperator.for_model(model, x, y, loss="half_mse", noise="fresh")


# ----------------------------------------------------------------------------- implicit regularizer


def test_linear_nin_noise_average_is_exactly_quadratic() -> None:
    model, x, y = nin_regression()
    a = float(ninr.niws(model)[""].detach())
    assert nin_quadratic_form(model, x, y, loss="half_mse") == pytest.approx(a**2, rel=1e-12)
    rows = check_implicit_regularization(model, x, y, [0.3, 1.0, 3.0], loss="half_mse")
    for row in rows:  # for a loss quadratic in the noise the expansion has no higher terms
        assert row["averaged"] == pytest.approx(row["predicted"], rel=1e-12)


def test_implicit_regularizer_agrees_to_second_order() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 16), act=nn.Tanh(), out=nn.Linear(16, 4))).double()
    ninr.attach_nins(model, "input", sigma=0.1, niw_init=0.5, seed=0)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=gen, dtype=F64), torch.randint(0, 4, (64,), generator=gen)
    rows = check_implicit_regularization(model, x, y, [0.1, 0.05, 0.025], points=24)
    assert abs(rows[0]["quadratic_form"]) > 1e-3  # a non-trivial regularizer
    assert abs(rows[-1]["ratio"] - 1) < 1e-3  # excess / prediction = 1 + O(sigma^2) ...
    for big, small in itertools.pairwise(rows):
        assert (big["ratio"] - 1) / (small["ratio"] - 1) == pytest.approx(4.0, rel=0.1)  # ... with sigma^2 scaling
        assert big["residual"] / small["residual"] == pytest.approx(16.0, rel=0.1)  # residual = O(sigma^4)


def test_noise_average_quadrature_matches_monte_carlo() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(3, 8), act=nn.ReLU(), out=nn.Linear(8, 2))).double()
    ninr.attach_nins(model, "input", sigma=1.0, niw_init=1.0, seed=0)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, generator=gen, dtype=F64), torch.randint(0, 2, (32,), generator=gen)
    quad = noise_averaged_loss(model, x, y, sigma=1.0, points=60)
    reps = 2000  # one forward pass over the batch tiled reps times: reps independent draws per example
    model.train()
    with torch.no_grad():
        per_example = nn.functional.cross_entropy(model(x.repeat(reps, 1)), y.repeat(reps), reduction="none")
    mc = per_example.view(reps, -1).mean(dim=1).numpy()
    assert abs(quad - mc.mean()) < 4 * mc.std() / np.sqrt(len(mc))
