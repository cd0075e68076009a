"""Regularization methods selectable by name: ``ninr.methods.get(NAME)(...)``.

Registered: ``none``, ``l2``, ``dropout`` (baselines); ``in-ninr``, ``full-ninr`` (NINR);
``cdt``, ``input-noise``, ``activation-noise``, ``weight-noise``, ``gradient-noise`` (the
noise-injection family). ``ninr list methods`` shows them; docs/methods.md documents every parameter.
"""

from ninr.methods import baselines as _baselines  # noqa: F401  (registers)
from ninr.methods import gradient_noise as _gradient_noise  # noqa: F401  (registers)
from ninr.methods import ninr as _ninr  # noqa: F401  (registers)
from ninr.methods import noise_family as _noise_family  # noqa: F401  (registers)
from ninr.methods.base import (
    METHODS,
    Method,
    SetupContext,
    StepContext,
    build,
    check_compatible,
    get,
    register,
)
from ninr.methods.gradient_noise import GradientNoise

__all__ = [
    "METHODS",
    "GradientNoise",
    "Method",
    "SetupContext",
    "StepContext",
    "build",
    "check_compatible",
    "get",
    "register",
]
