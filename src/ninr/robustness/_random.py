"""Per-example, counter-based random numbers: a batch gets exactly the draws its examples would get alone.

The scheme (documented in ``docs/robustness.md``):

1. ``example_keys(n, generator)`` draws one 32-bit key per example from the caller's generator, in
   order, one draw each. Keys for a batch of ``n`` equal the keys of its examples drawn one call at a
   time (torch's CPU generator fills integer tensors element by element), so corrupting a batch equals
   corrupting its examples one by one with the same generator.
2. Every random number an example needs is a pure function of ``(key, stream, counter)``: the 32-bit
   integer hash ``lowbias32`` (Chris Wellons' hash-prospector, bias 0.17) of ``key XOR h(stream, counter)``.
   Nothing depends on the batch, the device or the chunking, and a corruption's severities share the same
   numbers (common random numbers), which makes severity curves smooth.

Streams separate the random fields of one corruption (``stream`` < 4096, ``counter`` < 2**20).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_M1 = 0x21F0AAAD
_M2 = 0x735A2D97
_STREAM_SHIFT = 20
_U24 = 1.0 / (1 << 24)


def _lsr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int32 values (torch's ``>>`` is arithmetic)."""
    out = x >> k
    return out.bitwise_and_((1 << (32 - k)) - 1)


def _wrap32(x: torch.Tensor) -> torch.Tensor:
    """int64 values reduced modulo 2**32 into the int32 range, as int32."""
    x = x & 0xFFFFFFFF
    return torch.where(x >= (1 << 31), x - (1 << 32), x).to(torch.int32)


def hash32(x: torch.Tensor) -> torch.Tensor:
    """The ``lowbias32`` integer hash of int32 values (bijective on 32 bits).

    Products are taken in int64 and wrapped, so the result does not rely on int32 overflow semantics.
    """
    x = x.to(torch.int64) & 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = (x * _M1) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * _M2) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    return _wrap32(x)


def _hash32_fast(x: torch.Tensor) -> torch.Tensor:
    """:func:`hash32` on int32 tensors with wrapping int32 products (half the memory traffic).

    Equal to :func:`hash32` (checked by the tests against a pure-Python reference).
    """
    x = x ^ _lsr(x, 16)  # the only copy: the caller's tensor is left alone
    x.mul_(_M1)
    x.bitwise_xor_(_lsr(x, 15))
    x.mul_(_M2)
    return x.bitwise_xor_(_lsr(x, 15))


def example_keys(n: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
    """One 32-bit key per example, drawn from ``generator`` in order (int32, shape ``(n,)``)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    keys = torch.randint(0, 1 << 32, (n,), generator=generator, dtype=torch.int64, device=gen_device)
    return _wrap32(keys).to(device if device is not None else gen_device)


def bits(keys: torch.Tensor, shape: Sequence[int], stream: int) -> torch.Tensor:
    """Random int32 values of shape ``(len(keys), *shape)``; element ``j`` of example ``i`` depends only on
    ``(keys[i], stream, j)``."""
    count = math.prod(shape)
    counters = torch.arange(count, dtype=torch.int64, device=keys.device) + (int(stream) << _STREAM_SHIFT)
    offsets = hash32(_wrap32(counters))
    out = _hash32_fast(keys.view(-1, 1) ^ offsets.view(1, -1))
    return out.view(len(keys), *shape)


def uniform_at(
    keys: torch.Tensor, example: torch.Tensor, counter: torch.Tensor, stream: int, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The numbers :func:`uniform` gives at (``example``, flat ``counter``) pairs, computed for those alone."""
    offsets = hash32(_wrap32(counter.to(torch.int64) + (int(stream) << _STREAM_SHIFT)))
    top = _lsr(_hash32_fast(keys[example] ^ offsets), 8).to(dtype)
    return top.add_(0.5).mul_(_U24)


def uniform(
    keys: torch.Tensor, shape: Sequence[int], stream: int, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Uniform numbers in the open interval (0, 1), 24-bit resolution, shape ``(len(keys), *shape)``."""
    top = _lsr(bits(keys, shape, stream), 8).to(dtype)
    return top.add_(0.5).mul_(_U24)


def normal(
    keys: torch.Tensor, shape: Sequence[int], stream: int, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal numbers by Box-Muller (both outputs of each pair used), shape ``(len(keys), *shape)``."""
    count = math.prod(shape)
    pairs = (count + 1) // 2
    u1 = uniform(keys, (pairs,), stream, dtype=dtype)
    u2 = uniform(keys, (pairs,), stream + 1, dtype=dtype)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = (2.0 * math.pi) * u2
    z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)[:, :count]
    return z.reshape(len(keys), *shape)
