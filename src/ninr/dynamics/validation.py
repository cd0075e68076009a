"""Labelled trajectories with known phases, to measure the phase classifier's error rates.

Three generators, each returning :class:`Labelled` trajectories (a :class:`~ninr.dynamics.phases.NodeSeries`
and its true phase), vectorised over many runs in NumPy:

* :func:`one_layer`: the linear-regression node ``a <- a (1 - eta mean_i eps_i^2) - eta mean_i r_i eps_i``
  (docs/dynamics.md section 1: per-example noise over a batch of ``B``, residuals ``r`` of a label-noise
  level ``s``), whose curvature is constant: its true phase follows from ``k = eta sigma^2``;
* :func:`ar1_surrogates`: ``a <- (1 - k) a + innovation`` with heavy-tailed (Student-t) innovations, a
  stationary process of the same per-step factor;
* :func:`two_layer`: the two-layer toy whose curvature moves (:mod:`ninr.dynamics.theory.two_layer`), the only
  one that catapults.

Every generator measures ``k`` as a network run does: on a probe of ``probe`` examples, every ``every`` steps,
so each measurement carries the noise draw's chi-square error (relative standard error ``sqrt(2 / probe)``).
True phases come from the generating parameters, away from the boundaries: parameters within a stated band
around a boundary are not drawn (``BANDS``), since a single run there has no single right answer.

:func:`labelled_set` draws a whole set from a seed (calibration and validation use disjoint seeds), and
:func:`confusion` tabulates a classifier's verdicts against the true phases.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ninr.dynamics.phases import K_DECOUPLED, K_STABLE, PHASES, NodeSeries, PhaseResult, classify
from ninr.dynamics.theory.two_layer import TwoLayerSetup, TwoLayerTrajectories, simulate_two_layer, simulation_phase
from ninr.errors import check_positive_int

BANDS = {"decoupled|decay": (0.5, 2.0), "decay|unstable": (1.8, 2.3)}
"""Parameters not drawn, as a factor range around each boundary: the accumulated ``k T`` within 0.5-2x of
``K_DECOUPLED`` (the mean changes by 11-36%), and ``k`` (or ``k0``) within 1.8-2.3 of the stability limit 2
(where a batch's chi-square factor puts half the steps on either side)."""


@dataclass(frozen=True)
class Labelled:
    """A trajectory with its true phase and the parameters that generated it."""

    series: NodeSeries
    truth: str
    source: str
    params: dict[str, float] = field(default_factory=dict)


def _measured_k(k_true: np.ndarray, every: int, probe: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of ``k`` as measured every ``every`` steps on a probe of ``probe`` draws."""
    steps = np.arange(0, k_true.shape[1], every)
    chi = rng.chisquare(probe, size=(k_true.shape[0], len(steps))) / probe
    return steps, k_true[:, steps] * chi


def _series(a: np.ndarray, k_true: np.ndarray, every: int, probe: int, rng: np.random.Generator) -> list[NodeSeries]:
    steps_k, k_meas = _measured_k(k_true, every, probe, rng)
    steps = np.arange(a.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        energy = 0.5 * k_true * a**2
    rel = math.sqrt(2.0 / probe)
    return [NodeSeries(steps, a[i], energy[i], steps_k, k_meas[i], None, rel) for i in range(a.shape[0])]


def one_layer(
    k: np.ndarray,
    *,
    steps: int,
    batch: int,
    eta: float,
    label_noise: float,
    a0: np.ndarray,
    every: int,
    probe: int,
    seed: int,
) -> list[np.ndarray]:
    """Trajectories ``a_t`` (one row per ``k``) of the one-layer node; ``a_t`` blows up to ``inf`` when unstable."""
    rng = np.random.default_rng(seed)
    n = len(k)
    sigma = np.sqrt(k / eta)
    a = np.empty((n, steps + 1))
    a[:, 0] = a0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            z = rng.standard_normal((n, batch))
            r = label_noise * rng.standard_normal((n, batch))
            m2 = (z**2).mean(axis=1)
            m1 = (r * z).mean(axis=1) * sigma
            a[:, t + 1] = a[:, t] * (1.0 - k * m2) - eta * m1
    return [a]


def _one_layer_set(n: int, rng: np.random.Generator, steps: int, every: int, probe: int) -> list[Labelled]:
    """``n`` one-layer runs: ``k`` log-uniform over the bands of the three phases it has, random batch,
    label noise, and a start above or below the random-walk level."""
    truths = rng.choice(["decoupled", "decay", "divergent"], size=n, p=[0.25, 0.5, 0.25])
    k = np.empty(n)
    lo, hi = BANDS["decoupled|decay"]
    k[truths == "decoupled"] = _log_uniform(
        rng, 1e-3 * K_DECOUPLED / steps, lo * K_DECOUPLED / steps, truths == "decoupled"
    )
    k[truths == "decay"] = _log_uniform(rng, hi * K_DECOUPLED / steps, BANDS["decay|unstable"][0], truths == "decay")
    k[truths == "divergent"] = rng.uniform(BANDS["decay|unstable"][1], 6.0, size=int((truths == "divergent").sum()))
    batch = int(rng.choice([8, 32, 128]))
    eta = float(10 ** rng.uniform(-3, -1))
    label_noise = float(rng.choice([0.0, 0.3, 1.0]))
    # the random-walk level of |a| (docs/dynamics.md: E a^2 = eta R^2 / (B (2 - k)), lambda = 1)
    level = np.sqrt(eta * max(label_noise, 1e-3) ** 2 / (batch * np.clip(2.0 - k, 0.1, None)))
    a0 = level * 10 ** rng.uniform(-2, 2, size=n)
    (a,) = one_layer(k, steps=steps, batch=batch, eta=eta, label_noise=label_noise, a0=a0, every=every,
                     probe=probe, seed=int(rng.integers(2**31)))  # fmt: skip
    series = _series(a, np.broadcast_to(k[:, None], a.shape), every, probe, rng)
    params = [
        {"k": float(k[i]), "batch": batch, "eta": eta, "label_noise": label_noise, "a0": float(a0[i])} for i in range(n)
    ]
    return [Labelled(s, str(t), "one-layer", p) for s, t, p in zip(series, truths, params, strict=True)]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, mask: np.ndarray) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size=int(mask.sum())))


def draw_k(rng: np.random.Generator, truths: np.ndarray, steps: int) -> np.ndarray:
    """A constant ``k`` per run for its true phase, outside :data:`BANDS`: decoupled log-uniform up to half the
    decoupled boundary ``K_DECOUPLED / steps``, decay log-uniform from twice that boundary to 1.8, divergent
    uniform on 2.3..6."""
    k = np.empty(len(truths))
    lo, hi = BANDS["decoupled|decay"]
    edge = K_DECOUPLED / steps
    k[truths == "decoupled"] = _log_uniform(rng, 1e-3 * edge, lo * edge, truths == "decoupled")
    k[truths == "decay"] = _log_uniform(rng, hi * edge, BANDS["decay|unstable"][0], truths == "decay")
    k[truths == "divergent"] = rng.uniform(BANDS["decay|unstable"][1], 6.0, size=int((truths == "divergent").sum()))
    return k


def ar1_surrogates(n: int, rng: np.random.Generator, steps: int, every: int, probe: int) -> list[Labelled]:
    """``n`` AR(1) runs ``a <- (1 - k) a + t_3 innovation`` (stable: decoupled or decay by ``k``)."""
    truths = rng.choice(["decoupled", "decay"], size=n, p=[0.3, 0.7])
    k = np.empty(n)
    lo, hi = BANDS["decoupled|decay"]
    k[truths == "decoupled"] = _log_uniform(
        rng, 1e-3 * K_DECOUPLED / steps, lo * K_DECOUPLED / steps, truths == "decoupled"
    )
    k[truths == "decay"] = _log_uniform(rng, hi * K_DECOUPLED / steps, BANDS["decay|unstable"][0], truths == "decay")
    scale = 10 ** rng.uniform(-3, 0, size=n)
    a = np.empty((n, steps + 1))
    a[:, 0] = 10 ** rng.uniform(-2, 1, size=n)
    for t in range(steps):
        a[:, t + 1] = (1.0 - k) * a[:, t] + scale * rng.standard_t(3, size=n)
    series = _series(a, np.broadcast_to(k[:, None], a.shape), every, probe, rng)
    return [Labelled(s, str(t), "ar1", {"k": float(k[i])}) for i, (s, t) in enumerate(zip(series, truths, strict=True))]


TWO_LAYER_K0: dict[str, tuple[float, float] | None] = {
    "decoupled": None, "decay": None, "catapult": (2.3, 3.7), "divergent": (4.5, 6.0),
}  # fmt: skip
"""``k0`` ranges of the two-layer toy per true phase (``None``: drawn by :func:`draw_k`, as for the one-layer
model). The map's boundaries are 2 and 4 (docs/dynamics.md); the ranges leave out 1.8-2.3 and 3.7-4.5, where
a batch's chi-square factor moves single runs across them."""


def two_layer_set(n: int, rng: np.random.Generator, steps: int, every: int, probe: int) -> list[Labelled]:
    """``n`` runs of the two-layer toy (:func:`ninr.dynamics.theory.two_layer.simulate_two_layer`): random batch,
    learning rate, label noise, teacher and NIW share of the weights; the observables a network run gives:
    ``k`` is the NIW block's (``eta sigma^2 |v|^2``, smaller than the coupled ``eta sigma^2 (|v|^2 + |theta|^2)``
    that sets the phase), ``a`` the NIW's top-mode projection, the energy ``1/2 sigma^2 phi^2``.

    ``k0`` is drawn per target phase from :data:`TWO_LAYER_K0`; the true phase is what the run did, read from the
    full ``phi = v . theta`` that the classifier does not see (:func:`_two_layer_truth`): a catapult-range run that
    a batch's kicks blew up is divergent."""
    out: list[Labelled] = []
    truths = rng.choice(["decoupled", "decay", "catapult", "divergent"], size=n, p=[0.15, 0.35, 0.3, 0.2])
    for target in truths:
        if target in ("decoupled", "decay"):
            k0 = float(draw_k(rng, np.array([target]), steps)[0])
        else:
            bounds = TWO_LAYER_K0[str(target)]
            assert bounds is not None
            lo, hi = bounds
            k0 = float(rng.uniform(lo, hi))
        batch = [None, 32, 128][int(rng.integers(3))]
        eta = float(10 ** rng.uniform(-3, -1.5))
        share = float(rng.uniform(0.2, 0.8))
        sigma = float(10 ** rng.uniform(-0.5, 1))
        limit = math.sqrt(share * (1 - share)) * k0 / (eta * sigma**2)
        phi0 = limit * float(10 ** rng.uniform(-4, -2)) * float(rng.choice([-1.0, 1.0]))
        setup = TwoLayerSetup(
            k0=k0, phi0=phi0, sigma=sigma, eta=eta, steps=steps, batch_size=batch, niw_share=share,
            teacher=str(rng.choice(["zero", "random"])), label_noise=float(rng.choice([0.0, 0.3, 1.0])),
        )  # fmt: skip
        traj = simulate_two_layer(setup, (int(rng.integers(2**31)),))
        truth = _two_layer_truth(str(target), traj)
        run = traj.run(0)
        length = len(run["phi"])
        a = np.full(steps + 1, np.nan)
        a[:length] = run["top_projection"]
        k_true = np.full(steps + 1, np.nan)
        k_true[:length] = run["k_niw"]
        energy = np.full(steps + 1, np.nan)
        energy[:length] = run["noise_energy"]
        steps_k, k_meas = _measured_k(k_true[None, :], every, probe, rng)
        series = NodeSeries(np.arange(steps + 1.0), a, energy, steps_k, k_meas[0], None, math.sqrt(2.0 / probe))
        params = {"k0": k0, "batch": float(batch or 0), "eta": eta, "niw_share": share, "sigma": sigma, "phi0": phi0}
        out.append(Labelled(series, truth, "two-layer", params))
    return out


def _two_layer_truth(target: str, traj: TwoLayerTrajectories) -> str:
    """A two-layer run's true phase: divergent if it blew up; for a run drawn in the unstable range, what its full
    ``phi = v . theta`` did by the toy's rule (:func:`~ninr.dynamics.theory.two_layer.simulation_phase`: grew 2x
    and came back below its start: catapult; still at or above its start at the end: divergent); for a run drawn
    in a stable range, the range's phase (there the rule, made for noiseless ``phi``, reads label noise's random walk
    of ``phi`` as growth)."""
    if traj.status[0] == "diverged":
        return "divergent"
    return simulation_phase(traj)[0] if target in ("catapult", "divergent") else target


Generator = Callable[[int, np.random.Generator, int, int, int], list[Labelled]]

GENERATORS: dict[str, Generator] = {"one-layer": _one_layer_set, "ar1": ar1_surrogates, "two-layer": two_layer_set}
"""The generators of :func:`labelled_set`, by name."""


def labelled_set(
    n: int, *, seed: int, steps: int = 300, every: int = 5, probe: int = 1000, sources: Sequence[str] | None = None
) -> list[Labelled]:
    """``n`` labelled trajectories split evenly over ``sources`` (default: every generator), from ``seed``."""
    check_positive_int("n", n)
    names = list(sources) if sources is not None else list(GENERATORS)
    rng = np.random.default_rng(seed)
    out: list[Labelled] = []
    for i, name in enumerate(names):
        count = n // len(names) + (1 if i < n % len(names) else 0)
        out += GENERATORS[name](count, rng, steps, every, probe)
    return out


@dataclass(frozen=True)
class Confusion:
    """A classifier's verdicts against the true phases."""

    counts: dict[tuple[str, str], int]  # (truth, verdict) -> count
    total: int

    def accuracy(self) -> float:
        return sum(v for (t, p), v in self.counts.items() if t == p) / max(self.total, 1)

    def false_catapult_rate(self) -> float:
        """The share of stable trajectories (true decoupled or decay) labelled catapult."""
        stable = sum(v for (t, _), v in self.counts.items() if t in ("decoupled", "decay"))
        wrong = sum(v for (t, p), v in self.counts.items() if t in ("decoupled", "decay") and p == "catapult")
        return wrong / max(stable, 1)

    def table(self) -> str:
        """A Markdown table: rows true phase, columns verdict."""
        head = "| true \\ verdict | " + " | ".join(PHASES) + " | total |"
        lines = [head, "|" + "---|" * (len(PHASES) + 2)]
        for t in PHASES:
            row = [self.counts.get((t, p), 0) for p in PHASES]
            lines.append(f"| {t} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
        return "\n".join(lines)


def confusion(labelled: Sequence[Labelled], classifier: Callable[[NodeSeries], PhaseResult] = classify) -> Confusion:
    """Tabulate ``classifier`` (default: :func:`ninr.dynamics.phases.classify`) on ``labelled``."""
    counts: Counter[tuple[str, str]] = Counter()
    for item in labelled:
        counts[(item.truth, classifier(item.series).phase)] += 1
    return Confusion(dict(counts), len(labelled))


def stable_crossings(labelled: Sequence[Labelled]) -> list[Labelled]:
    """The stable trajectories whose measured ``k`` crosses 2 at least once: where ``ENERGY_RISE`` decides."""
    return [x for x in labelled if x.truth in ("decoupled", "decay") and bool(np.any(x.series.k > K_STABLE))]


CALIBRATION_SEED = 1
"""The seed of the set ``AR_WINDOW`` was chosen on (:mod:`ninr.dynamics.phases`); validation sets use others."""

VALIDATION_SEED = 2
"""The default seed of ``ninr phases --validate``."""


def validation_report(n: int, *, seed: int = VALIDATION_SEED, steps: int = 300) -> str:
    """Markdown: the classifier's confusion table on ``n`` labelled trajectories from ``seed``, its accuracy and
    false-catapult rate overall and per generator."""
    labelled = labelled_set(n, seed=seed, steps=steps)
    overall = confusion(labelled)
    lines = [
        f"Phase classifier on {n} labelled trajectories (seed {seed}, {steps} steps"
        f"{'; the calibration seed' if seed == CALIBRATION_SEED else ''}):",
        "",
        overall.table(),
        "",
        "| generator | trajectories | accuracy | false-catapult rate |",
        "|---|---|---|---|",
    ]
    for name in GENERATORS:
        part = [x for x in labelled if x.source == name]
        if part:
            c = confusion(part)
            lines.append(f"| {name} | {len(part)} | {c.accuracy():.3f} | {c.false_catapult_rate():.4f} |")
    lines.append(f"| all | {len(labelled)} | {overall.accuracy():.3f} | {overall.false_catapult_rate():.4f} |")
    return "\n".join(lines)
