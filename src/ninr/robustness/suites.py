"""Evaluation suites: which corruptions, noise curves, attacks and shifts an evaluation runs, as data.

A :class:`Suite` is frozen and validated at construction (a :class:`CertifySpec` adds randomized-smoothing
certification); :data:`SUITES` names the built-in ones
(``ninr list suites``) and :func:`get_suite` applies overrides of severities, noise stds and epsilons.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ninr.errors import check_choice, check_nonneg, check_positive, check_positive_int, fail
from ninr.registry import Registry
from ninr.robustness.attacks import ATTACKS, NORMS, check_epsilons
from ninr.robustness.corruptions import CORRUPTIONS, INTENSITY_NAMES, get_corruption
from ninr.robustness.severities import SEVERITIES, check_severity
from ninr.robustness.shift import SHIFTS

# The noise-std grid of the "gaussian" curve; it holds the stds 0.1, 0.3 and 0.5 the paper reports.
NOISE_STDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
# L-inf budgets for [0, 1] Fashion-MNIST pixels, from barely visible (0.01 ~ 2.5/255) to strong (0.1).
LINF_EPSILONS = (0.01, 0.03, 0.05, 0.1)
# L2 radii at which certified accuracy is reported. With n = 10,000 samples and alpha = 0.001 the largest
# certifiable radius is sigma * Phi^-1(0.001 ** (1 / 10000)) = 3.2 sigma: 0.8 at sigma 0.25, 1.6 at sigma 0.5.
CERTIFY_RADII = tuple(round(0.1 * i, 1) for i in range(16))
# Cohen et al. certify every 20th test image of CIFAR-10 (500 images); the first 500 test images here.
CERTIFY_EXAMPLES = 500


@dataclass(frozen=True)
class CertifySpec:
    """Randomized-smoothing certification (:func:`ninr.robustness.certify.certify`) of a suite.

    Attributes:
        sigmas: smoothing noise stds (> 0), one certification each.
        radii: L2 radii (>= 0) at which certified accuracy is recorded.
        n0: selection samples per example; n: estimation samples per example.
        alpha: failure probability of each certificate, in (0, 1).
        examples: certify the first ``examples`` examples (``None``: all); each costs ``n0 + n`` forward rows.
    """

    sigmas: tuple[float, ...] = (0.25,)
    radii: tuple[float, ...] = CERTIFY_RADII
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    examples: int | None = CERTIFY_EXAMPLES

    def __post_init__(self) -> None:
        sigmas = tuple(check_positive("sigma", v) for v in _tuple(self.sigmas, "sigmas"))
        if not sigmas:
            raise fail("sigmas", "a non-empty list", list(sigmas))
        radii = tuple(check_nonneg("radius", v) for v in _tuple(self.radii, "radii"))
        if not radii:
            raise fail("radii", "a non-empty list", list(radii))
        object.__setattr__(self, "sigmas", sigmas)
        object.__setattr__(self, "radii", radii)
        check_positive_int("n0", self.n0)
        check_positive_int("n", self.n)
        ok = isinstance(self.alpha, int | float) and not isinstance(self.alpha, bool) and 0 < self.alpha < 1
        if not ok:
            raise fail("alpha", "a number in (0, 1)", self.alpha)
        if self.examples is not None:
            check_positive_int("examples", self.examples)


BUDGET_OPTIONS = ("steps", "queries")
"""The keyword an attack's budget goes by: gradient steps (``pgd``, ``apgd``) or model queries (``square``)."""


@dataclass(frozen=True)
class AttackSpec:
    """An attack and its fixed options; ``label`` names its records (``"fgsm"``, ``"pgd-10"``, ``"pgd-10-l2"``,
    ``"apgd-100"``, ``"square-1000"``).

    ``budget`` is the attack's ``steps`` or ``queries`` (whichever its function takes; ``None``: the function's
    default); an attack with neither (``fgsm``) takes none.
    """

    name: str
    norm: str = "linf"
    budget: int | None = None

    def __post_init__(self) -> None:
        ATTACKS.get(self.name)
        check_choice("norm", self.norm, NORMS)
        if self.budget is not None:
            check_positive_int("budget", self.budget)
            if self.budget_option is None:
                raise fail("budget", f"None for {self.name!r}, which takes no steps or queries", self.budget)

    @property
    def parameters(self) -> Mapping[str, inspect.Parameter]:
        return inspect.signature(ATTACKS.get(self.name)).parameters

    @property
    def budget_option(self) -> str | None:
        """``"steps"``, ``"queries"`` or ``None``: the keyword the attack's budget goes by."""
        return next((o for o in BUDGET_OPTIONS if o in self.parameters), None)

    @property
    def effective_budget(self) -> int | None:
        option = self.budget_option
        return None if option is None else int(self.budget or self.parameters[option].default)

    @property
    def takes_generator(self) -> bool:
        return "generator" in self.parameters

    @property
    def label(self) -> str:
        budget = self.effective_budget
        base = self.name if budget is None else f"{self.name}-{budget}"
        return base if self.norm == "linf" else f"{base}-{self.norm}"

    def options(self) -> dict[str, Any]:
        """Keyword options for the attack function."""
        option = self.budget_option
        return {"norm": self.norm, **({option: self.effective_budget} if option is not None else {})}


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
        certify: randomized-smoothing certification, or ``None``.
    """

    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = SEVERITIES
    curves: tuple[str, ...] = ()
    intensities: tuple[float, ...] = ()
    attacks: tuple[AttackSpec, ...] = ()
    epsilons: tuple[float, ...] = ()
    shifts: tuple[str, ...] = field(default=())
    certify: CertifySpec | None = None

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
        if self.certify is not None and not isinstance(self.certify, CertifySpec):
            raise fail("certify", "a CertifySpec or None", self.certify)

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
    return Suite(attacks=(AttackSpec("fgsm"), AttackSpec("pgd", budget=10)), epsilons=LINF_EPSILONS)


@SUITES.register("shift")
def shift_suite() -> Suite:
    """Every built-in shifted test set."""
    return Suite(shifts=tuple(SHIFTS.names()))


@SUITES.register("certify")
def certify_suite() -> Suite:
    """Randomized smoothing: certified L2 accuracy at sigma 0.25 (n0 100, n 10,000, alpha 0.001, 500 images)."""
    return Suite(certify=CertifySpec())


@SUITES.register("certify-sigmas")
def certify_sigmas_suite() -> Suite:
    """Randomized smoothing at sigma 0.12, 0.25 and 0.5 (three times the cost of ``certify``)."""
    return Suite(certify=CertifySpec(sigmas=(0.12, 0.25, 0.5)))


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
