"""Attach noise injection nodes to any model, and take them off again.

``attach_nins(model, where="input")`` is in-NINR (one node, on the first layer),
``where="all"`` is full-NINR (a node on every ``nn.Linear`` / ``nn.Conv2d``); a list of module
names or a glob picks layers by name. Attach before building the optimizer: the NIWs are new
parameters.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from ninr.errors import ConfigError, check_choice, check_finite, did_you_mean, fail
from ninr.nn.nin import (
    CONV_MODES,
    DEFAULT_CONV_MODE,
    ConvMode,
    NINConv2d,
    NINLinear,
    NoiseInjectionNode,
    NoisePer,
    layer_niw_bound,
    niw_shape_for,
)
from ninr.nn.trace import forward_trace
from ninr.rng import derive_seed, make_generator

NIW_INITS = ("layer", "zeros")
_NIN_CLASSES: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: NINLinear, nn.Conv2d: NINConv2d}
_PLAIN_CLASSES = {v: k for k, v in _NIN_CLASSES.items()}


@dataclass(frozen=True)
class AttachedNode:
    """One node that :func:`attach_nins` attached."""

    layer: str
    kind: str  # "linear" or "conv2d"
    mode: str  # "dense", "channel" or "additive"
    niw_shape: tuple[int, ...]
    sigma: float

    @property
    def num_niws(self) -> int:
        return math.prod(self.niw_shape)


@dataclass(frozen=True)
class AttachReport:
    """What :func:`attach_nins` did, one entry per node, in model order."""

    nodes: tuple[AttachedNode, ...]

    @property
    def layers(self) -> list[str]:
        return [n.layer for n in self.nodes]

    def __str__(self) -> str:
        rows = [f"attached {len(self.nodes)} noise injection node(s):"]
        for n in self.nodes:
            rows.append(f"  {n.layer or '<root>'}: {n.kind} ({n.mode}), NIW {n.niw_shape}, sigma={n.sigma:g}")
        return "\n".join(rows)


def attach_nins(
    model: nn.Module,
    where: str | Sequence[str] = "input",
    *,
    sigma: float = 1.0,
    distribution: str = "gaussian",
    per: NoisePer = "example",
    conv_mode: ConvMode = DEFAULT_CONV_MODE,
    niw_init: str | float = "layer",
    seed: int | None = None,
    example_input: torch.Tensor | None = None,
) -> AttachReport:
    """Add noise injection nodes to the ``nn.Linear`` / ``nn.Conv2d`` layers of ``model`` in place.

    Args:
        model: any module containing ``nn.Linear`` or ``nn.Conv2d`` layers.
        where: ``"input"`` (in-NINR: the first layer), ``"all"`` (full-NINR), a module name, a glob
            (``"features.*"``) or a list of names and globs.
        sigma: noise standard deviation.
        distribution: noise distribution name (``ninr list`` shows them).
        per: ``"example"`` (one draw per example) or ``"pixel"`` (i.i.d. per pixel; conv layers only,
            dense layers always draw per example).
        conv_mode: ``"additive"`` (default: the node connected pixel-wise to the feature map fed into the
            convolution, ``x + W_NI[c, h, w] eps``; needs ``example_input``) or ``"channel"`` (a noise map as an
            extra input channel whose kernel slice is the NIW).
        niw_init: ``"layer"`` (uniform, scaled so that one sigma means one noise-to-signal ratio after the layer:
            U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the layer's own weight scale, for a dense or channel-mode node;
            U(-sqrt(3/n), sqrt(3/n)) over the ``n = C H W`` pixels of an additive conv node; derivation in
            :func:`ninr.nn.nin.layer_niw_bound`), ``"zeros"``, or a number: Gaussian with that standard deviation.
        seed: derives each node's noise stream and NIW initialisation from ``(seed, layer name)``;
            ``None`` uses torch's global generator.
        example_input: a batch for one forward pass that orders layers by execution (for ``"input"``)
            and gives feature-map shapes (required for conv layers in ``conv_mode="additive"``).

    Returns:
        An :class:`AttachReport` listing each node.

    Example:
        >>> model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        >>> attach_nins(model, "input", sigma=0.5, seed=0).layers
        ['0']
    """
    check_choice("conv_mode", conv_mode, CONV_MODES)
    _check_niw_init(niw_init)
    candidates = _candidates(model)
    names = [n for n, _ in candidates]
    shapes = forward_trace(model, example_input, names) if example_input is not None else {}
    if shapes:
        candidates = sorted(candidates, key=lambda nm: list(shapes).index(nm[0]) if nm[0] in shapes else len(shapes))
    targets = _select(candidates, where)
    nodes = []
    for name, layer in targets:
        nodes.append(_attach_one(name, layer, shapes.get(name), sigma, distribution, per, conv_mode, niw_init, seed))
    return AttachReport(tuple(nodes))


def detach_nins(model: nn.Module) -> list[str]:
    """Remove every noise injection node from ``model`` in place; returns the layers it touched.

    The layers become plain ``nn.Linear`` / ``nn.Conv2d`` again with the same parameter objects,
    so outputs are identical to the model before :func:`attach_nins`.
    """
    touched = []
    for name, module in model.named_modules():
        plain = _PLAIN_CLASSES.get(type(module))
        if plain is None:
            continue
        del module._modules["nin"]
        module.__dict__.pop("nin_mode", None)
        module.__class__ = plain
        touched.append(name)
    return touched


def nin_nodes(model: nn.Module) -> dict[str, NoiseInjectionNode]:
    """Every noise injection node in ``model`` by the name of the layer it feeds."""
    return {name: m.nin for name, m in model.named_modules() if isinstance(m, NINLinear | NINConv2d)}


def niws(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every NIW tensor in ``model`` by layer name (for logging, probes and optimizer groups)."""
    return {name: node.weight for name, node in nin_nodes(model).items()}


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    modules = model.named_modules()
    found: list[tuple[str, nn.Module]] = [(n, m) for n, m in modules if isinstance(m, nn.Linear | nn.Conv2d)]
    if not found:
        raise fail("model", "a module containing nn.Linear or nn.Conv2d layers", type(model).__name__)
    return found


def _select(candidates: list[tuple[str, nn.Module]], where: str | Sequence[str]) -> list[tuple[str, nn.Module]]:
    if where == "input":
        return candidates[:1]
    if where == "all":
        return candidates
    patterns = [where] if isinstance(where, str) else list(where)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise fail("where", "'input', 'all', a module name, a glob or a list of them", where)
    names = [n for n, _ in candidates]
    chosen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(names, pattern) if any(c in pattern for c in "*?[") else names.count(pattern) * [pattern]
        if not hits:
            raise ConfigError(
                f"`where` must name nn.Linear/nn.Conv2d layers of the model, got {pattern!r} which matches none"
                f"{did_you_mean(pattern, names)} (layers: {', '.join(names)})"
            )
        chosen.update(hits)
    return [(n, m) for n, m in candidates if n in chosen]


def _check_niw_init(niw_init: str | float) -> None:
    if isinstance(niw_init, str):
        check_choice("niw_init", niw_init, NIW_INITS)
    elif check_finite("niw_init", niw_init) < 0:
        raise fail("niw_init", "'layer', 'zeros' or a standard deviation >= 0", niw_init)


def _attach_one(
    name: str,
    layer: nn.Module,
    in_shape: tuple[int, ...] | None,
    sigma: float,
    distribution: str,
    per: NoisePer,
    conv_mode: ConvMode,
    niw_init: str | float,
    seed: int | None,
) -> AttachedNode:
    nin_cls = _NIN_CLASSES.get(type(layer))
    if nin_cls is None:
        if type(layer) in _PLAIN_CLASSES:
            raise ConfigError(f"layer {name!r} already has a noise injection node; call detach_nins first")
        raise ConfigError(
            f"layer {name!r} is a {type(layer).__name__}; attach_nins supports exactly nn.Linear and nn.Conv2d "
            "(a subclass may override forward)"
        )
    shape = niw_shape_for(layer, conv_mode, in_shape)
    node_seed = None if seed is None else derive_seed(seed, "nin", name)
    node = NoiseInjectionNode(shape, sigma=sigma, distribution=distribution, per=per, seed=node_seed)
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    node.to(device=weight.device, dtype=weight.dtype)
    node.train(layer.training)
    is_conv = isinstance(layer, nn.Conv2d)
    mode = conv_mode if is_conv else "dense"
    _init_niw(node.weight, niw_init, layer_niw_bound(layer, mode, shape), seed, name)
    layer.__class__ = nin_cls
    layer.add_module("nin", node)
    if is_conv:
        cast(NINConv2d, layer).nin_mode = conv_mode
    return AttachedNode(name, "conv2d" if is_conv else "linear", mode, shape, node.sigma)


def _init_niw(niw: nn.Parameter, niw_init: str | float, bound: float, seed: int | None, name: str) -> None:
    gen = None if seed is None else make_generator(seed, "niw-init", name)
    with torch.no_grad():
        if niw_init == "zeros":
            niw.zero_()
            return
        if niw_init == "layer":
            values = torch.rand(niw.shape, generator=gen).mul_(2 * bound).sub_(bound)
        else:
            values = torch.randn(niw.shape, generator=gen).mul_(float(niw_init))
        niw.copy_(values)
