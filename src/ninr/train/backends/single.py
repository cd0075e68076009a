"""The one-model backend: any ``nn.Module``, stepped by ``torch.optim.SGD``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ninr.train.backends.base import Backend


class SingleBackend(Backend):
    """One run: its model as built, its batches ``(B, ...)``, PyTorch's SGD (dampening 0, no Nesterov)."""

    def __init__(self, model: nn.Module, *, lr: float, momentum: float) -> None:
        self.models = [model]
        self.optimizers = [torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)]

    def batches(self, perms: Sequence[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
        yield from perms[0].split(batch_size)

    def split(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(x, y)]

    def join(self, parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        return parts[0]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.models[0](x)
        return logits, F.cross_entropy(logits, y).reshape(1)

    def hits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (logits.detach().argmax(dim=1) == y).sum().reshape(1)

    def examples(self, y: torch.Tensor) -> int:
        return len(y)

    def zero_grad(self) -> None:
        self.optimizers[0].zero_grad(set_to_none=True)

    def step(self, active: torch.Tensor | None) -> None:
        self.optimizers[0].step()  # an inactive lone run has left the loop: nothing to mask
