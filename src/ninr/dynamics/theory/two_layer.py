"""The two-layer linear toy with a noise injection node on the hidden layer: a model that catapults.

Model: ``f(x) = v . (W x + theta eps)`` with ``eps ~ N(0, sigma^2)`` drawn per example, loss
``1/2 (f - y)^2``; ``theta`` (hidden width ``d``) are the NIWs and ``v`` the output weights. With
``phi = v . theta``, ``k = eta sigma^2 (|v|^2 + |theta|^2)`` and ``psi = eta sigma^2 phi``, gradient descent on
the noise part at zero residual (``B -> infinity``) is the closed map (docs/dynamics.md, section "The two-layer
linear toy")::

    phi' = phi (1 - k + psi^2),        k' = k + psi^2 (k - 4)

and with batch ``B`` each step's factor ``u = mean_i eps_i^2 / sigma^2 = X / B``, ``X ~ chi^2_B``, enters as
``phi' = phi (1 - u k + u^2 psi^2)``, ``k' = k + psi^2 (u^2 k - 4 u)``. Phases in ``k0`` (gradient descent):
decoupled below ``k_dec(T)``, decay up to 2 (with sign flips for ``1 < k0 < 2``), catapult from 2 to 4 (``phi``
grows while ``k`` falls below 2, then decays), divergent above 4 (``k`` grows with ``phi``).

Which curvature: ``k / eta`` is the top eigenvalue, at ``phi = 0``, of the ``(v, theta)`` block of the Hessian of
the noise energy ``E = 1/2 sigma^2 (v . theta)^2`` (the block is ``sigma^2 (theta, v)(theta, v)^T`` there), not of
the NIW block alone, ``sigma^2 v v^T``, whose ``k_niw = eta sigma^2 |v|^2`` is smaller by ``1 - niw_share``: the
output weights move with the NIWs, so the NIW's own size enters ``k``.

What this module gives:

- :func:`map_trajectory` (the closed-form map, mean dynamics), :func:`predicted_boundaries` (in ``k0``, for a
  horizon and a batch size; :class:`TwoLayerBoundaries`), :func:`theory_curve` (the map across a sigma grid).
- :func:`simulate_two_layer`: the network itself (``W``, ``v`` and ``theta`` trained by SGD on per-example noise),
  vectorised over seeds, numpy float64, every random stream derived from ``(seed, name)``.
- :func:`two_layer_trajectories` for one run::

      two_layer_trajectories(k0, phi0, sigma, eta, batch_size, steps, seed, label_noise=0.0, **options)
          -> dict[str, np.ndarray]

  ``k0 = eta sigma^2 (|v|^2 + |theta|^2)`` and ``phi0 = v . theta`` at initialisation; ``batch_size=None`` is
  full-batch GD; ``options`` are the other fields of :class:`TwoLayerSetup` (``n_train``, ``width``, ``dim``,
  ``niw_share``, ``teacher``, ``noise``). Keys, one entry per step ``t = 0..len-1``, cut where the run blew up
  (``|phi|`` or ``k`` beyond :data:`BLOWUP` x its start, or a non-finite value):

  * ``step``; ``phi`` (``v . theta``); ``niw_norm`` (``|theta|``); ``v_norm`` (``|v|``);
  * ``k`` (``eta sigma^2 (|v|^2 + |theta|^2)``) and ``k_niw`` (``eta sigma^2 |v|^2``, ``eta`` times the top
    eigenvalue of the NIW block ``sigma^2 v v^T`` of the noise-averaged loss's Hessian);
  * ``top_projection`` (``theta . v / |v|``: the NIW's component on that block's top eigenvector ``v / |v|``);
  * ``noise_energy`` (``E = 1/2 sigma^2 phi^2 = 1/2 sigma^2 theta^T (v v^T) theta``);
  * ``clean_loss`` (``1/2 mean_i (v . W x_i - y_i)^2`` over the training set) and ``loss`` (the noise-averaged
    training loss ``clean_loss + E``: exact, the loss is quadratic in ``eps``).

  With fixed noise, ``sigma^2`` in ``k``, ``k_niw`` and ``E`` is the seed's table's ``mean eps^2`` (the power a
  full batch sees).
- :func:`simulation_phase` (the stated rule, independent of :mod:`ninr.dynamics.phases`),
  :func:`measure_two_layer_boundaries` (bisection in ``k0`` at fixed initial weights, majority over seeds) and
  :func:`phase_fractions` / :func:`crossing` (the fraction of seeds in each phase across a ``k0`` grid, and where
  it crosses a level: the width of a transition).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ninr.dynamics.theory.linear import phase_boundaries
from ninr.errors import check_choice, check_finite, check_nonneg, check_positive, check_positive_int, fail
from ninr.rng import derive_seed

LINEAR2_PHASES = ("decoupled", "decay", "catapult", "divergent")
"""Phases of the two-layer toy. ``decay`` includes the sign-flipping decay of ``1 < k0 < 2``."""

NOISE_MODES = ("redrawn", "fixed")
TEACHERS = ("zero", "random")
BLOWUP = 1e12
"""A run stops once ``|phi|`` or ``k`` exceeds this factor times its start (or a value is not finite): it has
diverged, and further steps would only overflow (``k`` grows like ``psi^2 k`` per step there)."""

GROWTH_FACTOR = 2.0
"""Rule of :func:`simulation_phase`: a run *grew* when ``max_t |phi_t|`` reaches 2x ``|phi_0|``. For small
``psi0`` the map's peak growth at ``k0 = 2 + e`` is about ``e / psi0``, so the threshold moves the measured
decay|catapult boundary by about ``2 psi0`` only; 2x is above the single-step kicks of a decaying SGD run
(the factor ``|1 - u k|`` exceeds 2 with probability under 4% per step for ``B >= 32``, ``k < 2``)."""

DECOUPLED_MAX_CHANGE = 0.2
"""Rule of :func:`simulation_phase`: ``|phi|`` ends within 20% of its start without having grown: decoupled.
The same number, and the same *final* value (the mean of the last :data:`FINAL_WINDOW` of the samples), as the
one-layer model's decoupled|decay edge, so that :func:`predicted_boundaries` can take that edge from
:func:`ninr.dynamics.theory.phase_boundaries` (at small ``psi`` the two-layer ``phi`` decays by the one-layer factor
``1 - u k``)."""

FINAL_WINDOW = 0.1
"""Rule of :func:`simulation_phase`: a run's *final* ``|phi|`` is the mean of its last 10% of samples (at least
one), as for the one-layer model's boundaries."""


# --- the closed-form map -------------------------------------------------------------------------------------


def map_step(psi: float, k: float, u: float = 1.0) -> tuple[float, float]:
    """One step of the map for ``(psi, k)``; ``u = mean eps^2 / sigma^2`` (1 for ``B -> infinity``)."""
    return psi * (1.0 - u * k + u * u * psi * psi), k + psi * psi * (u * u * k - 4.0 * u)


def map_trajectory(k0: float, psi0: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(psi_t, k_t)`` for ``t = 0..steps`` under the mean map (GD, ``B -> infinity``); NaN after a blow-up.

    ``phi_t / phi_0 = psi_t / psi_0``. A blow-up is ``|psi|`` or ``k`` beyond :data:`BLOWUP` x its start.

    Example:
        >>> psi, k = map_trajectory(3.0, 0.01, 100)
        >>> bool(np.nanmax(np.abs(psi)) > 10 * 0.01 and k[-1] < 2 and abs(psi[-1]) < 0.01)
        True
    """
    check_nonneg("k0", k0)
    check_finite("psi0", psi0)
    check_positive_int("steps", steps)
    psi = np.full(steps + 1, np.nan)
    k = np.full(steps + 1, np.nan)
    psi[0], k[0] = psi0, k0
    p, q = psi0, k0
    for t in range(1, steps + 1):
        p, q = map_step(p, q)
        if not (math.isfinite(p) and math.isfinite(q)) or abs(p) > BLOWUP * abs(psi0) or q > BLOWUP * max(k0, 1e-300):
            break
        psi[t], k[t] = p, q
    return psi, k


def map_phase(k0: float, psi0: float, steps: int) -> str:
    """The rule of :func:`simulation_phase` applied to the map's trajectory."""
    psi, _ = map_trajectory(k0, psi0, steps)
    return rule_phase(psi)


def map_peak_growth(k0: float, psi0: float, steps: int) -> float:
    """``max_t |phi_t| / |phi_0|`` under the map over ``steps`` (``inf`` when it blows up)."""
    psi, _ = map_trajectory(k0, psi0, steps)
    return math.inf if np.isnan(psi).any() else float(np.max(np.abs(psi)) / abs(psi0))


# --- boundaries ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoLayerBoundaries:
    """The three boundaries in ``k0`` of the two-layer toy (predicted or measured)."""

    decoupled_decay: float  # below: |phi| changes by less than DECOUPLED_MAX_CHANGE over the horizon
    decay_catapult: float  # above: phi grows (k falls as it does)
    catapult_divergent: float  # above: k grows with phi, which never comes back

    def phase(self, k0: float) -> str:
        """The phase of ``k0`` (one of :data:`LINEAR2_PHASES`)."""
        if k0 >= self.catapult_divergent:
            return "divergent"
        if k0 >= self.decay_catapult:
            return "catapult"
        return "decay" if k0 >= self.decoupled_decay else "decoupled"

    def as_dict(self) -> dict[str, float]:
        return {n: getattr(self, n) for n in ("decoupled_decay", "decay_catapult", "catapult_divergent")}


def predicted_boundaries(horizon: int, batch_size: int | None = None) -> TwoLayerBoundaries:
    """Predicted boundaries in ``k0`` for a run of ``horizon`` steps with batch ``batch_size`` (small ``psi0``).

    - decoupled|decay: the one-layer model's (:func:`ninr.dynamics.theory.phase_boundaries`, with the batch's
      typical rate): at small ``psi`` the factor of ``phi`` is ``1 - u k``, the one-layer NIW's; about
      ``0.22 / horizon``.
    - decay|catapult: ``2``, where the mean factor ``1 - k`` of ``phi`` (exact at small ``psi`` for any ``B``)
      leaves ``(-1, 1)``.
    - catapult|divergent: ``4``, where the drift ``psi^2 (k - 4)`` of ``k`` changes sign.

    A finite batch does not move these midpoints by more than ~3% (measured: the ``k0`` where half the runs
    grow stays within 2.01-2.06 and where half diverge within 3.93-4.10 for ``B = 8..64``, docs/dynamics.md) but
    widens each transition: some runs grow from about ``2 B / (B + 2)`` (where ``E phi^2`` grows) and 90% do by
    the one-layer typical edge (``E ln|1 - k X / B| = 0``) or below it. Finite ``psi0`` and horizon shift the measured
    decay|catapult edge up (the map's peak growth at ``k0 = 2 + e`` is about ``e / psi0`` and takes about
    ``ln(e / psi0) / e`` steps).

    Example:
        >>> b = predicted_boundaries(300)
        >>> (b.decay_catapult, b.catapult_divergent)
        (2.0, 4.0)
    """
    return TwoLayerBoundaries(phase_boundaries(horizon, batch_size).decoupled_decay, 2.0, 4.0)


# --- the simulation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoLayerSetup:
    """One configuration of the two-layer toy (the seeds are passed to :func:`simulate_two_layer`).

    Attributes:
        k0: ``eta sigma^2 (|v|^2 + |theta|^2)`` at initialisation.
        phi0: ``v . theta`` at initialisation (``psi0 = eta sigma^2 phi0``); needs
            ``|phi0| <= sqrt(niw_share (1 - niw_share)) (|v|^2 + |theta|^2)``.
        sigma: noise standard deviation.
        eta: learning rate.
        steps: SGD steps.
        batch_size: examples per step; ``None`` is full-batch gradient descent.
        n_train: training examples ``x ~ N(0, I_dim)``.
        width: hidden width ``d`` (at least 2: ``theta`` has a component off ``v``).
        dim: input dimension.
        niw_share: ``|theta|^2 / (|v|^2 + |theta|^2)`` at initialisation.
        teacher: ``"zero"`` (``W = 0`` and ``y = label noise``: the residual starts at zero) or ``"random"``
            (``W = 0`` and ``y = v0 . W* x + label noise`` with ``W*`` entries ``N(0, 1 / dim)``: the student
            learns while its NIWs move).
        label_noise: standard deviation of the label noise.
        noise: ``"redrawn"`` every step or ``"fixed"`` per training example.
    """

    k0: float
    phi0: float
    sigma: float = 1.0
    eta: float = 0.01
    steps: int = 300
    batch_size: int | None = None
    n_train: int = 256
    width: int = 8
    dim: int = 4
    niw_share: float = 0.5
    teacher: str = "zero"
    label_noise: float = 0.0
    noise: str = "redrawn"

    def __post_init__(self) -> None:
        check_positive("k0", self.k0)
        check_finite("phi0", self.phi0)
        if self.phi0 == 0:
            raise fail("phi0", "non-zero (phi = 0 is a fixed point of the noise dynamics)", self.phi0)
        check_positive("sigma", self.sigma)
        check_positive("eta", self.eta)
        check_positive_int("steps", self.steps)
        if self.batch_size is not None:
            check_positive_int("batch_size", self.batch_size)
        check_positive_int("n_train", self.n_train)
        if check_positive_int("width", self.width) < 2:
            raise fail("width", "at least 2", self.width)
        check_positive_int("dim", self.dim)
        if not 0 < self.niw_share < 1:
            raise fail("niw_share", "in (0, 1)", self.niw_share)
        check_choice("teacher", self.teacher, TEACHERS)
        check_nonneg("label_noise", self.label_noise)
        check_choice("noise", self.noise, NOISE_MODES)
        limit = math.sqrt(self.niw_share * (1 - self.niw_share)) * self.norm_sq
        if abs(self.phi0) > limit:
            raise fail("phi0", f"at most sqrt(niw_share (1 - niw_share)) (|v|^2 + |theta|^2) = {limit:.4g} in size",
                       self.phi0)  # fmt: skip

    @property
    def norm_sq(self) -> float:
        """``|v|^2 + |theta|^2`` at initialisation: ``k0 / (eta sigma^2)``."""
        return self.k0 / (self.eta * self.sigma**2)

    @property
    def psi0(self) -> float:
        return self.eta * self.sigma**2 * self.phi0

    @property
    def effective_batch(self) -> int:
        return self.n_train if self.batch_size is None else min(self.batch_size, self.n_train)

    def at_k0(self, k0: float) -> TwoLayerSetup:
        """The same initial weights at another ``k0``: sigma scaled by ``sqrt(k0 / self.k0)`` (``psi0 / k0`` kept)."""
        return replace(self, k0=k0, sigma=self.sigma * math.sqrt(k0 / self.k0))


def setup_from_weights(sigma: float, eta: float, norm_sq: float, phi0: float, **options: Any) -> TwoLayerSetup:
    """The setup whose initial weights have ``|v|^2 + |theta|^2 = norm_sq`` and ``v . theta = phi0``."""
    return TwoLayerSetup(k0=eta * sigma**2 * check_positive("norm_sq", norm_sq), phi0=phi0, sigma=sigma, eta=eta,
                         **options)  # fmt: skip


@dataclass
class TwoLayerTrajectories:
    """Per seed (rows) and step ``t = 0..steps`` (columns); NaN after a run stopped (``length`` samples kept)."""

    setup: TwoLayerSetup
    seeds: tuple[int, ...]
    phi: np.ndarray
    k: np.ndarray
    k_niw: np.ndarray
    top_projection: np.ndarray
    noise_energy: np.ndarray
    clean_loss: np.ndarray
    niw_norm: np.ndarray
    v_norm: np.ndarray
    length: np.ndarray  # samples kept per seed
    status: tuple[str, ...]  # "completed" or "diverged"
    noise_power: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sigma^2, or (fixed) the table's mean eps^2

    KEYS = ("phi", "k", "k_niw", "top_projection", "noise_energy", "clean_loss", "niw_norm", "v_norm")

    @property
    def loss(self) -> np.ndarray:
        """The noise-averaged training loss ``clean_loss + E`` (exact: the loss is quadratic in ``eps``)."""
        return self.clean_loss + self.noise_energy

    def run(self, i: int) -> dict[str, np.ndarray]:
        """Seed ``i``'s trajectories cut to its ``length`` (the dictionary of :func:`two_layer_trajectories`)."""
        n = int(self.length[i])
        out = {"step": np.arange(n)}
        out.update({key: getattr(self, key)[i, :n].copy() for key in self.KEYS})
        out["loss"] = self.loss[i, :n].copy()
        return out


def _orthonormal_pair(gen: np.random.Generator, width: int) -> tuple[np.ndarray, np.ndarray]:
    a = gen.standard_normal(width)
    a /= np.linalg.norm(a)
    b = gen.standard_normal(width)
    b -= (b @ a) * a
    return a, b / np.linalg.norm(b)


def _initial_state(setup: TwoLayerSetup, seed: int) -> dict[str, np.ndarray]:
    """One seed's data and weights: ``x``, ``y``, ``W``, ``v``, ``theta`` and its fixed-noise table."""
    gen = np.random.default_rng(derive_seed(seed, "two-layer", "init"))
    e1, e2 = _orthonormal_pair(gen, setup.width)
    v_norm = math.sqrt((1 - setup.niw_share) * setup.norm_sq)
    th_norm = math.sqrt(setup.niw_share * setup.norm_sq)
    along = setup.phi0 / v_norm
    v = v_norm * e1
    theta = along * e1 + math.sqrt(max(th_norm**2 - along**2, 0.0)) * e2
    data = np.random.default_rng(derive_seed(seed, "two-layer", "data"))
    x = data.standard_normal((setup.n_train, setup.dim))
    w_star = data.standard_normal((setup.width, setup.dim)) / math.sqrt(setup.dim)
    y = setup.label_noise * data.standard_normal(setup.n_train)
    if setup.teacher == "random":
        y = y + x @ (w_star.T @ v)
    table = setup.sigma * np.random.default_rng(derive_seed(seed, "two-layer", "fixed-noise")).standard_normal(
        setup.n_train
    )
    return {"x": x, "y": y, "W": np.zeros((setup.width, setup.dim)), "v": v, "theta": theta, "table": table}


def simulate_two_layer(setup: TwoLayerSetup, seeds: Sequence[int] = (0,)) -> TwoLayerTrajectories:
    """Train the two-layer toy for each seed (vectorised over seeds); record the trajectories every step.

    Per step, on a batch of ``B`` examples (``e_i = v . W x_i - y_i + phi eps_i``, ``a = mean e_i eps_i``,
    ``b = mean e_i x_i``): ``theta -= eta a v``, ``v -= eta (W b + a theta)``, ``W -= eta v b^T``, all from the
    old values (the exact gradient of the batch loss). Each seed draws its data, initial weights, batch order
    and noise from its own streams (``derive_seed(seed, "two-layer", ...)``), so a seed's run does not depend on
    which other seeds run beside it (up to the rounding of the vectorised sums).

    Example:
        >>> traj = simulate_two_layer(TwoLayerSetup(k0=3.0, phi0=0.03, sigma=10.0, steps=60, n_train=512))
        >>> bool(np.max(np.abs(traj.phi[0])) > 10 * 0.03 and abs(traj.phi[0, -1]) < 0.03 and traj.k[0, -1] < 2)
        True
    """
    if not seeds:
        raise fail("seeds", "a non-empty list of integers", list(seeds))
    s, n, b, steps = len(seeds), setup.n_train, setup.effective_batch, setup.steps
    states = [_initial_state(setup, int(seed)) for seed in seeds]
    x, y = np.stack([st["x"] for st in states]), np.stack([st["y"] for st in states])
    w, v, th = (np.stack([st[key] for st in states]) for key in ("W", "v", "theta"))
    table = np.stack([st["table"] for st in states])
    noise_gens = [np.random.default_rng(derive_seed(int(seed), "two-layer", "noise")) for seed in seeds]
    order_gens = [np.random.default_rng(derive_seed(int(seed), "two-layer", "data-order")) for seed in seeds]
    eta, sigma = setup.eta, setup.sigma
    # the noise power the run sees: sigma^2, or with fixed noise each seed's table mean eps^2
    power = np.mean(table**2, axis=1) if setup.noise == "fixed" else np.full(s, sigma**2)
    c = eta * power
    rec = {key: np.full((s, steps + 1), np.nan) for key in TwoLayerTrajectories.KEYS}
    alive = np.ones(s, dtype=bool)
    length = np.full(s, steps + 1)
    phi0, k0 = abs(setup.phi0), float(np.max(c)) * setup.norm_sq
    full = b >= n
    perms: list[np.ndarray] = []
    cursor = n  # position in the current epoch's permutations (SGD)

    def record(t: int) -> None:
        phi = np.einsum("sd,sd->s", v, th)
        vn = np.linalg.norm(v, axis=1)
        tn = np.linalg.norm(th, axis=1)
        resid = np.einsum("sni,si->sn", x, np.einsum("sdi,sd->si", w, v)) - y
        values = {
            "phi": phi,
            "k": c * (vn**2 + tn**2),
            "k_niw": c * vn**2,
            "top_projection": phi / vn,
            "noise_energy": 0.5 * power * phi**2,
            "clean_loss": 0.5 * np.mean(resid**2, axis=1),
            "niw_norm": tn,
            "v_norm": vn,
        }
        for key, val in values.items():
            rec[key][alive, t] = val[alive]

    record(0)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, steps + 1):
            if full:
                xb, yb = x, y
                eps = table if setup.noise == "fixed" else np.stack([g.standard_normal(n) * sigma for g in noise_gens])
            else:
                if cursor + b > n:
                    perms, cursor = [g.permutation(n) for g in order_gens], 0
                idx = np.stack([p[cursor : cursor + b] for p in perms])
                cursor += b
                xb = np.take_along_axis(x, idx[:, :, None], axis=1)
                yb = np.take_along_axis(y, idx, axis=1)
                if setup.noise == "fixed":
                    eps = np.take_along_axis(table, idx, axis=1)
                else:
                    eps = np.stack([g.standard_normal(b) * sigma for g in noise_gens])
            phi = np.einsum("sd,sd->s", v, th)
            err = np.einsum("sbi,si->sb", xb, np.einsum("sdi,sd->si", w, v)) - yb + phi[:, None] * eps
            a = np.mean(err * eps, axis=1)
            grad_x = np.einsum("sb,sbi->si", err, xb) / xb.shape[1]
            th, v, w = (
                th - eta * a[:, None] * v,
                v - eta * (np.einsum("sdi,si->sd", w, grad_x) + a[:, None] * th),
                w - eta * np.einsum("sd,si->sdi", v, grad_x),
            )
            record(t)
            phi_t, k_t = rec["phi"][:, t], rec["k"][:, t]
            bad = alive & ~(np.isfinite(phi_t) & np.isfinite(k_t) & (np.abs(phi_t) <= BLOWUP * phi0)
                            & (k_t <= BLOWUP * k0))  # fmt: skip
            for i in np.flatnonzero(bad):
                length[i] = t + 1
                alive[i] = False
            if not alive.any():
                break
    status = tuple("completed" if length[i] == steps + 1 and alive[i] else "diverged" for i in range(s))
    return TwoLayerTrajectories(
        setup, tuple(int(x) for x in seeds), **rec, length=length, status=status, noise_power=power,
    )  # fmt: skip


def two_layer_trajectories(
    k0: float,
    phi0: float,
    sigma: float,
    eta: float,
    batch_size: int | None,
    steps: int,
    seed: int,
    label_noise: float = 0.0,
    **options: Any,
) -> dict[str, np.ndarray]:
    """One run's trajectories as numpy arrays (keys in the module docstring); ``options``: other setup fields.

    Example:
        >>> out = two_layer_trajectories(0.5, 0.1, 7.0, 0.01, None, 20, seed=0)
        >>> sorted(out)[:4], len(out["phi"])
        (['clean_loss', 'k', 'k_niw', 'loss'], 21)
    """
    setup = TwoLayerSetup(k0=k0, phi0=phi0, sigma=sigma, eta=eta, batch_size=batch_size, steps=steps,
                          label_noise=label_noise, **options)  # fmt: skip
    return simulate_two_layer(setup, (seed,)).run(0)


# --- the measurement rule and the boundaries it gives ---------------------------------------------------------


def rule_phase(phi: np.ndarray) -> str:
    """The phase of a ``phi`` (or ``psi``) trajectory by the stated rule; NaN marks a blow-up.

    - divergent: a blow-up, or a final ``|phi|`` (mean of the last :data:`FINAL_WINDOW`) at least its start;
    - catapult: ``max |phi|`` reached :data:`GROWTH_FACTOR` x the start and the run ends below its start;
    - decoupled: ``|phi|`` ends within :data:`DECOUPLED_MAX_CHANGE` of its start without having grown;
    - decay: the rest (ends below its start without having grown).
    """
    a = np.abs(np.asarray(phi, dtype=np.float64))
    if np.isnan(a).any() or not np.isfinite(a).all():
        return "divergent"
    start, final = a[0], float(np.mean(a[-max(1, math.ceil(FINAL_WINDOW * len(a))) :]))
    if final >= start:
        return "divergent"
    if a.max() >= GROWTH_FACTOR * start:
        return "catapult"
    return "decoupled" if final > (1 - DECOUPLED_MAX_CHANGE) * start else "decay"


def simulation_phase(traj: TwoLayerTrajectories) -> list[str]:
    """Each seed's phase by :func:`rule_phase` on its ``phi`` (a diverged run is divergent)."""
    return [
        "divergent" if traj.status[i] == "diverged" else rule_phase(traj.phi[i, : int(traj.length[i])])
        for i in range(len(traj.seeds))
    ]


def _majority(base: TwoLayerSetup, k0: float, seeds: Sequence[int], test: Callable[[str], bool]) -> bool:
    labels = simulation_phase(simulate_two_layer(base.at_k0(k0), seeds))
    return sum(test(p) for p in labels) * 2 > len(labels)


def _bisect(lo: float, hi: float, above: Callable[[float], bool], rel_tol: float) -> float:
    """The ``k0`` in [lo, hi] where ``above`` turns True (False at lo, True at hi assumed)."""
    while hi / lo - 1 > rel_tol:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if above(mid) else (mid, hi)
    return (lo + hi) / 2


def phase_fractions(base: TwoLayerSetup, k0s: Sequence[float], seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """The fraction of ``seeds`` in each phase of :data:`LINEAR2_PHASES` at each ``k0`` (``base.at_k0``)."""
    out = {p: np.zeros(len(k0s)) for p in LINEAR2_PHASES}
    for j, k0 in enumerate(k0s):
        labels = simulation_phase(simulate_two_layer(base.at_k0(float(k0)), seeds))
        for p in labels:
            out[p][j] += 1.0 / len(labels)
    return out


def crossing(k0s: Sequence[float], fraction: Sequence[float], level: float = 0.5) -> float:
    """The first ``k0`` where ``fraction`` reaches ``level`` (linear interpolation; NaN if it never does)."""
    x, f = np.asarray(k0s, dtype=np.float64), np.asarray(fraction, dtype=np.float64)
    above = np.flatnonzero(f >= level)
    if not len(above):
        return math.nan
    j = int(above[0])
    if j == 0:
        return float(x[0])
    return float(x[j - 1] + (level - f[j - 1]) / (f[j] - f[j - 1]) * (x[j] - x[j - 1]))


def measure_two_layer_boundaries(
    base: TwoLayerSetup,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    rel_tol: float = 2e-3,
    brackets: tuple[float, float, float] = (1.0, 3.0, 6.0),
) -> TwoLayerBoundaries:
    """The decay|catapult and catapult|divergent boundaries in ``k0`` measured on simulations of ``base``.

    ``k0`` is varied through sigma at ``base``'s initial weights (:meth:`TwoLayerSetup.at_k0`: ``psi0 / k0``
    fixed, as in a sigma sweep). Each probe point's label is the majority over ``seeds`` of
    :func:`simulation_phase`; decay|catapult is where "grew and came back, or diverged" sets in (bisection in
    ``brackets[0..1]``), catapult|divergent where "divergent" sets in (``brackets[1..2]``). The decoupled|decay
    edge is not measured here: it is the one-layer model's, tested there (``decoupled_decay`` is NaN).
    """
    lo, mid, hi = brackets
    grows = _bisect(lo, mid, lambda k: _majority(base, k, seeds, lambda p: p in ("catapult", "divergent")), rel_tol)
    div = _bisect(mid, hi, lambda k: _majority(base, k, seeds, lambda p: p == "divergent"), rel_tol)
    return TwoLayerBoundaries(math.nan, grows, div)


def theory_curve(
    eta: float, steps: int, norm_sq: float, phi0: float, batch: int | None, sigmas: Sequence[float], points: int = 200
) -> dict[str, Any]:
    """The map's peak growth of ``|phi|`` across a sigma grid at fixed initial weights, with the predicted regions.

    ``k0 = eta sigma^2 norm_sq`` and ``psi0 = eta sigma^2 phi0``; the curve spans ``min(sigmas) / 1.5`` to
    ``max(sigmas) * 1.5`` on a log grid of ``points`` (``inf`` where the map blows up); regions are
    ``(phase, sigma_lo, sigma_hi)`` of :func:`predicted_boundaries` at horizon ``steps`` and batch ``batch``.
    """
    grid = np.geomspace(min(sigmas) / 1.5, max(sigmas) * 1.5, points)
    peak = [map_peak_growth(eta * s**2 * norm_sq, eta * s**2 * phi0, steps) for s in grid]
    bounds = predicted_boundaries(steps, batch)
    edges = {name: math.sqrt(k / (eta * norm_sq)) for name, k in bounds.as_dict().items()}
    cuts = [grid[0], *edges.values(), grid[-1]]
    regions = [
        (name, max(lo, grid[0]), min(hi, grid[-1]))
        for name, lo, hi in zip(LINEAR2_PHASES, cuts[:-1], cuts[1:], strict=True)
        if min(hi, grid[-1]) > max(lo, grid[0])
    ]
    summary = (
        f"predicted boundaries in k0 (horizon {steps}, batch {batch}): decoupled|decay "
        f"{bounds.decoupled_decay:.4g}, decay|catapult {bounds.decay_catapult:.4g}, catapult|divergent "
        f"{bounds.catapult_divergent:.4g}; in sigma (eta={eta:g}, |v|^2 + |theta|^2 = {norm_sq:g}): "
        + ", ".join(f"{v:.4g}" for v in edges.values())
    )
    return {"sigma": grid.tolist(), "peak": peak, "regions": regions, "summary": summary}
