"""Models of NIN dynamics with closed forms: the linear-regression model (one layer: closed forms, and its
simulation with ninr's pieces) and the two-layer linear toy that catapults (:mod:`ninr.dynamics.theory.two_layer`:
its map, boundaries and a vectorised simulation).

See docs/dynamics.md (sections 1, 2 and 2a) for the derivations.
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
from ninr.dynamics.theory.two_layer import (
    LINEAR2_PHASES,
    TwoLayerBoundaries,
    TwoLayerSetup,
    TwoLayerTrajectories,
    map_trajectory,
    measure_two_layer_boundaries,
    simulate_two_layer,
    two_layer_trajectories,
)

__all__ = [
    "LINEAR2_PHASES",
    "LINEAR_PHASES",
    "LinearSetup",
    "LinearTrajectory",
    "PhaseBoundaries",
    "TwoLayerBoundaries",
    "TwoLayerSetup",
    "TwoLayerTrajectories",
    "control_parameter",
    "decay_rate",
    "decay_time",
    "map_trajectory",
    "mean_trajectory",
    "measure_boundaries",
    "measure_two_layer_boundaries",
    "phase_boundaries",
    "second_moment_factor",
    "sigma_for_k",
    "simulate_linear",
    "simulate_two_layer",
    "stationary_variance",
    "teacher_data",
    "two_layer_trajectories",
]
