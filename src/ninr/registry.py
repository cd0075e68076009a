"""Named registries of components (distributions, models, methods, ...).

Register with a decorator where the thing is defined; a duplicate name raises; a miss answers with
close matches and the full list. The CLI's ``ninr list`` and parametrized tests read the same
registries, so a new component is discoverable and tested the moment it exists.

Plugins. A registry built with ``group="ninr.methods"`` (say) also takes components from other installed
packages through :mod:`importlib.metadata` entry points of that group. An entry point's value is either

* a module, ``"my_package.methods"``: importing it registers its components, as ninr's own modules do
  with decorators (the entry point's name is only a label), or
* an object, ``"my_package.models:tiny_cnn"``: it is registered under the entry point's name (for a class
  or function that does not register itself). An object with a string ``name`` attribute (a method class,
  a :class:`~ninr.robustness.corruptions.base.Corruption`) must carry the entry point's name there.

A corruption plugin adds its severity table to :data:`ninr.robustness.severities.TABLES` before it registers.

Loading is lazy and happens once per registry: the first time it is asked for a name it does not know, or
for its full list (:meth:`Registry.names`, :meth:`~Registry.describe`, iteration, ``len``, and ``in`` for
a name not yet known), it loads its group's entry points, then answers. :func:`load_plugins` loads every
registry's group at once (``ninr list`` does). A plugin that fails to load (import error, missing
attribute, bad registration) is skipped with a :class:`PluginWarning` naming the distribution, the entry
point and the error; a plugin that registers a name already taken raises :class:`DuplicateNameError`
naming the plugin.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from ninr.errors import ConfigError, UnknownNameError, did_you_mean

T = TypeVar("T")

_ALL: dict[str, Registry[object]] = {}

_LOADING: list[str] = []
"""Descriptions of the plugins being loaded, innermost last (a plugin's import may load another group)."""


class DuplicateNameError(ConfigError):
    """A name is registered twice in one registry."""


class PluginWarning(UserWarning):
    """A plugin's entry point could not be loaded; ninr goes on without it."""


def _describe(ep: EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
    return f"plugin {ep.name!r} = {ep.value!r} (entry-point group {ep.group!r}, distribution {dist!r})"


class Registry(Generic[T]):
    """A mapping from names to components of one kind.

    Args:
        kind: what a component is, in messages and ``ninr list`` (``"method"``).
        group: the entry-point group whose plugins add to this registry (``"ninr.methods"``), or ``None``.

    Example:
        >>> shapes = Registry[int]("shape")
        >>> @shapes.register("square")
        ... def square() -> int:
        ...     return 4
        >>> shapes.names()
        ['square']
    """

    def __init__(self, kind: str, *, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}
        self._plugins_loaded = group is None
        _ALL[kind] = self  # type: ignore[assignment]

    def register(self, name: str, *, doc: str | None = None) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def deco(obj: T) -> T:
            self.add(name, obj, doc=doc)
            return obj

        return deco

    def add(self, name: str, obj: T, *, doc: str | None = None) -> None:
        """Register ``obj`` under ``name``; duplicates raise (naming the plugin that registers it again)."""
        if name in self._items:
            by = f"; {_LOADING[-1]} registers it again" if _LOADING else ""
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered{by}")
        self._items[name] = obj
        text = doc if doc is not None else (getattr(obj, "__doc__", None) or "")
        self._docs[name] = text.strip().splitlines()[0] if text.strip() else ""

    def load_plugins(self) -> None:
        """Load this registry's entry-point group, once; later calls do nothing."""
        if self._plugins_loaded or self.group is None:
            return
        self._plugins_loaded = True  # first, so that a plugin looking names up does not load again
        for ep in entry_points(group=self.group):
            self._load_entry_point(ep)

    def _load_entry_point(self, ep: EntryPoint) -> None:
        what = _describe(ep)
        _LOADING.append(what)
        try:
            obj = ep.load()  # imports the module, which may register components itself
            if ep.attr is not None and self._items.get(ep.name) is not obj:
                own = getattr(obj, "name", None)
                if isinstance(own, str) and own != ep.name:
                    raise ConfigError(f"the object's `name` is {own!r}, not the entry point's name {ep.name!r}")
                self.add(ep.name, obj)
        except DuplicateNameError:
            raise
        except Exception as exc:
            warnings.warn(
                f"ninr skipped {what}: it failed to load with {type(exc).__name__}: {exc}", PluginWarning, stacklevel=2
            )
        finally:
            _LOADING.pop()

    def get(self, name: str) -> T:
        """The component called ``name``; a miss loads the plugins, then raises with close matches and the full list."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            pass
        if name in self:  # loads the plugins first
            return self._items[name]
        hint = did_you_mean(name, self._items)
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})")

    def names(self) -> list[str]:
        """Registered names, sorted (plugins included)."""
        self.load_plugins()
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        """Name to one-line summary."""
        return {n: self._docs[n] for n in self.names()}

    def __contains__(self, name: object) -> bool:
        try:
            if name in self._items:
                return True
        except TypeError:
            return False
        self.load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._items)


def registries() -> dict[str, Registry[object]]:
    """Every registry created so far, by kind."""
    return dict(_ALL)


def load_plugins() -> None:
    """Load the entry-point plugins of every registry, each group once (including registries a plugin creates)."""
    while pending := [r for r in _ALL.values() if not r._plugins_loaded]:
        for registry in pending:
            registry.load_plugins()
