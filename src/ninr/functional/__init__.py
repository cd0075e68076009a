"""The functional core: pure tensor operations that every module and method calls."""

from ninr.functional.nin import ConvFn, nin_additive, nin_conv2d_channel, nin_linear
from ninr.functional.noise import DISTRIBUTIONS, Sampler, gaussian, sample, uniform

__all__ = [
    "DISTRIBUTIONS",
    "ConvFn",
    "Sampler",
    "gaussian",
    "nin_additive",
    "nin_conv2d_channel",
    "nin_linear",
    "sample",
    "uniform",
]
