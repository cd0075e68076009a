"""Models registered by name: ``mlp``, ``cnn``, ``linear``, ``resnet18``."""

from ninr.models import cnn as _cnn  # noqa: F401  (registers)
from ninr.models import mlp as _mlp  # noqa: F401  (registers)
from ninr.models import resnet as _resnet  # noqa: F401  (registers)
from ninr.models.registry import MODELS, ModelBuilder, build_model

__all__ = ["MODELS", "ModelBuilder", "build_model"]
