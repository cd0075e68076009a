"""ninr's run hooks; importing this package registers them (third-party hooks: entry-point group ``ninr.hooks``)."""

from ninr.studies.hooks import phase, robustness

__all__ = ["phase", "robustness"]
