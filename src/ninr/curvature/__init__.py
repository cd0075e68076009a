"""Curvature of a model's loss: Hessian-vector products, Lanczos, power iteration, Hutchinson's and Hutch++'s
trace, top-k eigenpairs, the spectral density (stochastic Lanczos quadrature), curvature averaged over batches.

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
from ninr.curvature.krylov import LanczosRun, LinearOperator, lanczos_run
from ninr.curvature.replay import NoiseMap, noise_shapes, probe_noise, replaying
from ninr.curvature.spectrum import (
    AveragedOperator,
    EigenPairs,
    SpectralDensity,
    hutchpp_trace,
    spectral_density,
    top_eigenpairs,
)

__all__ = [
    "AveragedOperator",
    "EigenPairs",
    "EigenResult",
    "HessianOperator",
    "LanczosRun",
    "LinearOperator",
    "LossFn",
    "NoiseMap",
    "SpectralDensity",
    "TraceResult",
    "get_loss",
    "half_mse",
    "hutchinson_trace",
    "hutchpp_trace",
    "lanczos",
    "lanczos_run",
    "nin_block_names",
    "noise_shapes",
    "power_iteration",
    "probe_noise",
    "replaying",
    "select_params",
    "spectral_density",
    "top_eigenpairs",
    "top_eigenvalue",
]
