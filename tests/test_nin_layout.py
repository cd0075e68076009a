"""A conv noise node on channels-last maps (how a CNN trains on the CPU): the same values and gradients as the
literal oracle, and the output keeps the channels-last layout.

Per-example noise is a rank-one update of the convolution's output, computed on the channels-last map viewed as
(B, H'*W'*out) (:func:`ninr.functional.nin.nin_additive_conv`, ``nin_conv2d_channel``). The oracle is the
literal ``conv(x + W_NI eps)`` (additive) or the convolution of ``[x, noise map]`` with ``[W, W_NI]``
(channel), on contiguous tensors. Tolerances: the channels-last and contiguous kernels sum the same terms in
other orders; float32 sums of n <= 2*3*3 = 18 terms here differ by at most 2 n u (u = 2^-24) of their terms'
sizes, ~1e-6, so rtol 1e-5 / atol 1e-5 (1e-4 for gradients, which sum over the batch and the map too, as
tests/test_nn.py uses for the contiguous rewrite) leave a wide margin.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ninr.nn import attach_nins
from ninr.nn.nin import NINConv2d

CL = torch.channels_last


@pytest.mark.parametrize("mode", ["additive", "channel"])
def test_channels_last_node_matches_the_literal_oracle(mode: str) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 2, 8, 8, generator=g)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    attach_nins(conv, "all", conv_mode=mode, per="example", sigma=0.8, seed=3, example_input=x0[:1])
    assert isinstance(conv, NINConv2d)
    with torch.no_grad():
        conv.nin.weight.uniform_(-0.5, 0.5, generator=g)
    conv.to(memory_format=CL)  # type: ignore[call-overload]
    x = x0.to(memory_format=CL).requires_grad_(True)
    y = conv(x)
    assert y.is_contiguous(memory_format=CL) and not y.is_contiguous()
    eps = conv.nin.last_noise
    assert eps is not None
    w, b, niw = (t.detach().contiguous().requires_grad_(True) for t in (conv.weight, conv.bias, conv.nin.weight))
    xr = x0.clone().requires_grad_(True)
    if mode == "additive":
        expected = F.conv2d(xr + niw * eps.view(-1, 1, 1, 1), w, b, 1, 1)
    else:
        noise_map = eps.view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
        expected = F.conv2d(torch.cat([xr, noise_map], dim=1), torch.cat([w, niw], dim=1), b, 1, 1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn(y.shape, generator=g)
    got = torch.autograd.grad(y, (x, conv.weight, conv.bias, conv.nin.weight), grad)
    want = torch.autograd.grad(expected, (xr, w, b, niw), grad)
    for a, c, name in zip(got, want, ("x", "weight", "bias", "niw"), strict=True):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5, msg=name)
