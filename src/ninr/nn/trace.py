"""One traced forward pass: which modules run, in what order, on inputs of what shape."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def forward_trace(
    model: nn.Module, example_input: torch.Tensor, names: Iterable[str] | None = None
) -> dict[str, tuple[int, ...]]:
    """Run ``model(example_input)`` once in eval mode without gradients; return, in call order, each module's
    name and the shape of its first input without the batch dimension (``()`` when that is not a tensor).

    Args:
        model: any module; its training mode is restored afterwards.
        example_input: one batch.
        names: trace only these modules (``""`` is the root; default: every submodule but the root).
    """
    wanted = set(names) if names is not None else None
    seen: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if (name not in wanted) if wanted is not None else not name:
            continue

        def hook(_m: nn.Module, args: tuple[object, ...], name: str = name) -> None:
            first = args[0] if args else None
            seen.setdefault(name, tuple(first.shape[1:]) if isinstance(first, torch.Tensor) else ())

        handles.append(module.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen
