"""The protocol between the training loop and what it trains: one model, or K models as one stack.

:func:`ninr.train.fit.fit` owns every per-run semantic (data order, batch transforms, divergence, penalty
gradients, gradient hooks, callbacks, records); a backend owns only the layout of the computation: how K
permutations become batches, the forward pass and each run's loss, the gradient step. Run ``k`` is always
reachable through its own model (``models[k]``) and optimizer (``optimizers[k]``), whatever the layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class Backend(ABC):
    """K runs of one architecture behind one interface (K = 1 for a lone model).

    Attributes:
        models: Run k's model: the model itself, or one whose parameters are views of the stack.
        optimizers: Run k's optimizer, whose ``param_groups[0]`` holds the run's ``lr`` and ``momentum``.
    """

    models: Sequence[nn.Module]
    optimizers: Sequence[torch.optim.Optimizer]

    @property
    def k(self) -> int:
        """The number of runs."""
        return len(self.models)

    @abstractmethod
    def batches(self, perms: Sequence[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
        """The index tensors of one epoch, from each run's permutation of the training set."""

    @abstractmethod
    def split(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each run's part of a batch."""

    @abstractmethod
    def join(self, parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch from each run's part (the inverse of :meth:`split`)."""

    @abstractmethod
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and each run's mean cross-entropy, shape ``(K,)``."""

    @abstractmethod
    def hits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each run's count of correct predictions in the batch, shape ``(K,)``."""

    @abstractmethod
    def examples(self, y: torch.Tensor) -> int:
        """Examples per run in the batch."""

    def train(self, mode: bool = True) -> None:
        """Every run's model in training (noise on) or evaluation mode."""
        for m in self.models:
            m.train(mode)

    @abstractmethod
    def zero_grad(self) -> None:
        """Drop the gradients of the previous step."""

    def expose_grads(self) -> None:  # noqa: B027 (a no-op where each run's parameters hold their own grads)
        """Make each run's parameters' ``.grad`` its gradient, for the methods' gradient hooks."""

    @abstractmethod
    def step(self, active: torch.Tensor | None) -> None:
        """One SGD step; runs marked False in ``active`` (``(K,)`` bool) keep their parameters."""

    def release(self) -> None:  # noqa: B027 (a no-op where each run's model stands on its own)
        """After training: leave every run's model standing on its own."""
