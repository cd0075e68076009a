"""Evaluation suites: which corruptions, noise curves, attacks and shifts an evaluation runs, as data.

A :class:`Suite` is frozen and validated at construction; :data:`SUITES` names the built-in ones
(``ninr list suites``) and :func:`get_suite` applies overrides of severities, noise stds and epsilons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ninr.errors import check_choice, check_nonneg, check_positive_int, fail
from ninr.registry import Registry
from ninr.robustness.attacks import ATTACKS, NORMS, check_epsilons
from ninr.robustness.corruptions import CORRUPTIONS, INTENSITY_NAMES, get_corruption
from ninr.robustness.severities import SEVERITIES, check_severity
from ninr.robustness.shift import SHIFTS

# The noise-std grid of the "gaussian" curve; it holds the stds 0.1, 0.3 and 0.5 the paper reports.
NOISE_STDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
# L-inf budgets for [0, 1] Fashion-MNIST pixels, from barely visible (0.01 ~ 2.5/255) to strong (0.1).
LINF_EPSILONS = (0.01, 0.03, 0.05, 0.1)


@dataclass(frozen=True)
class AttackSpec:
    """An attack and its fixed options; ``label`` names its records (``"fgsm"``, ``"pgd-10"``, ``"pgd-10-l2"``)."""

    name: str
    norm: str = "linf"
    steps: int = 10

    def __post_init__(self) -> None:
        ATTACKS.get(self.name)
        check_choice("norm", self.norm, NORMS)
        check_positive_int("steps", self.steps)

    @property
    def label(self) -> str:
        base = f"pgd-{self.steps}" if self.name == "pgd" else self.name
        return base if self.norm == "linf" else f"{base}-{self.norm}"

    def options(self) -> dict[str, Any]:
        """Keyword options for the attack function."""
        return {"norm": self.norm, **({"steps": self.steps} if self.name == "pgd" else {})}


def _tuple(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise fail(name, "a list", value)
    return tuple(value)


@dataclass(frozen=True)
class Suite:
    """What one evaluation runs (clean accuracy is always included).

    Attributes:
        corruptions: corruption names evaluated at every severity in ``severities``.
        severities: integers in 1..5.
        curves: noise corruptions evaluated at every noise std in ``intensities``.
        intensities: noise stds (>= 0) for ``curves``.
        attacks: attacks evaluated at every budget in ``epsilons``.
        epsilons: budgets (>= 0).
        shifts: names in :data:`ninr.robustness.shift.SHIFTS`.
    """

    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = SEVERITIES
    curves: tuple[str, ...] = ()
    intensities: tuple[float, ...] = ()
    attacks: tuple[AttackSpec, ...] = ()
    epsilons: tuple[float, ...] = ()
    shifts: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names = tuple(get_corruption(n).name for n in _tuple(self.corruptions, "corruptions"))
        object.__setattr__(self, "corruptions", names)
        object.__setattr__(self, "severities", tuple(check_severity(s) for s in _tuple(self.severities, "severities")))
        curves = tuple(get_corruption(n).name for n in _tuple(self.curves, "curves"))
        for name in curves:
            if name not in INTENSITY_NAMES:
                raise fail("curves", f"noise corruptions with an intensity ({', '.join(INTENSITY_NAMES)})", name)
        object.__setattr__(self, "curves", curves)
        stds = tuple(check_nonneg("intensity", s) for s in _tuple(self.intensities, "intensities"))
        object.__setattr__(self, "intensities", stds)
        for spec in _tuple(self.attacks, "attacks"):
            if not isinstance(spec, AttackSpec):
                raise fail("attacks", "AttackSpec entries", spec)
        eps = tuple(check_epsilons(list(self.epsilons))) if self.attacks or self.epsilons else ()
        object.__setattr__(self, "epsilons", eps)
        for name in _tuple(self.shifts, "shifts"):
            SHIFTS.get(name)

    def replace(self, **changes: Any) -> Suite:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


SUITES: Registry[Callable[[], Suite]] = Registry("suite")


@SUITES.register("clean")
def clean_suite() -> Suite:
    """Clean accuracy only."""
    return Suite()


@SUITES.register("gaussian")
def gaussian_suite() -> Suite:
    """Gaussian noise on a grid of noise stds (0.1 .. 1.0)."""
    return Suite(curves=("gaussian-noise",), intensities=NOISE_STDS)


@SUITES.register("noise")
def noise_suite() -> Suite:
    """Every unstructured noise on the noise-std grid."""
    return Suite(curves=tuple(INTENSITY_NAMES), intensities=NOISE_STDS[:5])


@SUITES.register("fmnist-c")
def fmnist_c_suite() -> Suite:
    """Every registered corruption at severities 1..5 (the MNIST-C set and more)."""
    return Suite(corruptions=tuple(CORRUPTIONS.names()))


@SUITES.register("attacks")
def attacks_suite() -> Suite:
    """FGSM and PGD-10 (L-inf) at epsilons 0.01, 0.03, 0.05, 0.1."""
    return Suite(attacks=(AttackSpec("fgsm"), AttackSpec("pgd", steps=10)), epsilons=LINF_EPSILONS)


@SUITES.register("shift")
def shift_suite() -> Suite:
    """Every built-in shifted test set."""
    return Suite(shifts=tuple(SHIFTS.names()))


@SUITES.register("all")
def all_suite() -> Suite:
    """fmnist-c, gaussian, attacks and shift together."""
    c, g, a, s = fmnist_c_suite(), gaussian_suite(), attacks_suite(), shift_suite()
    return Suite(
        corruptions=c.corruptions,
        curves=g.curves,
        intensities=g.intensities,
        attacks=a.attacks,
        epsilons=a.epsilons,
        shifts=s.shifts,
    )


def get_suite(
    suite: str | Suite,
    *,
    severities: Sequence[int] | None = None,
    intensities: Sequence[float] | None = None,
    epsilons: Sequence[float] | None = None,
) -> Suite:
    """The suite named ``suite`` (or ``suite`` itself) with the given grids replaced."""
    base = suite if isinstance(suite, Suite) else SUITES.get(suite)()
    changes: dict[str, Any] = {}
    if severities is not None:
        changes["severities"] = tuple(severities)
    if intensities is not None:
        changes["intensities"] = tuple(intensities)
    if epsilons is not None:
        changes["epsilons"] = tuple(epsilons)
    return base.replace(**changes) if changes else base
