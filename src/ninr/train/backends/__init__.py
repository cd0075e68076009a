"""Backends of the training loop: :class:`SingleBackend` (any model) and :class:`StackedBackend` (K as one)."""

from ninr.train.backends.base import Backend
from ninr.train.backends.single import SingleBackend
from ninr.train.backends.stacked import StackedBackend, StackedRunOptimizer, StackedSGD
from ninr.train.backends.stacked_net import NotStackableError, StackedNet, why_not_stackable

__all__ = [
    "Backend",
    "NotStackableError",
    "SingleBackend",
    "StackedBackend",
    "StackedNet",
    "StackedRunOptimizer",
    "StackedSGD",
    "why_not_stackable",
]
