"""Shared invariant harnesses: each checks one contract every noise component must keep.

A new component's test is then a few calls: no input mutation, eval mode is the identity of the
plain model, same generator gives the same output, the global RNG is left alone, state_dict
round-trip, gradients reach the noise weights, a model's modes and parameters survive a call,
sample moments within a stated number of standard errors. tests/test_registries.py applies them
to every registered component.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator

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


def garment_images(n: int = 16, seed: int = 0) -> torch.Tensor:
    """``n`` garment-like 28x28 images (n, 1, 28, 28) in [0, 1]: a textured ellipse with a hard edge on black."""
    g = torch.Generator().manual_seed(seed)
    size = 28
    rows = torch.arange(size).view(1, size, 1).float()
    cols = torch.arange(size).view(1, 1, size).float()
    cy, cx = 10 + 8 * torch.rand(n, 1, 1, generator=g), 10 + 8 * torch.rand(n, 1, 1, generator=g)
    ry, rx = 5 + 6 * torch.rand(n, 1, 1, generator=g), 4 + 6 * torch.rand(n, 1, 1, generator=g)
    inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    level = 0.4 + 0.5 * torch.rand(n, 1, 1, generator=g)
    texture = 0.25 * torch.rand(n, size, size, generator=g)
    return (inside * (level + texture)).clamp(0, 1).unsqueeze(1)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside the block torch's global generator starts from ``seed``; its state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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


def assert_reproducible(make_output: Callable[[], torch.Tensor]) -> None:
    """Two calls of ``make_output`` (each building its generator from the same seed) give the same output."""
    assert torch.equal(make_output(), make_output()), "the same seed gave a different output"


def assert_global_rng_untouched(fn: Callable[[], object]) -> None:
    """``fn()`` leaves torch's global CPU generator where it was (it draws from its own streams only)."""
    before = torch.get_rng_state()
    fn()
    assert torch.equal(torch.get_rng_state(), before), "the global torch generator was used"


def assert_moments(x: torch.Tensor, *, mean: float, std: float, z: float = 5.0) -> None:
    """The sample mean and standard deviation of ``x`` (flattened) match ``mean`` and ``std`` within ``z`` SEs.

    Standard errors of N draws: ``std / sqrt(N)`` for the mean; ``std sqrt((kurtosis - 1) / (4 N))`` for the
    sample standard deviation (delta method on the variance, whose variance is ``std^4 (kurtosis - 1) / N``),
    with the kurtosis estimated from the sample itself, so the check needs no knowledge of the law. At
    ``z = 5`` a correct sampler fails a check with probability below 1e-6.
    """
    x = x.detach().flatten().double()
    n = x.numel()
    centred = x - x.mean()
    kurtosis = float(centred.pow(4).mean() / centred.square().mean().square())
    mean_se = std / math.sqrt(n)
    std_se = std * math.sqrt(max(kurtosis - 1.0, 0.0) / (4 * n))
    assert abs(float(x.mean()) - mean) < z * mean_se, (
        f"mean {float(x.mean()):.6g}, expected {mean} +- {z} x {mean_se:.3g}"
    )
    assert abs(float(x.std()) - std) < z * std_se, f"std {float(x.std()):.6g}, expected {std} +- {z} x {std_se:.3g}"


def module_modes(model: nn.Module) -> list[bool]:
    """Every submodule's ``training`` flag, in ``model.modules()`` order."""
    return [m.training for m in model.modules()]


def assert_model_left_alone(model: nn.Module, fn: Callable[[], object]) -> None:
    """``fn()`` leaves every submodule's mode, every parameter value and every ``.grad`` as it found them."""
    modes = module_modes(model)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    fn()
    assert module_modes(model) == modes, "a submodule's train/eval mode changed"
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]), f"{n}: the parameter changed"
        grad = grads[n]
        assert (p.grad is None and grad is None) or (
            p.grad is not None and grad is not None and torch.equal(p.grad, grad)
        ), f"{n}: the parameter's gradient changed"


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
