"""Noise modes: noise is on in ``train()`` and off in ``eval()``, unless forced.

Every noise-carrying module derives from :class:`NoiseModule`. :func:`force_noise` turns all of a
model's noise on (or off) regardless of mode, which is how a stochastic model is evaluated as such.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ninr.errors import fail
from ninr.rng import derive_seed


class NoiseModule(nn.Module):
    """Base class of modules that inject noise; owns a replayable generator per device.

    ``seed=None`` draws from torch's global generator; an integer seed gives the module its own
    stream, so a forward pass can be replayed with :meth:`reseed` or :meth:`get_rng_state`.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        self.force: bool | None = None
        self._seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    @property
    def noise_active(self) -> bool:
        """Whether the next forward pass injects noise."""
        return self.training if self.force is None else self.force

    @property
    def seed(self) -> int | None:
        """The seed of this module's own stream, or ``None`` for torch's global generator."""
        return self._seed

    def reseed(self, seed: int | None) -> None:
        """Restart this module's stream from ``seed`` (``None``: use the global generator)."""
        self._seed = seed
        self._generators.clear()

    def generator(self, device: torch.device) -> torch.Generator | None:
        """This module's generator on ``device`` (created lazily from the seed)."""
        if self._seed is None:
            return None
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(derive_seed(self._seed, "device", str(device.type)))
            self._generators[device] = gen
        return gen

    def get_rng_state(self) -> dict[torch.device, torch.Tensor]:
        """Snapshot of every generator this module owns (for an exact replay)."""
        return {dev: g.get_state() for dev, g in self._generators.items()}

    def set_rng_state(self, state: dict[torch.device, torch.Tensor]) -> None:
        """Restore a snapshot taken by :meth:`get_rng_state`."""
        for dev, s in state.items():
            gen = self.generator(dev)
            if gen is None:
                raise fail("state", "restorable only on a seeded module", "seed=None")
            gen.set_state(s)


def noise_modules(model: nn.Module) -> list[NoiseModule]:
    """Every :class:`NoiseModule` inside ``model`` (including itself)."""
    return [m for m in model.modules() if isinstance(m, NoiseModule)]


@contextlib.contextmanager
def force_noise(model: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """Force every noise module in ``model`` on (or off) inside the block, whatever its mode.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 2))
        >>> with force_noise(model):
        ...     pass
    """
    mods = noise_modules(model)
    saved = [m.force for m in mods]
    for m in mods:
        m.force = on
    try:
        yield model
    finally:
        for m, s in zip(mods, saved, strict=True):
            m.force = s
