"""Frozen noise for probes: draw NIN noise from a probe's own generator and replay it.

A probe must never consume a run's random streams. :func:`probe_noise` finds the noise shape each
node would draw on a batch (with a noise-off pass and forward pre-hooks) and samples it from the
probe's generator; :func:`replaying` then runs the model in eval mode with exactly that noise in the
NIN nodes and every other noise module forced off, restoring everything afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from ninr.errors import ConfigError
from ninr.functional.noise import sample
from ninr.nn.attach import nin_nodes
from ninr.nn.modes import noise_modules
from ninr.nn.nin import NINConv2d, NoiseInjectionNode

NoiseMap = Mapping[str, torch.Tensor]
"""Noise per NIN node, keyed by the name of the layer the node feeds."""


@torch.no_grad()
def noise_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The shape of the noise each NIN node of ``model`` draws on batch ``x``."""
    names = set(nin_nodes(model))
    layers = {name: m for name, m in model.named_modules() if name in names}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, layer in layers.items():

        def hook(m: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
            inp = args[0]
            if isinstance(m, NINConv2d):
                per_pixel = m.nin.per == "pixel"
                shapes[name] = (inp.shape[0], 1, *inp.shape[-2:]) if per_pixel else (inp.shape[0],)
            else:
                shapes[name] = tuple(inp.shape[:-1])

        handles.append(layer.register_forward_pre_hook(hook))
    try:
        with replaying(model, None):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def probe_noise(model: nn.Module, x: torch.Tensor, *, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Noise for every NIN node of ``model`` on batch ``x``, drawn from ``generator`` (each node's sigma)."""
    nodes = nin_nodes(model)
    out = {}
    for name, shape in noise_shapes(model, x).items():
        node = nodes[name]
        out[name] = sample(
            node.distribution, shape, scale=node.sigma, generator=generator, device=x.device, dtype=x.dtype
        )
    return out


@contextlib.contextmanager
def replaying(model: nn.Module, noise: NoiseMap | None) -> Iterator[nn.Module]:
    """Eval mode; the NIN nodes named in ``noise`` replay it, every other noise module is off.

    ``noise=None`` turns all noise off (the clean model). Nothing draws from any generator inside.
    """
    nodes = nin_nodes(model)
    unknown = sorted(set(noise or {}) - set(nodes))
    if unknown:
        raise ConfigError(f"`noise` must name NIN layers of the model ({sorted(nodes)}), got {unknown[0]!r}")
    was_training = {m: m.training for m in model.modules()}
    mods = noise_modules(model)
    saved = [m.force for m in mods]
    given: dict[NoiseInjectionNode, torch.Tensor] = {nodes[n]: e for n, e in (noise or {}).items()}
    last = {node: node.last_noise for node in nodes.values()}  # probes leave no trace, not even this
    try:
        model.eval()
        for m in mods:
            m.force = m in given
        with contextlib.ExitStack() as stack:
            for node, eps in given.items():
                stack.enter_context(node.given_noise(eps))
            yield model
    finally:
        for mod, s in zip(mods, saved, strict=True):
            mod.force = s
        for module, mode in was_training.items():
            module.training = mode
        for node, prev in last.items():
            node.last_noise = prev
