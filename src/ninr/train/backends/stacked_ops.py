"""Pure tensor operations of K stacked models: one batched product per layer instead of K small ones.

Two activation layouts, chosen so that no op needs a copy it could avoid:

- **dense** ``(K, B, F)``: run k's batch is slice k; a linear layer is one ``baddbmm``.
- **conv** ``(B, K*C, H, W)``: run k owns channels ``[k*C, (k+1)*C)``; a convolution is one grouped
  convolution (``groups=K``) and channel-wise ops (ReLU, pooling) apply unchanged.

Each function is the stacked counterpart of one in :mod:`ninr.functional.nin` and computes, for each
k, exactly what that function computes for run k alone (the noise node's rank-one update is fused into
the affine map, as there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stacked_linear(
    x: torch.Tensor,
    weight_t: torch.Tensor,
    bias: torch.Tensor | None,
    niw: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """K dense layers with optional noise nodes: ``z_k = x_k W_k^T + b_k + eps_k niw_k^T``.

    The weights come transposed, ``weight_t[k] = W_k^T``, stored contiguous: the weight gradient of a
    batched product is then produced in the weight's own layout, where a transposed view would cost
    a full copy of every weight gradient per step (measured: a third of the step time at K=8, batch 64).

    Shape:
        x: (K, B, in); weight_t: (K, in, out); bias, niw: (K, out); eps: (K, B). Returns (K, B, out).
    """
    if eps is not None and niw is not None:
        e = eps.to(x.dtype).unsqueeze(2)
        base = e * niw.unsqueeze(1) if bias is None else torch.addcmul(bias.unsqueeze(1), e, niw.unsqueeze(1))
    elif bias is not None:
        base = bias.unsqueeze(1)
    else:
        return torch.bmm(x, weight_t)
    return torch.baddbmm(base, x, weight_t)


def to_conv_layout(x: torch.Tensor) -> torch.Tensor:
    """``(K, B, C, H, W)`` -> ``(B, K*C, H, W)``."""
    k, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, k * c, h, w)


def conv_to_dense(x: torch.Tensor, k: int) -> torch.Tensor:
    """Flatten a conv-layout map ``(B, K*C, H, W)`` to dense layout ``(K, B, C*H*W)`` (NCHW order per run)."""
    b = x.shape[0]
    return x.reshape(b, k, -1).transpose(0, 1)


def stacked_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    k: int,
    stride: tuple[int, ...],
    padding: tuple[int, ...] | str,
    dilation: tuple[int, ...],
) -> torch.Tensor:
    """K convolutions (zero padding, one group each) as one grouped convolution.

    Shape:
        x: (B, K*C, H, W); weight: (K*out, C, kh, kw); bias: (K*out,). Returns (B, K*out, H', W').
    """
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups=k)


def _add_per_run(conv: torch.Tensor, eps: torch.Tensor, unit: torch.Tensor, k: int) -> torch.Tensor:
    """``conv`` plus, for each run k, its per-example draw ``eps[:, k]`` times its own output map.

    Shape:
        conv: (B, K*out, H', W'); eps: (B, K); unit: (1, K*out, H', W'). Returns the shape of ``conv``.
    """
    b, ko, ho, wo = conv.shape
    e = eps.to(conv.dtype).view(b, k, 1, 1, 1)
    out = torch.addcmul(conv.view(b, k, ko // k, ho, wo), e, unit.view(1, k, ko // k, ho, wo))
    return out.reshape(b, ko, ho, wo)


def stacked_nin_channel(
    conv: torch.Tensor,
    niw: torch.Tensor,
    eps: torch.Tensor,
    k: int,
    in_hw: tuple[int, int],
    stride: tuple[int, ...],
    padding: tuple[int, ...] | str,
    dilation: tuple[int, ...],
) -> torch.Tensor:
    """Add K noise channels' contributions to a stacked convolution's output (``conv_mode="channel"``).

    Per-example noise ``eps`` (B, K) is a constant map per run: its convolution is ``eps`` times the
    convolution of a map of ones (one tiny grouped product). Per-pixel noise ``eps`` (B, K, H, W) is
    convolved as it is.

    Shape:
        conv: (B, K*out, H', W'); niw: (K*out, 1, kh, kw). Returns the shape of ``conv``.
    """
    w = niw.to(conv.dtype)
    if eps.dim() == 2:
        ones = torch.ones((1, k, *in_hw), dtype=conv.dtype, device=conv.device)
        return _add_per_run(conv, eps, F.conv2d(ones, w, None, stride, padding, dilation, groups=k), k)
    return conv + F.conv2d(eps.to(conv.dtype), w, None, stride, padding, dilation, groups=k)


def stacked_nin_additive_conv(
    conv: torch.Tensor,
    niw: torch.Tensor,
    eps: torch.Tensor,
    k: int,
    weight: torch.Tensor,
    stride: tuple[int, ...],
    padding: tuple[int, ...] | str,
    dilation: tuple[int, ...],
) -> torch.Tensor:
    """A stacked convolution's output ``conv`` of ``x`` turned into that of ``x_k + niw_k * eps_k``.

    Per-example noise only: the stacked form of :func:`ninr.functional.nin.nin_additive_conv`. Convolution
    and zero padding are linear, so each run's node adds ``eps_bk`` times one convolution of its NIW map
    (no bias): one grouped single-image convolution for all K runs and a broadcast multiply-add, instead of
    adding the noise to the feature map and convolving the sum.

    Shape:
        conv: (B, K*out, H', W'); niw: (K, C, H, W); eps: (B, K); weight: (K*out, C, kh, kw).
        Returns the shape of ``conv``.
    """
    maps = niw.to(conv.dtype).reshape(1, -1, *niw.shape[2:])
    return _add_per_run(conv, eps, F.conv2d(maps, weight, None, stride, padding, dilation, groups=k), k)


def stacked_nin_additive(x: torch.Tensor, niw: torch.Tensor, eps: torch.Tensor, k: int) -> torch.Tensor:
    """Additive pixel-wise noise nodes on a stacked feature map: ``x_k + niw_k[c, h, w] * eps_k``.

    Shape:
        x: (B, K*C, H, W); niw: (K, C, H, W); eps: (B, K) per example or (B, K, H, W) per pixel.
    """
    b, kc, h, w = x.shape
    e = eps.view(b, k, 1, 1, 1) if eps.dim() == 2 else eps.unsqueeze(2)
    out = torch.addcmul(x.view(b, k, kc // k, h, w), e.to(x.dtype), niw.to(x.dtype).unsqueeze(0))
    return out.reshape(b, kc, h, w)


def stacked_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each run's mean cross-entropy over its own batch.

    Shape:
        logits: (K, B, classes); y: (K, B). Returns (K,).
    """
    k, b, c = logits.shape
    return F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="none").view(k, b).mean(dim=1)
