"""The corruption registry and :func:`corrupt`.

A corruption is two pure functions (the kornia / torchvision ``make_params`` split):

* ``prepare(x, keys) -> state``: everything that does not depend on the severity: the example's random
  numbers (drawn from its key, see :mod:`ninr.robustness._random`) and any costly severity-free work
  (the canny edge map). Evaluating five severities prepares once.
* ``apply(x, level, state) -> x'``: the corruption at one level (a severity table entry, or the level a
  continuous intensity maps to), before the final clip to [0, 1].

Both act on each example alone, so a batch gives what its examples give one by one.

Two registries: :data:`CORRUPTIONS` holds the corruptions defined for any channel count (the evaluation
suites run all of them on grayscale data); :data:`RGB_CORRUPTIONS` holds those defined on RGB images only
(saturate), which refuse other input. :func:`get_corruption` and :func:`corrupt` look in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ninr.errors import ConfigError, UnknownNameError, check_nonneg, did_you_mean, fail
from ninr.registry import Registry
from ninr.robustness._random import example_keys
from ninr.robustness.severities import TABLES, SeverityTable

State = dict[str, torch.Tensor]
PrepareFn = Callable[[torch.Tensor, "torch.Tensor | None"], State]
ApplyFn = Callable[[torch.Tensor, Any, State], torch.Tensor]

FAMILIES = ("noise", "blur", "geometric", "digital", "weather", "occlusion")


def _no_state(x: torch.Tensor, keys: torch.Tensor | None) -> State:
    return {}


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: its functions, family, severity table and optional continuous intensity.

    Attributes:
        name: registry name (hyphenated, e.g. ``"motion-blur"``).
        family: one of :data:`FAMILIES`.
        apply: ``(x, level, state) -> x'`` before the final clip.
        prepare: ``(x, keys) -> state`` (``keys`` is ``None`` for a deterministic corruption).
        random: whether the corruption draws random numbers (one key per example from the generator).
        intensity: maps a noise std (the unstructured noises) to a level; ``None`` when not offered.
        intensity_meaning: what the intensity is, for the docs and error messages.
        rgb_only: defined on RGB images (N, 3, H, W) only; other channel counts are refused.
    """

    name: str
    family: str
    apply: ApplyFn
    prepare: PrepareFn = _no_state
    random: bool = False
    intensity: Callable[[float], Any] | None = None
    intensity_meaning: str = ""
    rgb_only: bool = False

    @property
    def table(self) -> SeverityTable:
        """The severity table (with its source)."""
        return TABLES[self.name]

    def level(self, severity: int | None = None, intensity: float | None = None) -> Any:
        """The level for ``severity`` (1..5) or for a continuous ``intensity``; exactly one is given."""
        if (severity is None) == (intensity is None):
            raise ConfigError(f"corruption {self.name!r}: give exactly one of `severity` and `intensity`")
        if severity is not None:
            return self.table.at(severity)
        if self.intensity is None:
            raise fail("intensity", f"given only for the unstructured noises ({', '.join(INTENSITY_NAMES)})", intensity)
        return self.intensity(check_nonneg("intensity", intensity))

    def keys(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor | None:
        """One key per example drawn from ``generator`` (``None`` for a deterministic corruption)."""
        return example_keys(n, generator, device) if self.random else None

    def __call__(
        self,
        x: torch.Tensor,
        severity: int | None = None,
        *,
        intensity: float | None = None,
        generator: torch.Generator | None = None,
        clip: bool = True,
    ) -> torch.Tensor:
        level = self.level(severity, intensity)
        check_images(x)
        if self.rgb_only and x.shape[1] != 3:
            raise ConfigError(f"`x` must be RGB images (N, 3, H, W) for {self.name}, got {x.shape[1]} channel(s)")
        if not len(x):  # nothing to corrupt (and some ops, e.g. grid_sample, reject an empty batch)
            return x.clone()
        # Half-precision images are corrupted in float32 and rounded back at the end: the random numbers and
        # the painted lines' pixel indices are computed in the image's dtype and need float32's range and
        # resolution (in float16 the 24-bit uniforms overflow to inf; in bfloat16 indices round off the image).
        work = x.float() if torch.finfo(x.dtype).bits < 32 else x
        with torch.no_grad():
            state = self.prepare(work, self.keys(len(x), generator, x.device))
            out = self.apply(work, level, state)
            out = out.clamp(0.0, 1.0) if clip else out
            return out.to(x.dtype)


CORRUPTIONS: Registry[Corruption] = Registry("corruption", group="ninr.corruptions")
RGB_CORRUPTIONS: Registry[Corruption] = Registry("rgb-corruption")
INTENSITY_NAMES: list[str] = []


def register(
    name: str,
    family: str,
    *,
    prepare: PrepareFn = _no_state,
    random: bool = False,
    intensity: Callable[[float], Any] | None = None,
    intensity_meaning: str = "",
    rgb_only: bool = False,
) -> Callable[[ApplyFn], ApplyFn]:
    """Decorator registering ``apply`` as corruption ``name`` (its docstring's first line is the summary).

    ``rgb_only`` corruptions go to :data:`RGB_CORRUPTIONS`, the others to :data:`CORRUPTIONS`; a name is
    taken once across both.
    """
    if family not in FAMILIES:
        raise fail("family", f"one of {list(FAMILIES)}", family)
    if name not in TABLES:
        raise ConfigError(f"corruption {name!r} has no severity table in ninr.robustness.severities")

    def deco(apply: ApplyFn) -> ApplyFn:
        spec = Corruption(name, family, apply, prepare, random, intensity, intensity_meaning, rgb_only)
        other = CORRUPTIONS if rgb_only else RGB_CORRUPTIONS
        if name in other:
            raise ConfigError(f"corruption {name!r} is already registered in the {other.kind} registry")
        (RGB_CORRUPTIONS if rgb_only else CORRUPTIONS).add(name, spec, doc=apply.__doc__)
        if intensity is not None:
            INTENSITY_NAMES.append(name)
        return apply

    return deco


def get_corruption(name: str) -> Corruption:
    """The corruption called ``name`` in either registry (``_`` accepted for ``-``); a miss suggests close names."""
    key = name.replace("_", "-") if isinstance(name, str) else name
    if key in CORRUPTIONS:
        return CORRUPTIONS.get(key)
    if key in RGB_CORRUPTIONS:
        return RGB_CORRUPTIONS.get(key)
    known = [*CORRUPTIONS.names(), *RGB_CORRUPTIONS.names()]
    hint = did_you_mean(key, known) if isinstance(key, str) else ""
    raise UnknownNameError(f"unknown corruption {key!r}{hint} (known: {', '.join(sorted(known))})")


def check_images(x: Any, name: str = "x") -> torch.Tensor:
    """A floating tensor (N, C, H, W) with finite values in [0, 1]."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4:
        what = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise fail(name, "a floating tensor (N, C, H, W)", what)
    if x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # a NaN anywhere makes both NaN
        if not (lo >= 0.0 and hi <= 1.0):  # false for NaN, as for values out of range
            nan = int(torch.isnan(x.detach()).sum())
            what = f"{nan} NaN value(s)" if nan else f"values in [{lo:.4g}, {hi:.4g}]"
            raise ConfigError(f"`{name}` must be images with finite values in [0, 1], got {what}")
    return x


def check_labels(y: Any, n: int, name: str = "y") -> torch.Tensor:
    """Class labels of ``n`` examples: an int64 tensor of shape (n,); the message names a wrong dtype or shape."""
    rule = f"an int64 tensor of shape ({n},)"
    if not isinstance(y, torch.Tensor):
        raise fail(name, rule, type(y).__name__)
    if y.dtype != torch.int64 or tuple(y.shape) != (n,):
        dtype = str(y.dtype).removeprefix("torch.")
        raise ConfigError(f"`{name}` must be {rule}, got a tensor of dtype {dtype} and shape {tuple(y.shape)}")
    return y


def corrupt(
    x: torch.Tensor,
    name: str,
    severity: int | None = None,
    *,
    intensity: float | None = None,
    generator: torch.Generator | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """Corrupt a batch of images with a registered corruption at a severity (1..5) or a noise std.

    Deterministic given ``generator`` (one draw per example, in order), and a batch equals its examples
    corrupted one at a time with the same generator. ``x`` is not modified.

    Args:
        x: images (N, C, H, W) in [0, 1], any floating dtype and device.
        name: a name in :data:`CORRUPTIONS` (``ninr list corruptions``).
        severity: 1..5, the level from the corruption's cited table.
        intensity: instead of ``severity``, for the unstructured noises: the std of (corrupted - clean)
            before clipping (see the corruption's ``intensity_meaning``).
        generator: the random stream (``None``: torch's global generator).
        clip: clip the result to [0, 1] (``False`` exposes the noise before clipping).

    Returns:
        A new tensor with the shape, dtype and device of ``x``.

    Shape:
        (N, C, H, W) -> (N, C, H, W).

    Example:
        >>> x = torch.full((2, 1, 28, 28), 0.5)
        >>> y = corrupt(x, "gaussian-noise", 3, generator=torch.Generator().manual_seed(0))
        >>> y.shape, bool((y - x).abs().max() > 0)
        (torch.Size([2, 1, 28, 28]), True)
    """
    return get_corruption(name)(x, severity, intensity=intensity, generator=generator, clip=clip)
