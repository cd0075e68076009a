"""The implicit regularizer of NINs: ``E_eps L(theta, eps) = L(theta) + 1/2 sigma^2 W_NI^T H_NI W_NI + O(sigma^4)``.

For a node drawing one ``eps`` per example, the layer's output is ``z_i + eps_i u`` with ``u`` the node's
contribution at ``eps = 1`` (``u = W_NI`` for a dense layer). Expanding each example's loss to second
order and averaging over ``eps_i`` (mean 0, variance ``sigma^2``) kills the linear term and leaves
``1/2 sigma^2 u^T H_i u``. Averaged over the batch this is ``1/2 sigma^2 Q`` with
``Q = W_NI^T H_NI W_NI = d^2/dt^2 L(eps_i = t for all i)`` at ``t = 0``, which we compute exactly by double
backward through the node's ``given_noise``. Nodes with independent noise add up (cross terms average
to zero). The noise-averaged loss itself is computed without sampling error by Gauss-Hermite
(Gaussian) or Gauss-Legendre (uniform) quadrature, since every example's loss depends on its own draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ninr.curvature.hessian import LossFn, get_loss
from ninr.curvature.replay import noise_shapes, replaying
from ninr.errors import ConfigError, check_positive_int, fail
from ninr.nn.attach import nin_nodes


def _node(model: nn.Module, layer: str | None) -> str:
    nodes = nin_nodes(model)
    if not nodes:
        raise fail("model", "a model with a noise injection node", type(model).__name__)
    if layer is None:
        if len(nodes) != 1:
            raise ConfigError(f"`layer` must name one of the model's NIN layers {sorted(nodes)}, got None")
        return next(iter(nodes))
    if layer not in nodes:
        raise ConfigError(f"`layer` must name one of the model's NIN layers {sorted(nodes)}, got {layer!r}")
    if nodes[layer].per != "example":
        raise ConfigError(f"`layer` {layer!r} draws noise per pixel; the check needs per-example noise")
    return layer


def _loss_at(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    layer: str,
    t: torch.Tensor,
    loss: LossFn,
    shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """The loss with every example's draw at node ``layer`` equal to ``t`` (other nodes off)."""
    shape = noise_shapes(model, x)[layer] if shape is None else shape
    with replaying(model, {layer: t.expand(shape)}):
        return loss(model(x), y)


def nin_quadratic_form(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    layer: str | None = None,
    loss: str | LossFn = "cross_entropy",
) -> float:
    """``Q = W_NI^T H_NI W_NI``: the second derivative of the loss along the node's noise at ``eps = 0``."""
    name = _node(model, layer)
    loss_fn = get_loss(loss)
    t = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    with torch.enable_grad():
        value = _loss_at(model, x, y, name, t, loss_fn)
        (g,) = torch.autograd.grad(value, t, create_graph=True)
        (h,) = torch.autograd.grad(g, t)
    return float(h)


def implicit_regularizer(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str | LossFn = "cross_entropy",
    sigma: float | None = None,
) -> float:
    """``1/2 sum_nodes sigma_n^2 Q_n``: the predicted excess of the noise-averaged loss (``sigma`` overrides)."""
    total = 0.0
    for name, node in nin_nodes(model).items():
        s = node.sigma if sigma is None else sigma
        total += 0.5 * s**2 * nin_quadratic_form(model, x, y, layer=name, loss=loss)
    return total


def _nodes_weights(distribution: str, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature for a unit-variance draw: ``E f(eps) = sum w f(node)``."""
    if distribution == "gaussian":
        z, w = np.polynomial.hermite.hermgauss(points)
        return z * math.sqrt(2.0), w / math.sqrt(math.pi)
    if distribution == "uniform":
        z, w = np.polynomial.legendre.leggauss(points)
        return z * math.sqrt(3.0), w / 2.0
    raise ConfigError(f"`distribution` must be 'gaussian' or 'uniform' for quadrature, got {distribution!r}")


@torch.no_grad()
def noise_averaged_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    layer: str | None = None,
    loss: str | LossFn = "cross_entropy",
    points: int = 40,
) -> float:
    """``E_eps L`` at node ``layer`` with noise std ``sigma`` (other nodes off), by ``points``-node quadrature."""
    name = _node(model, layer)
    loss_fn = get_loss(loss)
    dist = nin_nodes(model)[name].distribution
    z, w = _nodes_weights(dist, check_positive_int("points", points))
    shape = noise_shapes(model, x)[name]
    total = 0.0
    for zi, wi in zip(z, w, strict=True):
        t = torch.tensor(sigma * zi, dtype=x.dtype, device=x.device)
        total += float(wi) * float(_loss_at(model, x, y, name, t, loss_fn, shape))
    return total


@torch.no_grad()
def clean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str | LossFn = "cross_entropy") -> float:
    """``L(theta)``: the loss with all noise off, in eval mode."""
    with replaying(model, None):
        return float(get_loss(loss)(model(x), y))


def check_implicit_regularization(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigmas: Sequence[float],
    *,
    layer: str | None = None,
    loss: str | LossFn = "cross_entropy",
    points: int = 40,
) -> list[dict[str, float]]:
    """Noise-averaged loss against ``L + 1/2 sigma^2 Q`` at each ``sigma``: one row per sigma.

    Columns: ``sigma``, ``clean``, ``averaged``, ``predicted``, ``excess`` (averaged - clean),
    ``ratio`` (excess over its prediction: ``1 + O(sigma^2)``) and ``residual`` (averaged - predicted:
    ``O(sigma^4)``).
    """
    name = _node(model, layer)
    base = clean_loss(model, x, y, loss=loss)
    q = nin_quadratic_form(model, x, y, layer=name, loss=loss)
    rows = []
    for s in sigmas:
        avg = noise_averaged_loss(model, x, y, sigma=s, layer=name, loss=loss, points=points)
        pred = base + 0.5 * s**2 * q
        excess = avg - base
        ratio = excess / (pred - base) if pred != base else math.nan
        rows.append(
            {
                "sigma": s,
                "clean": base,
                "averaged": avg,
                "predicted": pred,
                "excess": excess,
                "ratio": float(ratio),
                "residual": avg - pred,
                "quadratic_form": q,
            }
        )
    return rows
