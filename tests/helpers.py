"""Shared invariant harnesses: each checks one contract every noise component must keep.

A new component's test is then a few calls: no input mutation, eval mode is the identity of the
plain model, same generator gives the same output, state_dict round-trip, gradients reach the
noise weights.
"""

from __future__ import annotations

import copy
import io
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn


def small_mlp(in_features: int = 12, hidden: int = 8, out: int = 3) -> nn.Sequential:
    """A tiny MLP with named layers (deterministic init under a fixed seed)."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(in_features, hidden),
            act1=nn.ReLU(),
            fc2=nn.Linear(hidden, hidden),
            act2=nn.ReLU(),
            out=nn.Linear(hidden, out),
        )
    )


def small_cnn(channels: int = 2, size: int = 8, out: int = 3) -> nn.Sequential:
    """A tiny CNN: two convs (one with reflect padding), a linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(channels, 4, 3, padding=1),
            act1=nn.ReLU(),
            conv2=nn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="reflect"),
            act2=nn.ReLU(),
            flatten=nn.Flatten(),
            out=nn.Linear(4 * (size // 2) ** 2, out),
        )
    )


class NestedNet(nn.Module):
    """A user-written module: nested submodules, layers registered out of call order."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(16, 3)  # registered first, called last
        self.features = nn.ModuleDict({"conv": nn.Conv2d(1, 4, 3, padding=1), "pool": nn.AdaptiveAvgPool2d(2)})
        self.body = nn.Sequential(nn.Linear(16, 16), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features["pool"](torch.relu(self.features["conv"](x))).flatten(1)
        return self.head(self.body(h))


def assert_no_input_mutation(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> None:
    """``fn(x)`` leaves ``x`` unchanged."""
    before = x.clone()
    fn(x)
    assert torch.equal(x, before), "the input tensor was modified"


def assert_eval_is_plain(model: nn.Module, plain: nn.Module, x: torch.Tensor) -> None:
    """In eval mode the noisy ``model`` computes exactly what ``plain`` computes."""
    model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(model(x), plain(x)), "eval-mode output differs from the plain model"


def assert_replayable(make_output: Callable[[], torch.Tensor], reset: Callable[[], None]) -> None:
    """After ``reset()`` the same generator state gives the same output; without it, a new draw."""
    reset()
    first = make_output()
    second = make_output()
    reset()
    replay = make_output()
    assert torch.equal(first, replay), "same generator state gave a different output"
    assert not torch.equal(first, second), "two draws from one stream were identical"


def assert_state_dict_roundtrip(model: nn.Module, fresh: nn.Module, x: torch.Tensor) -> None:
    """Saving ``model``'s state_dict and loading it into ``fresh`` gives the same eval outputs."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert_eval_is_plain(fresh, model, x)


def assert_grads_reach(params: dict[str, nn.Parameter], *, zero: bool = False) -> None:
    """Every parameter got a gradient, all nonzero (or, with ``zero``, exactly zero)."""
    for name, p in params.items():
        assert p.grad is not None, f"{name}: no gradient"
        if zero:
            assert torch.count_nonzero(p.grad) == 0, f"{name}: gradient not exactly zero"
        else:
            assert torch.count_nonzero(p.grad) > 0, f"{name}: gradient is zero"


def clone(model: nn.Module) -> nn.Module:
    """A deep copy (same parameter values, independent storage)."""
    return copy.deepcopy(model)
