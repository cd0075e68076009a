"""Run hook ``robustness``: after a run trains, its model is evaluated on corrupted test images.

``hooks = ["robustness"]`` in a study section (the comparison table's) evaluates every trained model,
in the same worker and right after training, so the grid is trained once and no checkpoint has to be
stored: clean accuracy, Gaussian noise on a grid of noise stds, and the MNIST-C corruptions at
severities 1..5 (:func:`ninr.robustness.evaluate`). Each result becomes one tidy record appended to the
run's records::

    {"kind": "robustness", "condition": "gaussian-noise", "family": "noise", "severity": None,
     "intensity": 0.3, "metric": "accuracy", "value": 0.61, "noise": "off", "n": 2000, "epoch": 1,
     "step": 400, "run_id": ..., "arch": "FC", "label": "in-NINR (Decay)", "seed": 0, "final": False, ...}

Each condition also gets calibration records (``metric`` ``ece``, ``nll``, ``brier``, after the accuracy
records). Settings live in ``[<part>.options.robustness]`` (they join the run id, like every option)::

    [table.options.robustness]
    limit = 2000                                   # the first N test images (default: all)
    stds = [0.05, 0.1, ...]                        # Gaussian noise stds, > 0 (default 0.05 .. 0.6 step 0.05)
    corruptions = "mnist-c"                        # or a list of names (ninr list corruptions); [] for none
    severities = [1, 2, 3, 4, 5]
    attacks = ["fgsm", { name = "pgd", budget = 10 }]  # names (ninr list attacks) or tables {name, norm, budget}
    epsilons = [0.01, 0.03, 0.05, 0.1]             # attack budgets (default: these, L-inf on [0, 1] pixels)
    attack_limit = 500                             # attack the first N of the evaluated images (default: all)
    shifts = "all"                                 # or a list of names (ninr list shifts); default none
    certify = true                                 # or a table, below; leave it out for no certification

    [table.options.robustness.certify]             # randomized smoothing (ninr.robustness.certify)
    sigma = 0.25                                   # or sigmas = [0.12, 0.25, 0.5] (default [0.25])
    radii = [0.0, 0.25, 0.5, 1.0]                  # L2 radii of the certified-accuracy records (default 0 .. 1.5)
    n0 = 100                                       # selection samples per image
    n = 10000                                      # estimation samples per image
    alpha = 0.001                                  # failure probability of each certificate
    limit = 500                                    # certify the first N of the evaluated images

Attacks (``family`` ``"attack"``, ``condition`` the attack's label such as ``"fgsm"`` or ``"pgd-10"``,
``epsilon`` the budget) run on the model with its noise off, like every other condition; a PGD step costs a
forward and a backward pass per image and epsilon, so ``attack_limit`` can attack fewer images than the rest
of the suite evaluates (the same first images for every run). Shifted test sets (``family`` ``"shift"``) are
:data:`ninr.robustness.shift.SHIFTS`. The keys ``attacks``, ``epsilons``, ``attack_limit`` and ``shifts`` are
absent from a section that does not use them, so its run ids do not move.

``certify = true`` is the ``certify`` suite's specification (:class:`ninr.robustness.CertifySpec`'s defaults:
sigma 0.25, n0 100, n 10,000, alpha 0.001, 500 images, radii 0, 0.1, ..., 1.5). It adds, per smoothing
sigma, the records ``condition = "certify"``: ``certified-accuracy`` at each radius (``intensity`` = sigma,
``epsilon`` = radius), ``abstain-rate`` and ``average-radius``, with ``draws`` = n, ``n0`` and ``alpha``; the
report draws certified accuracy against the radius per method. Each certified image costs ``n0 + n`` forward
rows. The setting is absent from a section that does not certify, so that section's run ids do not move;
``certify = false`` is refused (leave the key out) because it would change the ids without changing a
record.

Determinism: every random number comes from ``derive_seed(run seed, "robustness")`` (CPU generators inside
``evaluate``; a model's noise modules are reseeded and restored), so records are identical in-process,
in a process pool and on Dask. Noise injection is a training-time regulariser, so models are evaluated
in eval mode with their noise off (``noise="off"``). A diverged run gets no robustness records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ninr.data.base import Dataset
from ninr.errors import ConfigError, check_nonneg, check_positive, check_positive_int, did_you_mean, fail
from ninr.rng import derive_seed
from ninr.robustness.evaluate import evaluate
from ninr.robustness.shift import SHIFTS
from ninr.robustness.suites import LINF_EPSILONS, AttackSpec, CertifySpec, Suite
from ninr.studies.hook import RUN_HOOKS, RunHook
from ninr.studies.records import Records
from ninr.studies.spec import RunSpec
from ninr.train.run import TrainResult

KIND = "robustness"
"""The ``kind`` field of every record this hook adds (training rows have no ``kind``)."""

MNIST_C = (
    "shot-noise",
    "impulse-noise",
    "glass-blur",
    "motion-blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted-line",
    "zigzag",
    "canny-edges",
)
"""The 15 corruptions of MNIST-C (Mu & Gilmer 2019, arXiv:1906.02337, Table 1), by their ninr names."""

NOISE_STD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 13))
"""Gaussian noise stds 0.05, 0.1, ..., 0.6 (std 0 is the clean accuracy, always recorded)."""

SEVERITIES = (1, 2, 3, 4, 5)
SETTING_KEYS = (
    "limit", "stds", "corruptions", "severities", "batch_size", "attacks", "epsilons", "attack_limit", "shifts",
    "certify",
)  # fmt: skip
ATTACK_KEYS = ("name", "norm", "budget")
ATTACK_RULE = "an attack name or a table of name, norm, budget"
CERTIFY_KEYS = ("sigma", "sigmas", "radii", "n0", "n", "alpha", "limit")
CERTIFY_RULE = "true or a table of sigma or sigmas, radii, n0, n, alpha, limit (leave it out for none)"
# Examples per forward pass (results do not depend on it): the CNN evaluates 1.4x faster in batches of 250
# than of 1000 on one CPU thread (activations stay in cache); measured 5.8 s vs 8.3 s for the quick suite.
EVAL_BATCH = 250


@dataclass(frozen=True)
class RobustnessSettings:
    """What the hook evaluates.

    Attributes:
        limit: Evaluate on the first ``limit`` test images (``None``: all). The same images for every run,
            so methods are compared on one set.
        stds: Gaussian noise stds of the noise curve (> 0).
        corruptions: Corruption names evaluated at every severity in ``severities``.
        severities: Severities in 1..5.
        batch_size: Examples per forward pass, noisy rows per pass of the certification (does not change
            results).
        attacks: Adversarial attacks, each evaluated at every budget in ``epsilons``.
        epsilons: Attack budgets (``LINF_EPSILONS`` by default).
        attack_limit: Attack the first ``attack_limit`` evaluated images (``None``: all of them).
        shifts: Shifted test sets (names in :data:`ninr.robustness.shift.SHIFTS`).
        certify: Randomized-smoothing certification of the first ``certify.examples`` evaluated images, or
            ``None``.
    """

    limit: int | None = None
    stds: tuple[float, ...] = NOISE_STD_GRID
    corruptions: tuple[str, ...] = MNIST_C
    severities: tuple[int, ...] = SEVERITIES
    batch_size: int = EVAL_BATCH
    attacks: tuple[AttackSpec, ...] = ()
    epsilons: tuple[float, ...] = LINF_EPSILONS
    attack_limit: int | None = None
    shifts: tuple[str, ...] = ()
    certify: CertifySpec | None = None

    def suite(self) -> Suite:
        """The :class:`ninr.robustness.Suite` of these settings, attacks included (validates every name)."""
        curves = ("gaussian-noise",) if self.stds else ()
        return Suite(
            corruptions=self.corruptions,
            severities=self.severities,
            curves=curves,
            intensities=self.stds,
            attacks=self.attacks,
            epsilons=self.epsilons if self.attacks else (),
            shifts=self.shifts,
            certify=self.certify,
        )

    def attack_suite(self) -> Suite | None:
        """The attacks alone, for a separate pass over the first ``attack_limit`` images; ``None`` when the
        attacks run with the rest of the suite (no ``attack_limit``) or there are none."""
        if not self.attacks or self.attack_limit is None:
            return None
        return Suite(attacks=self.attacks, epsilons=self.epsilons)

    def main_suite(self) -> Suite:
        """What the pass over all evaluated images runs: :meth:`suite`, without the attacks when they run apart."""
        full = self.suite()
        return full if self.attack_suite() is None else full.replace(attacks=(), epsilons=())

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RobustnessSettings:
        """The settings in ``options["robustness"]`` (defaults where absent), validated.

        Raises:
            ConfigError: An unknown key, a bad value or an unknown corruption (with close matches).
        """
        raw = options.get(KIND, {})
        if not isinstance(raw, Mapping):
            raise fail(f"options.{KIND}", "a table", raw)
        for key in raw:
            if key not in SETTING_KEYS:
                allowed = ", ".join(SETTING_KEYS)
                raise ConfigError(f"unknown key {key!r}{did_you_mean(key, SETTING_KEYS)} (allowed: {allowed})")
        limit, attack_limit = raw.get("limit"), raw.get("attack_limit")
        settings = cls(
            limit=None if limit is None else check_positive_int("limit", limit),
            stds=tuple(check_positive("stds", s) for s in _list("stds", raw.get("stds", NOISE_STD_GRID))),
            corruptions=_corruptions(raw.get("corruptions", MNIST_C)),
            severities=tuple(_list("severities", raw.get("severities", SEVERITIES))),
            batch_size=check_positive_int("batch_size", raw.get("batch_size", EVAL_BATCH)),
            attacks=_attacks(raw.get("attacks", [])),
            epsilons=tuple(_list("epsilons", raw.get("epsilons", LINF_EPSILONS))),
            attack_limit=None if attack_limit is None else check_positive_int("attack_limit", attack_limit),
            shifts=_shifts(raw.get("shifts", [])),
            certify=_certify(raw["certify"]) if "certify" in raw else None,
        )
        if not settings.attacks and ("epsilons" in raw or "attack_limit" in raw):
            extra = "epsilons" if "epsilons" in raw else "attack_limit"
            raise fail(
                extra, "set only with `attacks` (it would change the run ids without changing a record)", raw[extra]
            )
        settings.suite()  # unknown corruption names and severities outside 1..5 fail here
        return settings


def _list(name: str, value: Any) -> Sequence[Any]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise fail(name, "a list", value)
    if len(set(value)) != len(value):
        raise fail(name, "a list without repeats", list(value))
    return value


def _certify(value: Any) -> CertifySpec:
    """The certification of a ``certify`` setting: ``true`` (the ``certify`` suite's) or a table."""
    if value is True:
        return CertifySpec()
    if not isinstance(value, Mapping):
        raise fail("certify", CERTIFY_RULE, value)
    for key in value:
        if key not in CERTIFY_KEYS:
            allowed = ", ".join(CERTIFY_KEYS)
            raise ConfigError(f"unknown key {key!r} in `certify`{did_you_mean(key, CERTIFY_KEYS)} (allowed: {allowed})")
    default = CertifySpec()
    if "sigma" in value and "sigmas" in value:
        raise fail("certify", "a table with `sigma` or `sigmas`, not both", dict(value))
    if "sigma" in value:
        sigmas: tuple[float, ...] = (check_positive("certify.sigma", value["sigma"]),)
    else:
        sigmas = tuple(
            check_positive("certify.sigmas", s) for s in _list("certify.sigmas", value.get("sigmas", default.sigmas))
        )
    radii = tuple(check_nonneg("certify.radii", r) for r in _list("certify.radii", value.get("radii", default.radii)))
    for name, got in (("certify.sigmas", sigmas), ("certify.radii", radii)):
        if not got:
            raise fail(name, "a non-empty list", list(got))
    alpha = value.get("alpha", default.alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise fail("certify.alpha", "a number in (0, 1)", alpha)
    return CertifySpec(
        sigmas=sigmas,
        radii=radii,
        n0=check_positive_int("certify.n0", value.get("n0", default.n0)),
        n=check_positive_int("certify.n", value.get("n", default.n)),
        alpha=float(alpha),
        examples=check_positive_int("certify.limit", value.get("limit", default.examples)),
    )


def _attacks(value: Any) -> tuple[AttackSpec, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise fail("attacks", "a list", value)
    specs = tuple(_attack(v) for v in value)
    labels = [a.label for a in specs]
    if len(set(labels)) != len(labels):
        raise fail("attacks", "a list without repeats", labels)
    return specs


def _attack(value: Any) -> AttackSpec:
    """An ``attacks`` entry: a registered attack's name (its default budget, L-inf) or a table."""
    if isinstance(value, str):
        return AttackSpec(value)
    if not isinstance(value, Mapping) or "name" not in value:
        raise fail("attacks", ATTACK_RULE, value)
    for key in value:
        if key not in ATTACK_KEYS:
            allowed = ", ".join(ATTACK_KEYS)
            raise ConfigError(f"unknown key {key!r} in `attacks`{did_you_mean(key, ATTACK_KEYS)} (allowed: {allowed})")
    budget = value.get("budget")
    return AttackSpec(str(value["name"]), str(value.get("norm", "linf")), None if budget is None else budget)


def _shifts(value: Any) -> tuple[str, ...]:
    if value == "all":
        return tuple(SHIFTS.names())
    return tuple(str(v) for v in _list("shifts", value))


def _corruptions(value: Any) -> tuple[str, ...]:
    if value == "mnist-c":
        return MNIST_C
    return tuple(str(v) for v in _list("corruptions", value))


def robustness_records(
    model: nn.Module, data: Dataset, settings: RobustnessSettings, *, seed: int, at: Mapping[str, Any] | None = None
) -> Records:
    """Tidy robustness records of a trained ``model`` on ``data``'s test split (its first ``limit`` images).

    ``at`` (the epoch and step of the evaluated weights) is added to every record. The model is evaluated
    in eval mode with its noise off; its mode is restored afterwards.
    """
    n = len(data.x_test) if settings.limit is None else min(settings.limit, len(data.x_test))
    attacks = settings.attack_suite()
    was_training = model.training
    model.eval()
    try:
        rows = evaluate(
            model,
            (data.x_test[:n], data.y_test[:n]),
            settings.main_suite(),
            noise="off",
            batch_size=settings.batch_size,
            seed=derive_seed(seed, KIND),
        )
        if attacks is not None:  # the attack records of a pass over fewer images (its clean rows are the main's)
            m = min(n, settings.attack_limit or n)
            rows += [
                row
                for row in evaluate(
                    model,
                    (data.x_test[:m], data.y_test[:m]),
                    attacks,
                    noise="off",
                    batch_size=settings.batch_size,
                    seed=derive_seed(seed, KIND, "attacks"),
                    calibration=False,
                )
                if row["family"] == "attack"
            ]
    finally:
        model.train(was_training)
    return [{"kind": KIND, **row, **dict(at or {})} for row in rows]


class RobustnessHook(RunHook):
    """Evaluates the trained model on the robustness suite of the study's settings."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.settings = RobustnessSettings.from_options(spec.options.hook_options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        RobustnessSettings.from_options(options)

    def records(self, result: TrainResult, data: Dataset) -> Records:
        if result.status == "diverged":  # non-finite weights: nothing to evaluate (the table counts the run)
            return []
        final = result.final
        at = {"epoch": final.get("epoch"), "step": final.get("step")}
        return robustness_records(result.model, data, self.settings, seed=self.spec.seed, at=at)


RUN_HOOKS.add(
    "robustness",
    RobustnessHook,
    doc="Accuracy and calibration of each trained model under Gaussian noise (a grid of stds) and the MNIST-C "
    "corruptions; certified L2 accuracy by randomized smoothing with `certify`.",
)
