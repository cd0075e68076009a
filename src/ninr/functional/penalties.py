"""Loss penalties as pure functions: the value, and the gradient added in place after backward.

A penalty given by its gradient (``add_*_grad_``) lets a stack of runs apply it run by run on gradient views
(:mod:`ninr.train.backends`), where an autograd term in the loss would not reach the stacked tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ninr.errors import check_nonneg


def l2_penalty(weights: Sequence[torch.Tensor], coefficient: float) -> torch.Tensor:
    """``coefficient * sum(w^2)`` over ``weights`` (a 0-d tensor; zero for no weights)."""
    check_nonneg("coefficient", coefficient)
    if not weights:
        return torch.zeros(())
    return coefficient * torch.stack([w.square().sum() for w in weights]).sum()


@torch.no_grad()
def add_l2_grad_(weights: Sequence[torch.Tensor], coefficient: float) -> None:
    """Add the gradient ``2 c w`` of :func:`l2_penalty` to each weight's ``.grad`` in place.

    The product is rounded, then the sum: the two roundings autograd makes when the penalty is part of the
    loss (its backward yields ``2 c w``, which is then added to the loss gradient), so the result is the
    same float. Weights without a gradient are skipped; ``coefficient == 0`` changes nothing.
    """
    check_nonneg("coefficient", coefficient)
    if coefficient == 0:
        return
    two_c = 2.0 * coefficient
    for w in weights:
        if w.grad is not None:
            w.grad.add_(w * two_c)
