"""Named registries of components (distributions, models, methods, ...).

Register with a decorator where the thing is defined; a duplicate name raises; a miss answers with
close matches and the full list. The CLI's ``ninr list`` and parametrized tests read the same
registries, so a new component is discoverable and tested the moment it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ninr.errors import ConfigError, UnknownNameError, did_you_mean

T = TypeVar("T")

_ALL: dict[str, Registry[object]] = {}


class Registry(Generic[T]):
    """A mapping from names to components of one kind.

    Example:
        >>> shapes = Registry[int]("shape")
        >>> @shapes.register("square")
        ... def square() -> int:
        ...     return 4
        >>> shapes.names()
        ['square']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}
        _ALL[kind] = self  # type: ignore[assignment]

    def register(self, name: str, *, doc: str | None = None) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def deco(obj: T) -> T:
            self.add(name, obj, doc=doc)
            return obj

        return deco

    def add(self, name: str, obj: T, *, doc: str | None = None) -> None:
        """Register ``obj`` under ``name``; duplicates raise."""
        if name in self._items:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        text = doc if doc is not None else (getattr(obj, "__doc__", None) or "")
        self._docs[name] = text.strip().splitlines()[0] if text.strip() else ""

    def get(self, name: str) -> T:
        """The component called ``name``; a miss raises with close matches and the full list."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            hint = did_you_mean(name, self._items)
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        """Name to one-line summary."""
        return {n: self._docs[n] for n in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def registries() -> dict[str, Registry[object]]:
    """Every registry created so far, by kind."""
    return dict(_ALL)
