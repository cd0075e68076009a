"""Thin noise modules over :mod:`ninr.functional.perturb`: input, activation, dropout and weight noise.

Each is a :class:`~ninr.nn.modes.NoiseModule`: noise on in ``train()``, off in ``eval()``, forced
either way by :func:`~ninr.nn.modes.force_noise`, drawn from the module's own seeded generator.
None of them holds a parameter or a buffer, so adding one never changes a ``state_dict``.

:class:`ActivationNoise` and :class:`NoiseDropout` are ordinary layers (put them in a
``Sequential``) and can also be hung *after* an existing module with :meth:`OutputNoise.attach_after`:
they become a child of that module and a forward hook applies them to its output, which leaves
every other module name and state_dict key as it was. :class:`WeightNoise` attaches to a layer and
feeds its forward pass perturbed parameters without touching the stored ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ninr.errors import check_choice, check_nonneg, check_probability, fail
from ninr.functional.noise import DISTRIBUTIONS, sample
from ninr.functional.perturb import NOISE_MODES, add_noise, dropout
from ninr.nn.modes import NoiseModule


class OutputNoise(NoiseModule):
    """A noise module applied to a tensor: as a layer, or after another module's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active:
            return x
        return self.perturb(x, self.generator(x.device))

    def perturb(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The noisy version of ``x`` (noise assumed on)."""
        raise NotImplementedError

    def attach_after(self, host: nn.Module, name: str) -> RemovableHandle:
        """Make this module child ``name`` of ``host`` and apply it to ``host``'s output on every call."""
        if name in host._modules:
            raise fail("name", f"a free child name of {type(host).__name__}", name)
        host.add_module(name, self)
        # A bound method (not a closure) so that copy.deepcopy and pickling keep the hook pointing at the copy.
        return host.register_forward_hook(self._after_host)

    def _after_host(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return self(output)


class InputNoise(OutputNoise):
    """Additive noise of std ``scale`` on the input, optionally clipped (e.g. to the pixel range).

    Args:
        scale: noise standard deviation (>= 0).
        distribution: a name in ``ninr.functional.DISTRIBUTIONS``.
        clip: ``(low, high)`` to clamp the noisy input to, or ``None``.
        seed: seed of the module's own generator (``None``: torch's global generator).

    Shape:
        any shape -> the same shape.
    """

    def __init__(
        self,
        scale: float,
        *,
        distribution: str = "gaussian",
        clip: tuple[float, float] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.scale = check_nonneg("scale", scale)
        DISTRIBUTIONS.get(distribution)
        self.distribution = distribution
        if clip is not None and not (len(clip) == 2 and clip[0] < clip[1]):
            raise fail("clip", "None or (low, high) with low < high", clip)
        self.clip = clip

    def perturb(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        out = add_noise(x, scale=self.scale, distribution=self.distribution, generator=generator)
        return out.clamp(*self.clip) if self.clip is not None else out

    def extra_repr(self) -> str:
        return f"scale={self.scale}, distribution={self.distribution!r}, clip={self.clip}"


class ActivationNoise(OutputNoise):
    """Additive (``x + s eps``) or multiplicative (``x (1 + s eps)``) noise on activations.

    Multiplicative Gaussian noise with ``scale = sqrt(p / (1 - p))`` is Gaussian dropout of rate ``p``.

    Shape:
        any shape -> the same shape.
    """

    def __init__(
        self, scale: float, *, distribution: str = "gaussian", mode: str = "additive", seed: int | None = None
    ) -> None:
        super().__init__(seed=seed)
        self.scale = check_nonneg("scale", scale)
        DISTRIBUTIONS.get(distribution)
        self.distribution = distribution
        self.mode = check_choice("mode", mode, NOISE_MODES)

    def perturb(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return add_noise(x, scale=self.scale, distribution=self.distribution, mode=self.mode, generator=generator)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, distribution={self.distribution!r}, mode={self.mode!r}"


class NoiseDropout(OutputNoise):
    """Inverted dropout of rate ``rate`` as a noise module (seeded; obeys :func:`force_noise`)."""

    def __init__(self, rate: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.rate = check_probability("rate", rate)

    def perturb(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return dropout(x, rate=self.rate, generator=generator)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class WeightNoise(NoiseModule):
    """Fresh noise on a layer's parameters at every forward pass; the stored parameters stay as they are.

    Attached to a layer, a forward pre-hook computes ``p + noise`` for each named parameter and
    shadows the parameter by that (non-parameter) tensor for the duration of the call; a forward
    hook removes the shadow, also when the forward pass raises. The layer's ``state_dict``,
    ``parameters()`` and the optimizer see the stored tensors; gradients are taken at the perturbed
    weights and flow to the stored ones (d(p + noise)/dp = 1). The last draw is kept in
    :attr:`last_noise` (by parameter name) for inspection.

    Args:
        names: parameter names of the host layer to perturb, e.g. ``("weight",)`` or ``("weight", "bias")``.
        scale: noise standard deviation (absolute, in the parameters' units).
        distribution: a name in ``ninr.functional.DISTRIBUTIONS``.
        seed: seed of the module's own generator.
    """

    def __init__(
        self, names: Sequence[str], scale: float, *, distribution: str = "gaussian", seed: int | None = None
    ) -> None:
        super().__init__(seed=seed)
        if not names or not all(isinstance(n, str) for n in names):
            raise fail("names", "a non-empty list of parameter names", names)
        self.names = tuple(names)
        self.scale = check_nonneg("scale", scale)
        DISTRIBUTIONS.get(distribution)
        self.distribution = distribution
        self.last_noise: dict[str, torch.Tensor] = {}

    def attach(self, layer: nn.Module, name: str = "weight_noise") -> list[RemovableHandle]:
        """Make this module child ``name`` of ``layer`` and perturb ``layer``'s parameters on every call."""
        missing = [n for n in self.names if not isinstance(layer._parameters.get(n), torch.Tensor)]
        if missing:
            raise fail("names", f"parameters of {type(layer).__name__} ({', '.join(layer._parameters)})", missing)
        if name in layer._modules:
            raise fail("name", f"a free child name of {type(layer).__name__}", name)
        layer.add_module(name, self)
        pre = layer.register_forward_pre_hook(self._shadow)
        post = layer.register_forward_hook(self._unshadow, always_call=True)
        return [pre, post]

    def _shadow(self, layer: nn.Module, inputs: Any) -> None:
        if not self.noise_active:
            self.last_noise = {}
            return
        noisy: dict[str, torch.Tensor] = {}
        self.last_noise = {}
        for n in self.names:
            p = layer._parameters[n]
            assert p is not None  # checked by attach()
            gen = self.generator(p.device)
            eps = sample(self.distribution, p.shape, scale=self.scale, generator=gen, device=p.device, dtype=p.dtype)
            self.last_noise[n] = eps
            noisy[n] = p + eps
        # The instance __dict__ wins over nn.Module.__getattr__, which is where parameters are found.
        layer.__dict__.update(noisy)

    def _unshadow(self, layer: nn.Module, inputs: Any, output: Any) -> None:
        for n in self.names:
            layer.__dict__.pop(n, None)

    def extra_repr(self) -> str:
        return f"names={list(self.names)}, scale={self.scale}, distribution={self.distribution!r}"
