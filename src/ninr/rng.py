"""Explicit, replayable randomness.

The library never seeds global state. Every random stream is a ``torch.Generator`` derived from
``(seed, component name)``, so adding a probe or an evaluation never shifts the training noise.
Entry points (the CLI, ``run(config)``) choose the seed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch

_MASK63 = (1 << 63) - 1


def derive_seed(seed: int, *names: str | int) -> int:
    """A 63-bit seed that depends only on ``seed`` and the names, stable across processes and versions.

    Example:
        >>> derive_seed(0, "nin", "fc1") == derive_seed(0, "nin", "fc1")
        True
    """
    text = "/".join([str(int(seed)), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & _MASK63


def make_generator(seed: int, *names: str | int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on ``device`` seeded with ``derive_seed(seed, *names)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *names))
    return gen


@contextlib.contextmanager
def scoped_global_seed(seed: int) -> Iterator[None]:
    """Seed torch's global RNG inside the block and restore it afterwards.

    For code we do not own that draws from the global stream (``nn.Linear``'s initialisation,
    ``nn.Dropout``): the run is reproducible and the caller's global state is left as it was.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
