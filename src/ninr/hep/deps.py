"""Optional dependencies of ``ninr.hep``, imported on first use with a message naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from ninr.errors import NinrError

EXTRA_HINT = "install the `hep` extra: pip install 'ninr[hep]' (pythia8mc==8.317.2, h5py, uproot, awkward)"


class MissingDependencyError(NinrError, ImportError):
    """An optional package that this feature needs is not installed."""


def require(*modules: str, what: str) -> ModuleType:
    """Import the first importable module of ``modules`` (alternative import names), or raise naming the extra.

    Args:
        modules: import names to try in order (``pythia8mc`` installs ``pythia8mc``; a source build installs
            ``pythia8``).
        what: the feature that needs it, for the message.
    """
    for name in modules:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError(f"{what} needs {' or '.join(modules)}, which is not importable; {EXTRA_HINT}")


def pythia8() -> ModuleType:
    """The Pythia 8 Python module (``pythia8mc`` wheel, or ``pythia8`` from a source build)."""
    return require("pythia8mc", "pythia8", what="event generation")


def h5py() -> ModuleType:
    """The ``h5py`` module."""
    return require("h5py", what="HDF5 data sets")


def uproot() -> ModuleType:
    """The ``uproot`` module."""
    return require("uproot", what="reading ROOT files")
