"""Regularization methods selectable by name: ``ninr.methods.get(NAME)(...)``."""

from ninr.methods import baselines as _baselines  # noqa: F401  (registers)
from ninr.methods import ninr as _ninr  # noqa: F401  (registers)
from ninr.methods.base import METHODS, Method, SetupContext, StepContext, build, get, register

__all__ = ["METHODS", "Method", "SetupContext", "StepContext", "build", "get", "register"]
