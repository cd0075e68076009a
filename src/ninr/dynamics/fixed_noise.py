"""NINs whose values are drawn once per training example and kept fixed for the whole run.

:class:`FixedExampleNoise` is a callback for :func:`ninr.train.train`: it draws a table
``eps[example]`` per node from its own seeded generator, follows the fit loop's batch order (the same
seeded-permutation recipe, on a generator of its own, so the run's stream is not consumed) and feeds
each training batch's rows to the nodes with ``given_noise`` through forward hooks. Every training
forward pass is checked against the batch it expected; a mismatch (a method that transforms or
reorders batches) raises instead of silently mixing up examples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ninr.data.base import Dataset
from ninr.errors import NinrError
from ninr.functional.noise import sample
from ninr.nn.attach import nin_nodes
from ninr.rng import make_generator
from ninr.train.callbacks import Callback, FitState
from ninr.train.config import TrainConfig


class FixedExampleNoise(Callback):
    """Replace each NIN's fresh draws by a per-example table fixed at the start of training.

    Args:
        data: the data set the run trains on (as given to :func:`ninr.train.train`).
        config: the run's config (seed, batch size, device: to follow the batch order).
        seed: seed of the noise table (default: the run's seed).
    """

    def __init__(self, data: Dataset, config: TrainConfig, *, seed: int | None = None) -> None:
        self.data = data
        self.config = config
        self.seed = config.seed if seed is None else seed
        self.tables: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []
        self._batches: Iterator[torch.Tensor] | None = None
        self._stack: contextlib.ExitStack | None = None

    def _batch_stream(self, device: torch.device) -> Iterator[torch.Tensor]:
        gen = make_generator(self.config.seed, "data-order", device=device)  # the fit loop's recipe
        n = len(self.data.x_train)
        while True:
            yield from torch.randperm(n, generator=gen, device=device).split(self.config.batch_size)

    def on_train_start(self, state: FitState) -> None:
        nodes = nin_nodes(state.model)
        if not nodes:
            raise NinrError("FixedExampleNoise needs a model with noise injection nodes")
        x = self.data.x_train.to(self.config.device)
        self._x = x
        for name, node in nodes.items():
            if node.per != "example":
                raise NinrError(f"FixedExampleNoise supports per-example noise only; layer {name!r} is per-pixel")
            gen = make_generator(self.seed, "fixed-noise", name)
            table = sample(node.distribution, (len(x),), scale=node.sigma, generator=gen, dtype=x.dtype)
            self.tables[name] = table.to(x.device)
        self._nodes = nodes
        self._batches = self._batch_stream(x.device)
        self._handles = [
            state.model.register_forward_pre_hook(self._before),
            state.model.register_forward_hook(self._after),
        ]

    def _before(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if not module.training or self._batches is None:
            return
        idx = next(self._batches)
        if not torch.equal(args[0], self._x[idx]):
            raise NinrError(
                "FixedExampleNoise lost track of the batch order (a method transforms or reorders batches); "
                "fixed per-example noise cannot be used with it"
            )
        stack = contextlib.ExitStack()
        for name, node in self._nodes.items():
            stack.enter_context(node.given_noise(self.tables[name][idx]))
        self._stack = stack

    def _after(self, module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def on_train_end(self, state: FitState) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        for h in self._handles:
            h.remove()
        self._handles = []

    def noise_power(self) -> dict[str, float]:
        """Mean square of each table: the ``sigma^2`` the NIWs actually see."""
        return {name: float(t.double().pow(2).mean()) for name, t in self.tables.items()}
