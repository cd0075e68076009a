"""The linear-regression model of NIN dynamics: closed forms, and its simulation with ninr's pieces.

See docs/dynamics.md for the derivation.
"""

from ninr.dynamics.theory.boundaries import measure_boundaries
from ninr.dynamics.theory.linear import (
    LINEAR_PHASES,
    PhaseBoundaries,
    control_parameter,
    decay_rate,
    decay_time,
    mean_trajectory,
    phase_boundaries,
    second_moment_factor,
    sigma_for_k,
    stationary_variance,
)
from ninr.dynamics.theory.simulate import LinearSetup, LinearTrajectory, simulate_linear, teacher_data

__all__ = [
    "LINEAR_PHASES",
    "LinearSetup",
    "LinearTrajectory",
    "PhaseBoundaries",
    "control_parameter",
    "decay_rate",
    "decay_time",
    "mean_trajectory",
    "measure_boundaries",
    "phase_boundaries",
    "second_moment_factor",
    "sigma_for_k",
    "simulate_linear",
    "stationary_variance",
    "teacher_data",
]
