"""Sigma calibration: the noise scale that puts a NIN in a requested phase.

The NIWs of a node see the curvature ``H_NI``: the Hessian of the loss with respect to the node's
injected signal (for a dense layer, the layer's pre-activation), averaged over the batch. With noise
``sigma`` the NIW block of the Hessian is ``sigma^2 H_NI`` and one SGD step multiplies the NIW's
component along an eigenvector of ``H_NI`` with eigenvalue ``lambda`` by ``1 - k``, ``k = eta sigma^2
lambda`` on average (see docs/dynamics.md). ``lambda_max`` is estimated in the small-sigma limit (NIW at zero,
every example's draw at 1: the Hessian of the NIW block is then exactly ``H_NI``) and
``sigma = sqrt(k_target / (eta lambda_max))``.

The curvature grows 30-450x in the first hundreds of SGD steps (docs/dynamics.md section 5), so ``lambda_max``
at initialisation understates the ``k`` a run lives at. The NINR methods therefore calibrate on a **pilot**:
the plain model trained for ``PILOT_STEPS`` steps of the run's own batches (``SetupContext.pilot``), whose
curvature is past the sharpening transient; the pilot's length and both curvatures are recorded in the run's
setup. ``sigma_for_phase(model, x, y, lr=..., phase=..., where=...)`` works on a copy of the model it is given.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ninr.curvature.hessian import HessianOperator, LossFn, top_eigenvalue
from ninr.curvature.replay import noise_shapes
from ninr.data.base import Dataset
from ninr.errors import ConfigError, check_choice, check_positive, check_positive_int
from ninr.nn.attach import attach_nins, nin_nodes
from ninr.rng import make_generator

PHASE_TARGET_K = {"decay": 0.5, "catapult": 3.0}
"""Target ``k_max = eta sigma^2 lambda_max`` per phase. ``decay``: 0.5, in the middle of the monotone
decay band 0 < k < 1 on a log scale of the curvature estimate's error (a factor 2 either way stays in
0.25..1). ``catapult``: 3.0, past the linear-stability limit k = 2 so the top NIW modes grow at first,
and below the ~4 x where the catapult mechanism (Lewkowycz et al. 2020) lets the curvature fall fast
enough to recover; docs/dynamics.md lists what the MLP sweep measured at these values."""

PILOT_STEPS = 300
"""SGD steps of the calibration pilot: the fc1 node's curvature of the MLP at lr 0.05, batch 64 grows from
2.87e-4 (step 0) to 9.5e-3 (step 50) and 4.0e-2 (step 800), most of the way by a few hundred steps; the
CNN's conv1 node's from 3.9e-5 to 1.75e-2 by step 300. A run's ``k`` keeps drifting after the pilot (the
``decay`` target leaves a factor 4 of headroom below 2)."""

CALIBRATION_BATCH = 1000
"""Examples in the probe batch: the top eigenvalue of the mean Hessian is stable to a few percent."""


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate_sigma` found."""

    sigma: float
    phase: str
    k: float
    curvature: float  # lambda_max of H_NI, the largest over the nodes, on the model calibrated on
    lr: float
    per_layer: dict[str, float]
    pilot_steps: int = 0  # SGD steps of the pilot the curvature was measured on (0: at initialisation)
    curvature_init: float | None = None  # the same at initialisation, when a pilot was used

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def nin_curvature(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    where: str | Sequence[str] = "input",
    loss: str | LossFn = "cross_entropy",
    iters: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """``lambda_max(H_NI)`` per NIN layer ``where`` would attach, at the model's current weights.

    ``model`` is not modified: the NINs are attached to a copy (existing NINs of the copy are reset),
    with NIWs at zero, and each node's Hessian block is taken with every draw equal to 1 and the other
    nodes off (independent noises do not couple on average).
    """
    work = copy.deepcopy(model)
    if not nin_nodes(work):
        attach_nins(work, where, sigma=1.0, niw_init="zeros", seed=seed, example_input=x[:2])
    nodes = nin_nodes(work)
    with torch.no_grad():
        for node in nodes.values():
            node.weight.zero_()
    shapes = noise_shapes(work, x)
    out = {}
    for name in nodes:
        ones = {name: torch.ones(shapes[name], dtype=x.dtype, device=x.device)}
        op = HessianOperator.for_model(
            work, x, y, params=f"{name}.nin.weight" if name else "nin.weight", loss=loss, noise=ones
        )
        eig = top_eigenvalue(op, method="lanczos", iters=iters, generator=make_generator(seed, "calibrate", name))
        out[name] = eig.value
    return out


def sigma_for_phase(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    phase: str = "decay",
    k: float | None = None,
    where: str | Sequence[str] = "input",
    loss: str | LossFn = "cross_entropy",
    seed: int = 0,
) -> Calibration:
    """The sigma giving ``k_max = k`` (default ``PHASE_TARGET_K[phase]``) for the NINs ``where`` names."""
    check_positive("lr", lr)
    check_choice("phase", phase, PHASE_TARGET_K)
    target = PHASE_TARGET_K[phase] if k is None else check_positive("k", k)
    per_layer = nin_curvature(model, x, y, where=where, loss=loss, seed=seed)
    curvature = max(per_layer.values())
    if not curvature > 0:
        raise ConfigError(
            f"the NINs see no positive curvature at initialisation (lambda_max = {curvature:g}); no sigma sets k"
        )
    sigma = math.sqrt(target / (lr * curvature))
    return Calibration(sigma, phase, target, curvature, lr, per_layer)


def calibrate_sigma(
    model: nn.Module,
    data: Dataset,
    lr: float,
    phase: str = "decay",
    *,
    where: str | Sequence[str] = "input",
    batch_size: int = CALIBRATION_BATCH,
    k: float | None = None,
    seed: int = 0,
) -> Calibration:
    """:func:`sigma_for_phase` on a seeded probe batch of ``data``'s training set (classification).

    Example:
        >>> from ninr.data import synthetic
        >>> from ninr.models import build_model
        >>> data = synthetic(n_train=256, n_test=16)
        >>> model = build_model("mlp", data.input_shape, data.num_classes, width=32)
        >>> cal = calibrate_sigma(model, data, lr=0.05, phase="decay")
        >>> cal.sigma > 0
        True
    """
    check_positive_int("batch_size", batch_size)
    n = len(data.x_train)
    idx = torch.randperm(n, generator=make_generator(seed, "calibration-batch"))[: min(batch_size, n)]
    device = next(model.parameters()).device
    x, y = data.x_train[idx].to(device), data.y_train[idx].to(device)
    return sigma_for_phase(model, x, y, lr=lr, phase=phase, k=k, where=where, seed=seed)
