"""Probes of NIN training dynamics: NIW and loss probes, Hessian estimates, decay fits, phases, calibration.

Every probe only reads a run (its own generators, modes restored), so attaching one leaves the
trajectory bit for bit unchanged. See docs/dynamics.md for the theory these measure.
"""

from ninr.probes.calibrate import PHASE_TARGET_K, Calibration, calibrate_sigma, nin_curvature, sigma_for_phase
from ninr.probes.decay import DecayFit, fit_decay
from ninr.probes.fixed_noise import FixedExampleNoise
from ninr.probes.hessian import (
    HessianOperator,
    hutchinson_trace,
    lanczos,
    power_iteration,
    select_params,
    top_eigenvalue,
)
from ninr.probes.implicit import (
    check_implicit_regularization,
    implicit_regularizer,
    nin_quadratic_form,
    noise_averaged_loss,
)
from ninr.probes.niw import CurvatureProbe, LossProbe, NIWProbe, merge_rows
from ninr.probes.noise import probe_noise, replaying
from ninr.probes.phases import PHASES, NodesPhase, PhaseResult, classify_nodes, classify_phase, oscillates

__all__ = [
    "PHASES",
    "PHASE_TARGET_K",
    "Calibration",
    "CurvatureProbe",
    "DecayFit",
    "FixedExampleNoise",
    "HessianOperator",
    "LossProbe",
    "NIWProbe",
    "NodesPhase",
    "PhaseResult",
    "calibrate_sigma",
    "check_implicit_regularization",
    "classify_nodes",
    "classify_phase",
    "fit_decay",
    "hutchinson_trace",
    "implicit_regularizer",
    "lanczos",
    "merge_rows",
    "nin_curvature",
    "nin_quadratic_form",
    "noise_averaged_loss",
    "oscillates",
    "power_iteration",
    "probe_noise",
    "replaying",
    "select_params",
    "sigma_for_phase",
    "top_eigenvalue",
]
