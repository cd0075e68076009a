"""Thin modules over the functional core: noise injection nodes and noise modes."""

from ninr.nn.attach import AttachedNode, AttachReport, attach_nins, detach_nins, nin_nodes, niws
from ninr.nn.modes import NoiseModule, force_noise, noise_modules
from ninr.nn.nin import NINConv2d, NINLinear, NoiseInjectionNode
from ninr.nn.noise_layers import ActivationNoise, InputNoise, NoiseDropout, OutputNoise, WeightNoise

__all__ = [
    "ActivationNoise",
    "AttachReport",
    "AttachedNode",
    "InputNoise",
    "NINConv2d",
    "NINLinear",
    "NoiseDropout",
    "NoiseInjectionNode",
    "NoiseModule",
    "OutputNoise",
    "WeightNoise",
    "attach_nins",
    "detach_nins",
    "force_noise",
    "nin_nodes",
    "niws",
    "noise_modules",
]
