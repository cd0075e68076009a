"""Where a method puts its noise: hidden activations, named modules, parameters of dense/conv layers.

Works on any model: hidden activations are found by running one forward pass on the example
input and watching the order in which modules are called; an activation module is *hidden* when
a parameterized layer (``nn.Linear`` or a convolution) runs after it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
from torch import nn

from ninr.errors import ConfigError, did_you_mean, fail
from ninr.nn.trace import forward_trace

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
)
"""Module types counted as activations by :func:`hidden_activations`."""

LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Parameterized layers: an activation followed by one of these is hidden."""

Where = str | Sequence[str]


def as_where(name: str, value: object) -> Where:
    """A validated placement: a string, or a list of strings (as JSON gives it) turned into a tuple."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail(name, "a name or glob, or a non-empty list of them", value)


def call_order(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the modules of ``model`` in the order their forward pass is called (eval mode, no grad)."""
    return list(forward_trace(model, example_input))


def hidden_activations(model: nn.Module, example_input: torch.Tensor | None = None) -> list[str]:
    """Names of the activation modules after which a parameterized layer still runs, in call order.

    Without ``example_input`` the registration order of the modules stands in for the call order.
    """
    modules = dict(model.named_modules())
    order = call_order(model, example_input) if example_input is not None else [n for n in modules if n]
    last_layer = max((i for i, n in enumerate(order) if isinstance(modules[n], LAYERS)), default=-1)
    hidden: list[str] = []
    for n in order[:last_layer]:
        if isinstance(modules[n], ACTIVATIONS) and n not in hidden:
            hidden.append(n)
    return hidden


def select_modules(model: nn.Module, where: Where, example_input: torch.Tensor | None = None) -> list[str]:
    """``"hidden"`` (the hidden activations), or module names and globs (``"act*"``) of ``model``."""
    if where == "hidden":
        found = hidden_activations(model, example_input)
        if not found:
            raise fail("model", "a model with hidden activation modules (nn.ReLU, ...) for where='hidden'", "none")
        return found
    return _match("where", where, [n for n, _ in model.named_modules() if n], "modules")


def select_parameters(model: nn.Module, which: Where) -> dict[str, list[str]]:
    """Parameters of the Linear/Conv layers of ``model`` by layer name: ``{layer: [param names]}``.

    ``which``: ``"weights"`` (weight matrices and kernels), ``"all"`` (weights and biases), or a
    name or glob over full parameter names (``"fc1.weight"``, ``"*.bias"``). Noise injection weights
    are parameters of the node, not of the layer, so they are never selected.
    """
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LAYERS)}
    if not layers:
        raise fail("model", "a module containing nn.Linear or convolution layers", type(model).__name__)
    own = {
        f"{ln}.{pn}" if ln else pn: (ln, pn)
        for ln, m in layers.items()
        for pn, p in m._parameters.items()
        if p is not None
    }
    if which == "weights":
        names = [k for k, (_, pn) in own.items() if pn == "weight"]
    elif which == "all":
        names = list(own)
    else:
        names = _match("which", which, list(own), "parameters of Linear/Conv layers")
    out: dict[str, list[str]] = {}
    for full in names:
        layer, pname = own[full]
        out.setdefault(layer, []).append(pname)
    return out


def _match(arg: str, where: Where, names: list[str], what: str) -> list[str]:
    patterns = [where] if isinstance(where, str) else list(where)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise fail(arg, f"a name or glob of {what}, or a list of them", where)
    chosen: set[str] = set()
    for pattern in patterns:
        is_glob = any(c in pattern for c in "*?[")
        hits = fnmatch.filter(names, pattern) if is_glob else [n for n in names if n == pattern]
        if not hits:
            raise ConfigError(
                f"`{arg}` must name {what} of the model, got {pattern!r} which matches none"
                f"{did_you_mean(pattern, names)} (known: {', '.join(names)})"
            )
        chosen.update(hits)
    return [n for n in names if n in chosen]
