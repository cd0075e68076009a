"""NIN training dynamics: NIW and loss probes, decay fits, phase classification, the implicit regulariser.

Every probe only reads a run (its own generators, modes restored), so attaching one leaves the
trajectory bit for bit unchanged. See docs/dynamics.md for the theory these measure.
"""

from ninr.dynamics.decay import DecayFit, fit_decay
from ninr.dynamics.fixed_noise import FixedExampleNoise
from ninr.dynamics.implicit import (
    check_implicit_regularization,
    implicit_regularizer,
    nin_quadratic_form,
    noise_averaged_loss,
)
from ninr.dynamics.niw import CurvatureProbe, LossProbe, NIWProbe, merge_rows
from ninr.dynamics.phases import PHASES, NodeSeries, NodesPhase, PhaseResult, ar1, classify, classify_nodes

__all__ = [
    "PHASES",
    "CurvatureProbe",
    "DecayFit",
    "FixedExampleNoise",
    "LossProbe",
    "NIWProbe",
    "NodeSeries",
    "NodesPhase",
    "PhaseResult",
    "ar1",
    "check_implicit_regularization",
    "classify",
    "classify_nodes",
    "fit_decay",
    "implicit_regularizer",
    "merge_rows",
    "nin_quadratic_form",
    "noise_averaged_loss",
]
