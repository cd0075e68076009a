"""Robustness evaluation: corruptions by severity, adversarial attacks, domain shift, tidy records.

* :func:`corrupt` (``ninr.robustness.corruptions``): 22 torch-native corruptions of batched images, each
  with a cited severity table (:mod:`ninr.robustness.severities`); the noises also take a noise std.
* :mod:`ninr.robustness.attacks`: FGSM and PGD (L-inf, L2), many epsilons per call, EOT for noisy models.
* :mod:`ninr.robustness.shift`: shifted test sets and other data sets of the same shape.
* :func:`evaluate`: records for a suite (:mod:`ninr.robustness.suites`), with train-mode and
  randomized-model checks; :func:`format_table` and :mod:`ninr.robustness.plots` present them.
"""

from ninr.robustness.attacks import ATTACKS, attack, fgsm, pgd
from ninr.robustness.corruptions import CORRUPTIONS, Corruption, corrupt, get_corruption
from ninr.robustness.evaluate import RandomizedModelWarning, TrainModeWarning, evaluate, outputs_differ
from ninr.robustness.severities import TABLES, SeverityTable
from ninr.robustness.shift import SHIFTS, shift_split
from ninr.robustness.suites import SUITES, AttackSpec, Suite, get_suite
from ninr.robustness.table import format_table

__all__ = [
    "ATTACKS",
    "CORRUPTIONS",
    "SHIFTS",
    "SUITES",
    "TABLES",
    "AttackSpec",
    "Corruption",
    "RandomizedModelWarning",
    "SeverityTable",
    "Suite",
    "TrainModeWarning",
    "attack",
    "corrupt",
    "evaluate",
    "fgsm",
    "format_table",
    "get_corruption",
    "get_suite",
    "outputs_differ",
    "pgd",
    "shift_split",
]
