"""The functional core: pure tensor operations that every module and method calls."""

from ninr.functional.nin import ConvFn, nin_additive, nin_conv2d_channel, nin_linear
from ninr.functional.noise import DISTRIBUTIONS, Sampler, gaussian, impulse, laplace, sample, uniform
from ninr.functional.perturb import (
    add_gradient_noise,
    add_noise,
    corrupt_batch,
    dropout,
    gradient_noise_std,
    perturb_tensors,
)
from ninr.functional.schedules import SCHEDULES, Schedule, scheduled_scale

__all__ = [
    "DISTRIBUTIONS",
    "SCHEDULES",
    "ConvFn",
    "Sampler",
    "Schedule",
    "add_gradient_noise",
    "add_noise",
    "corrupt_batch",
    "dropout",
    "gaussian",
    "gradient_noise_std",
    "impulse",
    "laplace",
    "nin_additive",
    "nin_conv2d_channel",
    "nin_linear",
    "perturb_tensors",
    "sample",
    "scheduled_scale",
    "uniform",
]
