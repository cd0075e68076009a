"""Drawn occlusions (MNIST-C): dotted lines and zigzags painted over the image.

The reference draws one line or one zigzag; severity ``s`` here draws the first ``s`` of five per-example
objects, so a higher severity adds lines to those of the lower ones. The paint of every severity is made
once in ``prepare`` (cumulative sums), and ``apply`` adds one of them.
"""

from __future__ import annotations

import math

import torch

from ninr.robustness._random import uniform
from ninr.robustness.corruptions._ops import floor_int, paint_segments
from ninr.robustness.corruptions.base import State, register
from ninr.robustness.severities import SEVERITIES

MAX_OBJECTS = len(SEVERITIES)
ZIGZAG_LENGTH = 2.0  # MNIST-C's a: half-period of a zigzag along its axis, pixels
ZIGZAG_WIDTH = 2.0  # MNIST-C's b: amplitude across its axis, pixels
ZIGZAG_MARGIN = 2  # MNIST-C's zigzags run from column 2 to column 25 of 28
ZIGZAG_MAX_TILT = 5  # MNIST-C: r1 - r0 drawn from randint(-5, 5)


def _dash(w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """MNIST-C's dashes: columns in blocks of two, the first block off."""
    cols = torch.arange(w, device=device)
    return ((cols // 2) % 2 == 1).to(dtype)


def _dotted_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    h, w = x.shape[-2:]
    u = uniform(keys, (MAX_OBJECTS, 2), 0, dtype=x.dtype)
    rows = floor_int(u, 0, h - 1)  # randint(0, 27) for 28 rows
    zero = torch.zeros_like(rows[:, :1, 0])
    dash = _dash(w, x.device, x.dtype)
    lines = [
        paint_segments(zero, rows[:, k : k + 1, 0], zero + (w - 1), rows[:, k : k + 1, 1], (h, w)) * dash
        for k in range(MAX_OBJECTS)
    ]
    return {"paint": torch.stack(lines, dim=1).cumsum(dim=1)}


@register("dotted-line", "occlusion", prepare=_dotted_state, random=True)
def dotted_line(x: torch.Tensor, count: int, state: State) -> torch.Tensor:
    """Add ``count`` dashed white lines running from the left edge to the right edge at random heights."""
    return x + state["paint"][:, count - 1 : count]


def _zigzag_points(r0: torch.Tensor, tilt: torch.Tensor, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertex columns and rows (N, K) of MNIST-C's zigzag from (2, r0) towards (w - 3, r0 + tilt).

    Examples whose zigzag has fewer vertices repeat their last vertex (a zero-length segment paints
    nothing), so every example has the same vertex count.
    """
    a, b = ZIGZAG_LENGTH, ZIGZAG_WIDTH
    c0, c1 = ZIGZAG_MARGIN, w - 1 - ZIGZAG_MARGIN
    theta = torch.atan(tilt / (c1 - c0))
    d = (c1 - c0) / torch.cos(theta)
    d_max = math.hypot(c1 - c0, ZIGZAG_MAX_TILT)
    bound = int((d_max - a) // (2 * a)) + 1
    count = torch.floor((d - a) / (2 * a)) + 1  # zig vertices after the origin
    last_r = torch.where(torch.remainder(count - 1, 2) == 0, b, -b)
    max_c = 2 * a * torch.floor(d / (2 * a))
    end_r = torch.where(d != max_c, last_r / (2 * (d - max_c)), last_r)
    end_c = torch.where(d != max_c, d, (2 * count - 1) * a)
    k = torch.arange(1, bound + 1, dtype=r0.dtype, device=r0.device)
    zig = k.view(1, -1) <= count.view(-1, 1)
    cs = torch.where(zig, (2 * k - 1) * a, end_c.view(-1, 1))
    rs = torch.where(zig, torch.where(torch.remainder(k - 1, 2) == 0, b, -b), end_r.view(-1, 1))
    zero = torch.zeros_like(r0).view(-1, 1)
    cs = torch.cat([zero, cs, end_c.view(-1, 1)], dim=1)
    rs = torch.cat([zero, rs, end_r.view(-1, 1)], dim=1)
    cos, sin = torch.cos(theta).view(-1, 1), torch.sin(theta).view(-1, 1)
    return cos * cs - sin * rs + c0, sin * cs + cos * rs + r0.view(-1, 1)


def _zigzag_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    assert keys is not None
    n = len(x)
    h, w = x.shape[-2:]
    u = uniform(keys, (MAX_OBJECTS, 2), 0, dtype=torch.float64)
    paint = torch.zeros(n, MAX_OBJECTS, h, w, dtype=x.dtype, device=x.device)
    total = torch.zeros(n, h, w, dtype=x.dtype, device=x.device)
    for obj in range(MAX_OBJECTS):
        r0 = floor_int(u[:, obj, 0], 0, h - 1)
        tilt = floor_int(u[:, obj, 1], -ZIGZAG_MAX_TILT, ZIGZAG_MAX_TILT)
        cs, rs = _zigzag_points(r0, tilt, w)
        cs, rs = cs.to(x.dtype), rs.to(x.dtype)  # vertices in float64, paint in the image's dtype
        total = total + paint_segments(cs[:, :-1], rs[:, :-1], cs[:, 1:], rs[:, 1:], (h, w))
        paint[:, obj] = total
    return {"paint": paint}


@register("zigzag", "occlusion", prepare=_zigzag_state, random=True)
def zigzag(x: torch.Tensor, count: int, state: State) -> torch.Tensor:
    """Add ``count`` white zigzag lines across the image at random heights and tilts."""
    return x + state["paint"][:, count - 1 : count]
