"""Robustness evaluation: corruptions by severity, adversarial attacks, domain shift, tidy records.

* :func:`corrupt` (``ninr.robustness.corruptions``): 28 torch-native corruptions of batched images (the MNIST-C
  and ImageNet-C sets; ``saturate`` in a registry of its own for RGB images, ``RGB_CORRUPTIONS``), each with a
  cited severity table (:mod:`ninr.robustness.severities`); the noises also take a noise std.
* :mod:`ninr.robustness.attacks`: FGSM, PGD, APGD-CE and the gradient-free Square attack (L-inf, L2), many
  epsilons per call, EOT for noisy models.
* :mod:`ninr.robustness.shift`: shifted test sets and other data sets of the same shape.
* :func:`certify` (:mod:`ninr.robustness.certify`): certified L2 radii by randomized smoothing (Cohen et al. 2019).
* :mod:`ninr.robustness.calibration`: expected calibration error, negative log-likelihood, Brier score.
* :func:`evaluate`: records for a suite (:mod:`ninr.robustness.suites`), with train-mode and
  randomized-model checks; :func:`format_table` and :mod:`ninr.robustness.plots` present them.
"""

from ninr.robustness.attacks import ATTACKS, apgd, attack, fgsm, pgd, square
from ninr.robustness.calibration import brier_score, expected_calibration_error, negative_log_likelihood
from ninr.robustness.certify import ABSTAIN, Certificates, certified_accuracy, certify
from ninr.robustness.corruptions import CORRUPTIONS, Corruption, corrupt, get_corruption
from ninr.robustness.evaluate import RandomizedModelWarning, TrainModeWarning, evaluate, outputs_differ
from ninr.robustness.severities import TABLES, SeverityTable
from ninr.robustness.shift import SHIFTS, shift_split
from ninr.robustness.suites import SUITES, AttackSpec, CertifySpec, Suite, get_suite
from ninr.robustness.table import format_table

__all__ = [
    "ABSTAIN",
    "ATTACKS",
    "CORRUPTIONS",
    "SHIFTS",
    "SUITES",
    "TABLES",
    "AttackSpec",
    "Certificates",
    "CertifySpec",
    "Corruption",
    "RandomizedModelWarning",
    "SeverityTable",
    "Suite",
    "TrainModeWarning",
    "apgd",
    "attack",
    "brier_score",
    "certified_accuracy",
    "certify",
    "corrupt",
    "evaluate",
    "expected_calibration_error",
    "fgsm",
    "format_table",
    "get_corruption",
    "get_suite",
    "negative_log_likelihood",
    "outputs_differ",
    "pgd",
    "shift_split",
    "square",
]
