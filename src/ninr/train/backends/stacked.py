"""The stacked backend: K models of one architecture as one batched computation, each run still itself.

A sweep holds many small runs that differ only in seed, learning rate, momentum, a method's hyperparameters
or NIN placement. Their per-step work is a handful of small matrix products, so their time goes to per-op
overhead; stacking K of them into ``(K, ...)`` tensors (:class:`~ninr.train.backends.stacked_net.StackedNet`)
turns K small products into one batched product. Batches are ``(K, B, ...)``: run k's slice is its own batch,
drawn from its own permutation. The summed loss of the K runs has, for each run's parameters, exactly that
run's gradient, because no op mixes slices.

Each run's optimizer is a :class:`StackedRunOptimizer`: a real ``torch.optim.SGD`` over the run's parameters
whose ``param_groups`` hold the run's ``lr`` and ``momentum``. The stack reads them at every step (so a callback
or an LR scheduler that changes them changes the run), and steps all runs at once with :class:`StackedSGD`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ninr.errors import NinrError
from ninr.train.backends.base import Backend
from ninr.train.backends.stacked_net import StackedNet
from ninr.train.backends.stacked_ops import stacked_cross_entropy


class StackedRunOptimizer(torch.optim.SGD):
    """One stacked run's optimizer: its hyperparameters live here, its steps are the stack's.

    ``step()`` raises: the stack updates every run at once. Read or change ``param_groups[0]["lr"]`` and
    ``["momentum"]`` as for any optimizer; the next stacked step uses them.
    """

    def step(self, closure: Any = None) -> Any:
        raise NinrError("a stacked run is stepped by its stack (StackedSGD); change its param_groups instead")


class StackedSGD:
    """PyTorch's SGD update (dampening 0, no Nesterov) for K runs at once, each with its own lr and momentum.

    Every stacked tensor is contiguous with run k's values in block k, so ``view(K, -1)`` gives each run a
    row and one ``addcmul_`` updates all runs: ``p -= lr_k * g`` (with momentum, ``g`` is the buffer
    ``buf = momentum_k * buf + g``, which starts as a copy of the first gradient). The learning rates and
    momenta are read from ``runs`` (the runs' optimizers) before each step.
    """

    def __init__(self, params: Sequence[torch.Tensor], runs: Sequence[torch.optim.Optimizer]) -> None:
        self.params = list(params)
        self.runs = list(runs)
        self.k = len(runs)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)
        self._hyper: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self._read_hyperparameters()

    def _column(self, values: Sequence[float]) -> torch.Tensor:
        """One value per run as a (K, 1) tensor like the parameters (broadcasts over each run's row)."""
        like = self.params[0]
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(self.k, 1)

    def _read_hyperparameters(self) -> None:
        groups = [opt.param_groups[0] for opt in self.runs]
        hyper = (tuple(float(g["lr"]) for g in groups), tuple(float(g["momentum"]) for g in groups))
        if hyper != self._hyper:
            self._hyper = hyper
            self.neg_lr = -self._column(hyper[0])
            self.momentum = self._column(hyper[1])
            self.use_momentum = any(m != 0 for m in hyper[1])

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One update; with ``active`` (K,) bool, runs marked False keep their parameters."""
        self._read_hyperparameters()
        keep = None if active is None else active.view(self.k, 1)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            p2, g2 = p.view(self.k, -1), p.grad.view(self.k, -1)
            if self.use_momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g2.clone()
                else:
                    buf.mul_(self.momentum).add_(g2)
                g2 = buf
            if keep is None:
                p2.addcmul_(g2, self.neg_lr)
            else:
                p2.copy_(torch.where(keep, torch.addcmul(p2, g2, self.neg_lr), p2))


class StackedBackend(Backend):
    """K same-architecture models trained as one (see the module docstring).

    Raises:
        NotStackableError: the models have no stacked form (raised by :class:`StackedNet`).
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        *,
        lr: Sequence[float],
        momentum: Sequence[float],
        use_channels_last: bool = False,
    ) -> None:
        self.net = StackedNet(models, use_channels_last=use_channels_last)
        self.models = self.net.models
        self.optimizers = [
            StackedRunOptimizer(m.parameters(), lr=a, momentum=b) for m, a, b in zip(models, lr, momentum, strict=True)
        ]
        self.sgd = StackedSGD(self.net.parameters(), self.optimizers)
        self._slice_shapes: tuple[torch.Size, torch.Size] | None = None

    def batches(self, perms: Sequence[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
        yield from torch.stack(list(perms)).split(batch_size, dim=1)

    def split(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self._slice_shapes = (x.shape[1:], y.shape[1:])
        return [(x[k], y[k]) for k in range(self.k)]

    def join(self, parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        if any((xk.shape, yk.shape) != self._slice_shapes for xk, yk in parts):
            raise NinrError("a stacked run's transform_batch changed the batch shape")
        return torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits, stacked_cross_entropy(logits, y)

    def hits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (logits.detach().argmax(dim=2) == y).sum(dim=1)

    def examples(self, y: torch.Tensor) -> int:
        return int(y.shape[1])

    def zero_grad(self) -> None:
        self.net.clear_run_grads()
        self.sgd.zero_grad()

    def expose_grads(self) -> None:
        self.net.expose_grads()

    def step(self, active: torch.Tensor | None) -> None:
        self.sgd.step(active)

    def release(self) -> None:
        self.net.clear_run_grads()
        self.net.release()
