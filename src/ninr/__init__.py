"""ninr: noise injection for neural networks, with Noise Injection Node Regularization at its heart.

The public API (see README.md):

    >>> import ninr
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    >>> report = ninr.attach_nins(model, "input", sigma=1.0, seed=0)
"""

from ninr.errors import ConfigError, DataError, NinrError
from ninr.nn import NoiseInjectionNode, attach_nins, detach_nins, force_noise, nin_nodes, niws
from ninr.version import __version__

__all__ = [
    "ConfigError",
    "DataError",
    "NinrError",
    "NoiseInjectionNode",
    "__version__",
    "attach_nins",
    "detach_nins",
    "force_noise",
    "nin_nodes",
    "niws",
]
