"""Curvature of a model's loss: Hessian-vector products, Lanczos, power iteration, Hutchinson's trace.

Noise-carrying modules are frozen for a Hessian by replaying one recorded draw (:func:`replaying`), so the
operator is the Hessian of one fixed noisy loss. This package sits below ``methods`` because the NINR
methods' sigma calibration (:mod:`ninr.methods.calibrate`) needs the top eigenvalue of a node's block.
"""

from ninr.curvature.hessian import (
    EigenResult,
    HessianOperator,
    LossFn,
    TraceResult,
    get_loss,
    half_mse,
    hutchinson_trace,
    lanczos,
    nin_block_names,
    power_iteration,
    select_params,
    top_eigenvalue,
)
from ninr.curvature.replay import NoiseMap, noise_shapes, probe_noise, replaying

__all__ = [
    "EigenResult",
    "HessianOperator",
    "LossFn",
    "NoiseMap",
    "TraceResult",
    "get_loss",
    "half_mse",
    "hutchinson_trace",
    "lanczos",
    "nin_block_names",
    "noise_shapes",
    "power_iteration",
    "probe_noise",
    "replaying",
    "select_params",
    "top_eigenvalue",
]
