"""K models of one architecture as one stacked computation, with each run's parameters and noise kept apart.

:class:`StackedNet` reads K built models (``nn.Sequential`` of Standardize, Flatten, Linear/NINLinear,
Conv2d/NINConv2d, activations, pooling), stacks their parameters into ``(K, ...)`` leaf tensors and
rebinds each model's parameters as views of its slice: an SGD update of the stack is an update of every
model, so evaluation, NIW norms and checkpoints read the models themselves. After a backward pass,
:meth:`StackedNet.expose_grads` makes each model parameter's ``.grad`` the view of its slice of the stacked
gradient, so a method's gradient hook edits one run's gradient in place. Each noise node still draws
from its own generator, once per forward pass, with the shape it draws when its model runs alone; so
do the dropout, activation-noise and weight-noise modules that methods hang on a layer by forward hooks
(:mod:`~ninr.train.backends.stacked_noise`): the stack recognises those hooks and applies each run's module to
its own slice, and calls its layers without hooks.

Anything outside that vocabulary (other hooks, other noise modules, grouped or non-zero-padded convolutions,
models that differ in shape) raises :class:`NotStackableError` naming the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

import ninr.train.backends.stacked_ops as ops
from ninr.errors import NinrError
from ninr.models.layers import Standardize
from ninr.nn.modes import NoiseModule
from ninr.nn.nin import NINConv2d, NINLinear, NoiseInjectionNode
from ninr.nn.noise_layers import OutputNoise, WeightNoise
from ninr.perf import channels_last
from ninr.train.backends.stacked_noise import (
    OUTPUT_NOISE,
    WEIGHT_NOISE_PARAMS,
    output_factors,
    stack_draws,
    weight_draws,
)

POINTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
)
"""Element-wise modules: they apply unchanged to either stacked layout."""

POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool2d, nn.AvgPool2d)
"""Channel-wise modules: they apply unchanged to the conv layout (B, K*C, H, W)."""


class NotStackableError(NinrError):
    """These models cannot be trained as one stacked computation (the message says why)."""


@dataclass
class _Binding:
    """A stacked leaf and the runs' parameters bound to its slices (``shape`` per run; ``transpose``: of W^T)."""

    stacked: torch.Tensor
    shape: tuple[int, ...]
    transpose: bool
    params: list[torch.Tensor | None]


@dataclass
class _Nin:
    nodes: list[NoiseInjectionNode | None]
    mode: str  # "dense", "channel" or "additive"
    per: str
    niw: torch.Tensor


@dataclass
class _Layer:
    kind: str  # "standardize", "flatten", "linear", "conv", "pointwise", "pool"
    module: nn.Module
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    nin: _Nin | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    mods: list[nn.Module] | None = None  # each run's module
    after: list[list[OutputNoise | None]] | None = None  # output noise: rounds[r][k], in hook order
    weight_noise: list[WeightNoise | None] | None = None


class StackedNet:
    """K same-shaped models trained as one; ``forward`` maps ``(K, B, C, H, W)`` to logits ``(K, B, classes)``."""

    def __init__(self, models: Sequence[nn.Module], *, use_channels_last: bool = False) -> None:
        if len(models) < 1:
            raise NotStackableError("no models to stack")
        self.models = list(models)
        self.k = len(models)
        self.use_channels_last = use_channels_last
        self._bindings: list[_Binding] = []
        self._exposed = False
        per_model = [_children(m, f"run {i}") for i, m in enumerate(models)]
        self.layers = [self._stack_layer([row[j] for row in per_model], j) for j in range(len(per_model[0]))]
        if any(len(row) != len(per_model[0]) for row in per_model):
            raise NotStackableError("the models have different numbers of layers")

    def parameters(self) -> list[torch.Tensor]:
        """The stacked leaf tensors SGD updates (weights, biases, NIWs)."""
        out: list[torch.Tensor] = []
        for layer in self.layers:
            out += [t for t in (layer.weight, layer.bias) if t is not None]
            if layer.nin is not None:
                out.append(layer.nin.niw)
        return out

    def layer_weights(self) -> list[torch.Tensor]:
        """Each Linear/Conv layer's stacked weight (leaf tensors of :meth:`parameters`): what ``l2`` covers."""
        return [layer.weight for layer in self.layers if layer.weight is not None]

    def train(self, mode: bool = True) -> None:
        """Put every run's model (hence its noise nodes) in training or evaluation mode."""
        for m in self.models:
            m.train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = "input"  # (K, B, C, H, W); then "dense" (K, B, F) or "conv" (B, K*C, H, W)
        for layer in self.layers:
            if layer.kind == "standardize":
                assert layer.mean is not None and layer.std is not None
                x = (x - layer.mean) / layer.std
            elif layer.kind == "flatten":
                x = ops.conv_to_dense(x, self.k) if layout == "conv" else x.flatten(2)
                layout = "dense"
            elif layer.kind == "linear":
                x = self._linear(layer, x)
            elif layer.kind == "pointwise":
                x = layer.module.forward(x)  # not __call__: its hooks are run 0's noise, applied per run below
            else:  # conv or pool: conv layout
                if layout == "input":
                    x = channels_last(ops.to_conv_layout(x), self.use_channels_last)
                    layout = "conv"
                x = self._conv(layer, x) if layer.kind == "conv" else layer.module.forward(x)
            if layer.after is not None:
                x = self._output_noise(layer.after, x, layout)
        return x

    __call__ = forward

    def expose_grads(self) -> None:
        """Make each run's parameters' ``.grad`` views of their slices of the stacked leaves' gradients."""
        self._exposed = True
        for b in self._bindings:
            grad = b.stacked.grad
            if grad is None:
                continue
            slices = grad.view(self.k, *b.shape)
            for k, p in enumerate(b.params):
                if p is not None:
                    p.grad = slices[k].t() if b.transpose else slices[k]

    def clear_run_grads(self) -> None:
        """Drop the gradient views :meth:`expose_grads` gave the runs' parameters."""
        if not self._exposed:
            return
        self._exposed = False
        for b in self._bindings:
            for p in b.params:
                if p is not None:
                    p.grad = None

    def release(self) -> None:
        """Give every model parameters of its own (contiguous copies of its slice), so the stack can be freed."""
        for m in self.models:
            for p in m.parameters():
                p.data = p.data.clone(memory_format=torch.contiguous_format)

    # -- layers -------------------------------------------------------------------------------------------

    def _linear(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._params(layer)
        eps = self._draw(layer.nin, (x.shape[1],), x) if layer.nin is not None else None
        niw = layer.nin.niw if layer.nin is not None else None
        return ops.stacked_linear(x, weight, bias, niw, eps)

    def _conv(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        conv = layer.module
        assert isinstance(conv, nn.Conv2d)
        weight, bias = self._params(layer)
        geometry = (conv.stride, conv.padding, conv.dilation)
        nin = layer.nin
        if nin is None:
            return ops.stacked_conv2d(x, weight, bias, self.k, *geometry)
        b, _, h, w = x.shape
        eps = self._draw(nin, (b,) if nin.per == "example" else (b, 1, h, w), x)
        if eps is None:
            return ops.stacked_conv2d(x, weight, bias, self.k, *geometry)
        if nin.mode == "additive" and nin.per != "example":
            x = ops.stacked_nin_additive(x, nin.niw, eps, self.k)
            return ops.stacked_conv2d(x, weight, bias, self.k, *geometry)
        out = ops.stacked_conv2d(x, weight, bias, self.k, *geometry)
        if nin.mode == "additive":  # per-example: conv(x) + eps conv(niw), as NINConv2d does
            return ops.stacked_nin_additive_conv(out, nin.niw, eps, self.k, weight, *geometry)
        return ops.stacked_nin_channel(out, nin.niw, eps, self.k, (h, w), *geometry)

    def _params(self, layer: _Layer) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layer's stacked weight and bias, plus each run's weight-noise draw where it has one."""
        weight, bias = layer.weight, layer.bias
        assert weight is not None
        if layer.weight_noise is None or layer.mods is None:
            return weight, bias
        draws = weight_draws(layer.weight_noise, layer.mods)
        dense = layer.kind == "linear"
        if "weight" in draws:
            weight = weight + stack_draws(draws["weight"], weight, transpose=dense, flat=not dense)
        if "bias" in draws and bias is not None:
            bias = bias + stack_draws(draws["bias"], bias, transpose=False, flat=not dense)
        return weight, bias

    def _output_noise(self, rounds: list[list[OutputNoise | None]], x: torch.Tensor, layout: str) -> torch.Tensor:
        """Each run's dropout / activation noise on its slice of ``x``, module after module as its hooks run."""
        k = self.k
        shape = (x.shape[0], x.shape[1] // k, *x.shape[2:]) if layout == "conv" else x.shape[1:]
        for modules in rounds:
            mult, add = output_factors(modules, shape, x)
            if layout == "conv":  # (K, B, C, H, W) -> (B, K*C, H, W), as x
                mult, add = (
                    None if f is None else channels_last(ops.to_conv_layout(f), self.use_channels_last)
                    for f in (mult, add)
                )
            if mult is not None:
                x = x * mult
            if add is not None:
                x = x + add
        return x

    @staticmethod
    def _draw(nin: _Nin, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
        """Each run's draw from its own node, stacked: (K, B) dense, (B, K) or (B, K, H, W) conv."""
        draws = [node.draw(shape, like) if node is not None else None for node in nin.nodes]
        if all(d is None for d in draws):
            return None
        zeros = torch.zeros(shape, dtype=like.dtype, device=like.device)
        filled = [zeros if d is None else d for d in draws]
        if nin.mode == "dense":
            return torch.stack(filled)
        return torch.stack(filled, dim=1) if nin.per == "example" else torch.cat(filled, dim=1)

    # -- building -----------------------------------------------------------------------------------------

    def _stack_layer(self, mods: list[nn.Module], j: int) -> _Layer:
        first = mods[0]
        kind = _kind(first)
        for m in mods[1:]:
            if _kind(m) != kind or _plain(type(m)) is not _plain(type(first)) or _geometry(m) != _geometry(first):
                raise NotStackableError(f"layer {j} differs between runs ({first!r} vs {m!r})")
        layer = _Layer(kind, first, mods=list(mods))
        noise = [_hooked_noise(m, f"run {i}", f"layer {j}") for i, m in enumerate(mods)]
        depth = max(len(after) for after, _ in noise)
        if depth:
            layer.after = [[after[r] if r < len(after) else None for after, _ in noise] for r in range(depth)]
        if any(wn is not None for _, wn in noise):
            layer.weight_noise = [wn for _, wn in noise]
        if kind == "standardize":
            layer.mean = torch.stack([m.mean for m in mods])  # type: ignore[misc]
            layer.std = torch.stack([m.std for m in mods])  # type: ignore[misc]
        elif kind in ("linear", "conv"):
            layer.weight = self._bind([m.weight for m in mods], kind, transpose=kind == "linear")  # type: ignore[misc]
            if first.bias is not None:
                layer.bias = self._bind([m.bias for m in mods], kind)  # type: ignore[misc]
            layer.nin = self._stack_nin(mods, j)
        return layer

    def _bind(
        self,
        params: Sequence[torch.Tensor | None],
        kind: str,
        shape: tuple[int, ...] | None = None,
        *,
        transpose: bool = False,
    ) -> torch.Tensor:
        """Stack ``params`` into one leaf tensor and make each a view of its slice (``transpose``: of W^T)."""
        like = next(p for p in params if p is not None)
        shape = tuple(like.shape) if shape is None else shape
        rows = [torch.zeros(shape, dtype=like.dtype, device=like.device) if p is None else p.detach() for p in params]
        if transpose:
            rows = [r.t() for r in rows]
            shape = shape[::-1]
        stacked = torch.stack(rows)
        if kind == "conv" and stacked.dim() > 2:  # (K*out, ...) for grouped convolution
            stacked = stacked.flatten(0, 1)
        elif kind == "conv":
            stacked = stacked.flatten()
        stacked = stacked.contiguous().requires_grad_(True)
        slices = stacked.detach().view(self.k, *shape)
        for k, p in enumerate(params):
            if p is not None:
                p.data = slices[k].t() if transpose else slices[k]
        self._bindings.append(_Binding(stacked, shape, transpose, list(params)))
        return stacked

    def _stack_nin(self, mods: list[nn.Module], j: int) -> _Nin | None:
        nodes: list[NoiseInjectionNode | None] = [getattr(m, "nin", None) for m in mods]
        present = [(m, n) for m, n in zip(mods, nodes, strict=True) if n is not None]
        if not present:
            return None
        modes = {getattr(m, "nin_mode", "dense") for m, _ in present}
        pers = {n.per if isinstance(m, NINConv2d) else "example" for m, n in present}
        shapes = {tuple(n.weight.shape) for _, n in present}
        if len(modes) > 1 or len(pers) > 1 or len(shapes) > 1:
            raise NotStackableError(f"layer {j}: the runs' noise nodes differ in mode, per or NIW shape")
        mode = modes.pop()
        niw_params: list[torch.Tensor | None] = [n.weight if n is not None else None for n in nodes]
        kind = "conv" if mode == "channel" else "stack"
        niw = self._bind(niw_params, kind, shapes.pop())
        return _Nin(nodes, mode, pers.pop(), niw)


def _plain(cls: type[nn.Module]) -> type[nn.Module]:
    return {NINLinear: nn.Linear, NINConv2d: nn.Conv2d}.get(cls, cls)


def _kind(m: nn.Module) -> str:
    cls = _plain(type(m))
    if cls is Standardize:
        return "standardize"
    if cls is nn.Flatten:
        return "flatten"
    if cls is nn.Linear:
        return "linear"
    if cls is nn.Conv2d:
        return "conv"
    if cls in POINTWISE:
        return "pointwise"
    if cls in POOLS:
        return "pool"
    raise NotStackableError(f"module {type(m).__name__} has no stacked form")


def _geometry(m: nn.Module) -> tuple[object, ...]:
    """What must agree between runs for one stacked op to serve them all."""
    if isinstance(m, nn.Linear):
        return (tuple(m.weight.shape), m.bias is None)
    if isinstance(m, nn.Conv2d):
        return (tuple(m.weight.shape), m.bias is None, m.stride, m.padding, m.dilation)
    if isinstance(m, Standardize):
        return (tuple(m.mean.shape),)
    return (m.extra_repr(),)


def why_not_stackable(model: nn.Module) -> str | None:
    """Why ``model`` has no stacked form (the reason :class:`StackedNet` would give), or ``None`` if it has one."""
    try:
        _children(model, "the model")
    except NotStackableError as exc:
        return str(exc)
    return None


def _children(model: nn.Module, where: str) -> list[nn.Module]:
    """The layers of a stackable model, after checking it is one (``where`` names it in errors: "run 2")."""
    if type(model) is not nn.Sequential:
        raise NotStackableError(f"{where}: the model is a {type(model).__name__}, not an nn.Sequential")
    layers = list(model.children())
    hooked: set[int] = set()  # the layers whose hooks (all checked by _hooked_noise) the stack applies itself
    noise: set[int] = set()  # the noise modules those hooks apply
    for j, m in enumerate(layers):
        after, wn = _hooked_noise(m, where, f"layer {j}")
        applied = [n for n in (*after, wn) if n is not None]
        noise.update(id(n) for n in applied)
        if applied:
            hooked.add(id(m))
    for name, m in model.named_modules():
        if (m._forward_hooks or m._forward_pre_hooks) and id(m) not in hooked:
            raise NotStackableError(
                f"{where}: module {name!r} has forward hooks other than ninr's dropout, activation and weight noise"
            )
        if isinstance(m, NoiseModule) and not isinstance(m, NoiseInjectionNode) and id(m) not in noise:
            raise NotStackableError(f"{where}: module {name!r} is a {type(m).__name__} noise module")
    for m in layers:
        kind = _kind(m)
        if isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1):
            raise NotStackableError(f"{where}: Flatten must flatten from dim 1")
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros"):
            raise NotStackableError(f"{where}: only zero-padded, ungrouped convolutions stack")
        if kind in ("pointwise", "pool") and any(id(c) not in noise for c in m.children()):
            raise NotStackableError(f"{where}: {type(m).__name__} carries submodules")
    return layers


def _hooked_noise(m: nn.Module, where: str, layer: str) -> tuple[list[OutputNoise], WeightNoise | None]:
    """The noise modules ninr's methods hang on layer ``m`` by hooks, which the stack applies itself.

    Returns the dropout / activation-noise children applied to ``m``'s output (in hook order) and the
    weight-noise child that perturbs its parameters. Any other hook on ``m`` raises :class:`NotStackableError`.
    """
    after: list[OutputNoise] = []
    shadows: list[nn.Module] = []
    for hook in m._forward_hooks.values():
        out = _hook_owner(m, hook, OUTPUT_NOISE, "_after_host")
        shadow = _hook_owner(m, hook, (WeightNoise,), "_unshadow")
        if isinstance(out, OutputNoise):
            after.append(out)
        elif shadow is not None:
            shadows.append(shadow)
        else:
            raise NotStackableError(
                f"{where}: {layer} ({type(m).__name__}) has forward hooks other than ninr's dropout and noise"
            )
    for hook in m._forward_pre_hooks.values():
        shadow = _hook_owner(m, hook, (WeightNoise,), "_shadow")
        if shadow is None:
            raise NotStackableError(
                f"{where}: {layer} ({type(m).__name__}) has forward pre-hooks other than ninr's weight noise"
            )
        shadows.append(shadow)
    owners = {id(s): s for s in shadows}
    if len(owners) > 1:
        raise NotStackableError(f"{where}: {layer} carries more than one weight-noise module")
    wn = next(iter(owners.values()), None)
    if wn is None:
        return after, None
    assert isinstance(wn, WeightNoise)
    if shadows.count(wn) != 2 or not set(wn.names) <= set(WEIGHT_NOISE_PARAMS) or _kind(m) not in ("linear", "conv"):
        raise NotStackableError(f"{where}: {layer}: weight noise on {list(wn.names)} of a {type(m).__name__}")
    return after, wn


def _hook_owner(m: nn.Module, hook: object, classes: tuple[type[nn.Module], ...], method: str) -> nn.Module | None:
    """The child of ``m`` (of exactly one of ``classes``) whose bound method ``method`` ``hook`` is, else None."""
    own = getattr(hook, "__self__", None)
    if type(own) not in classes or not any(c is own for c in m.children()):
        return None
    return own if getattr(hook, "__func__", None) is getattr(type(own), method) else None
