"""Noise injection nodes and the layers that carry them.

A :class:`NoiseInjectionNode` is a noise source (distribution, ``sigma``, its own generator) plus its
noise injection weights (the NIW ``Parameter``). :func:`ninr.nn.attach_nins` turns an existing
``nn.Linear`` or ``nn.Conv2d`` into :class:`NINLinear` / :class:`NINConv2d` in place, the way
``torch.nn.utils.parametrize`` does: the layer keeps its identity, its parameters and their
``state_dict`` keys, and gains one submodule ``nin`` (key ``<layer>.nin.weight``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ninr.errors import check_choice, check_nonneg, fail
from ninr.functional.nin import nin_additive, nin_additive_conv, nin_conv2d_channel, nin_linear
from ninr.functional.noise import DISTRIBUTIONS
from ninr.nn.modes import NoiseModule

NoisePer = Literal["example", "pixel"]
ConvMode = Literal["channel", "additive"]
NOISE_PER = ("example", "pixel")
CONV_MODES = ("channel", "additive")
DEFAULT_CONV_MODE: ConvMode = "additive"
"""How a node feeds a convolution unless told otherwise: the paper's construction, one NIW per pixel of the
feature map fed into the convolution. ``"channel"`` (the node as an extra input channel, its kernel slice the
NIW) is the alternative; with per-example noise only each kernel's sum feels curvature (docs/design.md)."""


class NoiseInjectionNode(NoiseModule):
    """A noise injection node: fresh noise ``eps`` with std ``sigma`` each forward pass, and its NIWs.

    Args:
        niw_shape: shape of the noise injection weights (``(out,)`` for a dense layer).
        sigma: standard deviation of the injected noise.
        distribution: a name in ``ninr.functional.DISTRIBUTIONS`` (unit-free: scaled to std ``sigma``).
        per: ``"example"`` (one draw per example) or ``"pixel"`` (i.i.d. per pixel, conv layers).
        seed: seed of the node's own generator; ``None`` uses torch's global generator.
    """

    def __init__(
        self,
        niw_shape: Sequence[int],
        *,
        sigma: float = 1.0,
        distribution: str = "gaussian",
        per: NoisePer = "example",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.sigma = check_nonneg("sigma", sigma)
        self._sampler = DISTRIBUTIONS.get(distribution)
        self._distribution = distribution
        self.per: NoisePer = check_choice("per", per, NOISE_PER)  # type: ignore[assignment]
        self.weight = nn.Parameter(torch.zeros(tuple(niw_shape)))
        self.last_noise: torch.Tensor | None = None
        self._given: torch.Tensor | None = None

    @property
    def distribution(self) -> str:
        """The noise distribution's registry name."""
        return self._distribution

    @distribution.setter
    def distribution(self, name: str) -> None:
        self._sampler = DISTRIBUTIONS.get(name)
        self._distribution = name

    def draw(self, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor | None:
        """Noise of ``shape`` for the next forward pass, or ``None`` when noise is off.

        This runs once per node per step, so it is kept lean (the sampler is looked up once, no copy
        is made): a 64-element Gaussian draw costs 7.6 us on one CPU thread, the sampler alone 4.9 us,
        against 20 us for ``randn(...).mul_(sigma)`` with a registry lookup and a ``detach`` per draw
        (docs/speed.md).
        """
        attrs = self.__dict__  # last_noise is a plain attribute; nn.Module.__setattr__ costs 2 us a call
        if not self.noise_active:
            attrs["last_noise"] = None
            return None
        device = like.device
        if self._given is not None:
            eps = self._given.to(device=device, dtype=like.dtype)
        else:
            gen = self.generator(device)
            eps = self._sampler(shape, scale=self.sigma, generator=gen, device=device, dtype=like.dtype)
        attrs["last_noise"] = eps.detach() if eps.requires_grad else eps
        return eps

    @contextlib.contextmanager
    def given_noise(self, eps: torch.Tensor) -> Iterator[None]:
        """Use ``eps`` instead of a fresh draw inside the block (to replay a recorded forward pass)."""
        self._given = eps
        try:
            yield
        finally:
            self._given = None

    def extra_repr(self) -> str:
        return (
            f"niw_shape={tuple(self.weight.shape)}, sigma={self.sigma}, distribution={self.distribution!r}, "
            f"per={self.per!r}"
        )


class NINLinear(nn.Linear):
    """``nn.Linear`` with a noise injection node: ``z = W x + b + W_NI eps``, one ``eps`` per example."""

    nin: NoiseInjectionNode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nin = self.nin
        return nin_linear(x, self.weight, self.bias, nin.weight, nin.draw(x.shape[:-1], x))


class NINConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose input feature map is connected pixel-wise to a noise injection node.

    ``nin_mode="channel"``: the node is an extra input channel carrying a noise map into the
    convolution; its kernel slice (out, 1, kh, kw) is the NIW. ``nin_mode="additive"``: the map
    ``x + W_NI[c, h, w] * eps`` feeds the convolution; the NIW has the feature map's shape (C, H, W).
    """

    nin: NoiseInjectionNode
    nin_mode: ConvMode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0],) if self.nin.per == "example" else (x.shape[0], 1, *x.shape[-2:])
        eps = self.nin.draw(shape, x)
        if eps is None:
            return self._conv_forward(x, self.weight, self.bias)
        if self.nin_mode == "additive":
            if eps.dim() == 1:  # per example: conv(x) + eps conv(W_NI), no input gradient (functional/nin.py)
                out = self._conv_forward(x, self.weight, self.bias)
                return nin_additive_conv(out, self.nin.weight, eps, self._niw_conv)
            return self._conv_forward(nin_additive(x, self.nin.weight, eps), self.weight, self.bias)
        out = self._conv_forward(x, self.weight, self.bias)
        return nin_conv2d_channel(out, self.nin.weight, eps, (x.shape[-2], x.shape[-1]), self._noise_conv)

    def _niw_conv(self, niw: torch.Tensor) -> torch.Tensor:
        """The layer's convolution of its NIW map (1, C, H, W), without bias (additive mode)."""
        return self._conv_forward(niw, self.weight, None)

    def _noise_conv(self, inp: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The layer's geometry applied to a one-channel noise map (padding mode included)."""
        if self.padding_mode != "zeros":
            inp = F.pad(inp, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(inp, weight, None, self.stride, 0, self.dilation)
        return F.conv2d(inp, weight, None, self.stride, self.padding, self.dilation)


def niw_shape_for(layer: nn.Module, conv_mode: ConvMode, in_shape: Sequence[int] | None) -> tuple[int, ...]:
    """The NIW's shape for ``layer`` (``in_shape`` is the (C, H, W) feeding it, for additive conv)."""
    if isinstance(layer, nn.Linear):
        return (layer.out_features,)
    if isinstance(layer, nn.Conv2d):
        if conv_mode == "channel":
            return (layer.out_channels, 1, *layer.kernel_size)
        if in_shape is None:
            raise fail(
                "example_input",
                "given for conv_mode='additive', the default for conv layers (the NIW has the shape of the feature"
                " map fed into the convolution); pass one input batch, or conv_mode='channel'",
                None,
            )
        return tuple(in_shape)
    raise fail("layer", "an nn.Linear or nn.Conv2d", type(layer).__name__)


def layer_fan_in(layer: nn.Module) -> int:
    """The fan-in PyTorch's default initialisation uses for ``layer``'s weight."""
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return int(weight[0].numel())


def layer_niw_bound(layer: nn.Module, mode: str, niw_shape: Sequence[int]) -> float:
    """Half-width ``b`` of ``niw_init="layer"``'s draw U(-b, b), so that one sigma means one noise-to-signal ratio.

    A dense node (``mode="dense"``) and a channel-mode conv node are one more input of the layer, with the
    layer's own weight scale: ``b = 1/sqrt(fan_in)``. Per output unit the noise is then ``sigma b / sqrt 3`` and
    the signal, over PyTorch's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and inputs of mean square ``m2``,
    ``sqrt(fan_in m2 / (3 fan_in)) = sqrt(m2 / 3)``: noise-to-signal ``sigma / sqrt(n m2)``, ``n = fan_in`` the
    number of input features.

    An additive conv node adds ``W_NI[c, h, w] eps`` to each of the ``n = C H W`` input features, and the
    convolution carries noise and signal alike: per output unit the noise variance is
    ``fan_in Var(W) Var(W_NI) sigma^2 = Var(W_NI) sigma^2 / 3`` against the signal's ``m2 / 3``, a ratio
    ``sigma sqrt(Var(W_NI) / m2)``. Equal to the dense node's ``sigma / sqrt(n m2)`` on a layer reading the same
    ``n`` features when ``Var(W_NI) = 1 / n``: ``b = sqrt(3 / n)``. For the CNN's conv1 on a 1x28x28 image
    (``n = 784``, the MLP's fc1 fan-in) that is a per-pixel noise of std ``sigma / 28 = 0.036 sigma``, the MLP's
    fc1 node's ratio, where the conv's own fan-in of 9 would give ``sigma / (3 sqrt 3) = 0.19 sigma``.
    """
    if mode == "additive":
        return math.sqrt(3.0 / math.prod(niw_shape))
    return 1.0 / math.sqrt(layer_fan_in(layer))
