"""The linear-regression NIN model simulated with ninr's own pieces, to overlay on the closed forms.

A teacher ``y = w* . x + noise`` with ``x ~ N(0, I_d)``; the student is an ``nn.Linear(d, 1, bias=False)``
with a noise injection node attached by :func:`ninr.nn.attach_nins` (so the NIW ``a`` feeds the output
directly and the curvature it sees is ``lambda = 1``), trained by ``torch.optim.SGD`` on the loss
``1/2 (f - y)^2``. The loop is a few lines of its own because ninr's fit loop trains classifiers
(cross-entropy); batches follow the same seeded-permutation recipe. Noise is either *redrawn* every step
by the node, or *fixed*: drawn once per training example from a seeded table and replayed with
``given_noise``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ninr.errors import check_choice, check_nonneg, check_positive, check_positive_int
from ninr.functional.noise import sample
from ninr.nn.attach import attach_nins, nin_nodes
from ninr.rng import make_generator

NOISE_MODES = ("redrawn", "fixed")
BLOWUP = 1e100
"""Stop a simulation once ``|a|`` leaves [1/BLOWUP, BLOWUP] x its start: the log slope is already known
to float64 precision and further steps would only overflow."""


@dataclass(frozen=True)
class LinearSetup:
    """One simulation of the linear NIN model.

    Attributes:
        sigma: noise standard deviation.
        eta: learning rate.
        steps: SGD steps.
        batch_size: examples per step; ``None`` is full-batch gradient descent.
        n_train: training examples.
        dim: input dimension.
        label_noise: standard deviation of the teacher's label noise.
        student_init: ``"teacher"`` (start at ``w*``: the residual is zero and the NIW dynamics are purely
            multiplicative) or ``"zeros"``.
        a0: initial NIW.
        noise: ``"redrawn"`` every step or ``"fixed"`` per example.
        seed: every random stream derives from it.
    """

    sigma: float
    eta: float = 0.1
    steps: int = 200
    batch_size: int | None = None
    n_train: int = 2048
    dim: int = 8
    label_noise: float = 0.0
    student_init: str = "teacher"
    a0: float = 1.0
    noise: str = "redrawn"
    seed: int = 0

    def __post_init__(self) -> None:
        check_nonneg("sigma", self.sigma)
        check_positive("eta", self.eta)
        check_positive_int("steps", self.steps)
        if self.batch_size is not None:
            check_positive_int("batch_size", self.batch_size)
        check_positive_int("n_train", self.n_train)
        check_positive_int("dim", self.dim)
        check_nonneg("label_noise", self.label_noise)
        check_choice("student_init", self.student_init, ("teacher", "zeros"))
        check_choice("noise", self.noise, NOISE_MODES)

    @property
    def k(self) -> float:
        """The control parameter ``eta sigma^2`` (``lambda = 1``)."""
        return self.eta * self.sigma**2

    @property
    def effective_batch(self) -> int:
        return self.n_train if self.batch_size is None else min(self.batch_size, self.n_train)


@dataclass
class LinearTrajectory:
    """What one simulation recorded: per step ``t = 0..len-1``, the NIW and the clean training loss."""

    setup: LinearSetup
    niw: np.ndarray
    loss: np.ndarray
    status: str = "completed"  # or "diverged" / "vanished" (stopped at BLOWUP)
    extra: dict[str, float] = field(default_factory=dict)

    def log_slope(self) -> float:
        """Per-step growth rate of ``ln|a|`` over the run (negative: decay)."""
        a = np.abs(self.niw)
        return float(math.log(a[-1] / a[0]) / (len(a) - 1)) if len(a) > 1 and a[-1] > 0 else -math.inf


def teacher_data(n: int, dim: int, label_noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, w*)`` in float64: ``x ~ N(0, I)``, ``w* ~ N(0, I / dim)``, ``y = x w* + label_noise * z``."""
    gen = make_generator(seed, "teacher")
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    w = torch.randn(dim, generator=gen, dtype=torch.float64) / math.sqrt(dim)
    y = x @ w + label_noise * torch.randn(n, generator=gen, dtype=torch.float64)
    return x, y, w


def build_student(setup: LinearSetup, w_star: torch.Tensor) -> nn.Linear:
    """The student ``nn.Linear(dim, 1, bias=False)`` in float64 with a NIN (``a = a0``)."""
    model = nn.Linear(setup.dim, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w_star.view(1, -1) if setup.student_init == "teacher" else torch.zeros_like(model.weight))
    attach_nins(model, "input", sigma=setup.sigma, niw_init="zeros", seed=setup.seed)
    with torch.no_grad():
        nin_nodes(model)[""].weight.fill_(setup.a0)
    return model


def _batches(n: int, batch: int | None, seed: int) -> Iterator[torch.Tensor]:
    """An endless stream of index batches: the fit loop's seeded permutation recipe (full batch: all)."""
    gen = make_generator(seed, "data-order")
    while True:
        if batch is None or batch >= n:
            yield torch.arange(n)
            continue
        yield from torch.randperm(n, generator=gen).split(batch)


def simulate_linear(setup: LinearSetup) -> LinearTrajectory:
    """Train the linear NIN model; record ``a_t`` and the clean loss ``1/2 mean (w . x - y)^2`` every step."""
    x, y, w_star = teacher_data(setup.n_train, setup.dim, setup.label_noise, setup.seed)
    model = build_student(setup, w_star)
    node = nin_nodes(model)[""]
    opt = torch.optim.SGD(model.parameters(), lr=setup.eta)
    table = sample(
        node.distribution,
        (setup.n_train,),
        scale=setup.sigma,
        generator=make_generator(setup.seed, "fixed-noise"),
        dtype=torch.float64,
    )
    niw, loss = [setup.a0], [_clean_loss(model, x, y)]
    status = "completed"
    batches = _batches(setup.n_train, setup.batch_size, setup.seed)
    model.train()
    for _ in range(setup.steps):
        idx = next(batches)
        if setup.noise == "fixed":
            with node.given_noise(table[idx]):
                out = model(x[idx]).squeeze(-1)
        else:
            out = model(x[idx]).squeeze(-1)
        objective = 0.5 * (out - y[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        a = float(node.weight.detach())
        niw.append(a)
        loss.append(_clean_loss(model, x, y))
        if not math.isfinite(a) or abs(a) > BLOWUP * abs(setup.a0):
            status = "diverged"
            break
        if abs(a) < abs(setup.a0) / BLOWUP:
            status = "vanished"
            break
    extra = {"fixed_noise_power": float(table.pow(2).mean())}
    return LinearTrajectory(setup, np.asarray(niw), np.asarray(loss), status, extra)


@torch.no_grad()
def _clean_loss(model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(0.5 * (x @ model.weight.view(-1) - y).pow(2).mean())
