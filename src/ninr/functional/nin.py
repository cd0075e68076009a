"""Pure tensor operations of noise injection nodes (NINs).

A NIN is one extra input node carrying noise ``eps`` into a layer through trainable noise
injection weights (NIWs). These functions compute the layer's output with that node included,
with no extra matrix product: for a dense layer, and for a conv layer with per-example noise, the
node is a rank-one update of the layer's output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ConvFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def nin_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    niw: torch.Tensor | None,
    eps: torch.Tensor | None,
) -> torch.Tensor:
    """Dense layer with a NIN: ``z = x W^T + b + eps niw^T``.

    Shape:
        x: (*, in); weight: (out, in); bias, niw: (out,); eps: (*,), one draw per example.
        Returns (*, out).

    With ``eps is None`` (noise off) this is exactly ``F.linear(x, weight, bias)``.
    """
    if eps is None or niw is None:
        return F.linear(x, weight, bias)
    out = F.linear(x, weight, bias)
    # The rank-one update goes in place into the product's fresh output (its backward does not need
    # it): one pass, no (B, out) temporary. Against addmm(addr(b, eps, niw), x, W^T): +17% against +20%
    # per full-NINR MLP step at batch 64 in one run (benchmarks/nin_op.py, commit b7d8e7d), +12.5% against
    # +11.2% in a 40-round run (commit 332a87f; docs/speed.md): within noise of each other, and this one
    # allocates less.
    flat = out if out.dim() == 2 else out.view(-1, out.shape[-1])
    e = eps if eps.dim() == 1 else eps.reshape(-1)
    if e.dtype != out.dtype or niw.dtype != out.dtype:  # autocast: the product is in low precision
        e, niw = e.to(out.dtype), niw.to(out.dtype)
    flat.addr_(e, niw)
    return out


def nin_conv2d_channel(
    conv: torch.Tensor,
    niw: torch.Tensor,
    eps: torch.Tensor,
    in_hw: tuple[int, int],
    conv_fn: ConvFn,
) -> torch.Tensor:
    """Add the contribution of a noise channel to a convolution's output ``conv``.

    The node is an extra input channel carrying a noise map into the convolution; its kernel slice
    ``niw`` (out, 1, kh, kw) is the NIW. ``conv_fn(input, weight)`` applies the layer's geometry
    (stride, padding, dilation; no bias, one group). A per-example draw ``eps`` (B,) is a constant
    map, whose convolution is ``eps`` times the convolution of a map of ones: one tiny single-image
    product. A per-pixel draw ``eps`` (B, 1, H, W) is convolved as it is.

    Shape:
        conv: (B, out, H', W'); returns the same shape.
    """
    w = niw.to(conv.dtype)
    if eps.dim() == 1:
        ones = torch.ones((1, 1, *in_hw), dtype=conv.dtype, device=conv.device)
        return _add_rank_one(conv, eps, conv_fn(ones, w))
    return conv + conv_fn(eps.to(conv.dtype), w)


def _add_rank_one(conv: torch.Tensor, eps: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """``conv + eps[b] * unit``: a per-example draw times one single-image map (1, out, H', W').

    The result has ``conv``'s memory format.
    """
    e = eps.to(conv.dtype)
    if conv.is_contiguous():
        # A rank-one update of the (B, out*H'*W') map: its backward reduces to one matrix-vector
        # product, where addcmul's multiplies and then sums (measured ~half the overhead:
        # benchmarks/nin_op.py, docs/speed.md).
        return torch.addr(conv.view(conv.shape[0], -1), e, unit.reshape(-1)).view_as(conv)
    if conv.is_contiguous(memory_format=torch.channels_last):
        # The same update on the channels-last map (how a CNN trains on the CPU), viewed as (B, H'*W'*out): no
        # copy, and the output stays channels-last. Against addcmul, a full-NINR CNN step at batch 64 went from
        # +21.5% to +8.9% over the plain step (1 thread; benchmarks/nin_overhead.py's step, docs/speed.md).
        b, c, h, w = conv.shape
        flat = conv.permute(0, 2, 3, 1).reshape(b, h * w * c)
        out = torch.addr(flat, e, unit.permute(0, 2, 3, 1).reshape(-1))
        return out.view(b, h, w, c).permute(0, 3, 1, 2)
    return torch.addcmul(conv, e.view(-1, 1, 1, 1), unit)


def nin_additive_conv(
    conv: torch.Tensor, niw: torch.Tensor, eps: torch.Tensor, conv_fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """A convolution's output ``conv`` of ``x`` turned into that of ``x + niw * eps`` (per-example ``eps``).

    Convolution and padding are linear, so ``conv_nobias(x + eps_b niw) = conv(x) + eps_b conv_nobias(niw)``:
    the node costs one single-image convolution of the NIW (``conv_fn``: the layer's geometry, no bias) and a
    rank-one update. Autograd then never needs the gradient with respect to the layer's input (for an
    input layer: the data), and the NIW's gradient is one single-image transposed convolution of
    ``sum_b eps_b grad_b`` instead of B of them.

    Shape:
        conv: (B, out, H', W'); niw: (C, H, W); eps: (B,); returns conv's shape.
    """
    return _add_rank_one(conv, eps, conv_fn(niw.to(conv.dtype).unsqueeze(0)))


def nin_additive(x: torch.Tensor, niw: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Additive pixel-wise NIN on a feature map: ``x + niw[c, h, w] * eps``.

    Shape:
        x: (B, C, H, W); niw: (C, H, W); eps: (B,) per example or (B, 1, H, W) per pixel.
    """
    e = eps.view(-1, 1, 1, 1) if eps.dim() == 1 else eps
    return torch.addcmul(x, e.to(x.dtype), niw.to(x.dtype))
