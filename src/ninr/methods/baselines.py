"""Baselines of the comparison table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ninr.methods.base import Method, register


@register
@dataclass(frozen=True)
class NoMethod(Method):
    """Plain SGD, no regularization."""

    name: ClassVar[str] = "none"
