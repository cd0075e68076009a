"""``evaluate(model, data, suite) -> records``: clean, corrupted, adversarial and shifted accuracy.

Records are tidy dicts, one per (condition, level, noise mode, metric)::

    {"condition": "motion-blur", "family": "blur", "severity": 3, "intensity": None, "epsilon": None,
     "metric": "accuracy", "value": 0.71, "noise": "off", "draws": 1, "n": 10000, **meta}

Clean accuracy is always the first record. The accuracy records come first, in the order of the suite's
blocks (clean, corruptions, noise curves, shifts, attacks); then the certification records of a suite with
``certify`` (:func:`ninr.robustness.certify.certify`: per smoothing sigma, certified accuracy at each radius,
the abstain rate and the average certified radius); then, with ``calibration=True`` (the default), the
calibration records of every condition but the attacks, in the order of its accuracy records: metrics
``"ece"`` (with the reliability bins), ``"nll"`` and ``"brier"`` (:mod:`ninr.robustness.calibration`) of the
model's softmax, or with the noise on of the mean softmax over the ``draws`` passes.

The model runs in its parameters' dtype: inputs (and every random number, drawn in float32) are cast to it
right before each forward pass, so a float16 or bfloat16 model evaluates like a float32 one (at its own
precision).

The evaluation cannot fool itself silently: it warns
(:class:`TrainModeWarning`) when the model is in train mode, and it detects a randomized model (two
identical forward passes differ, e.g. NINs under ``ninr.nn.force_noise``), warns
(:class:`RandomizedModelWarning`), and then reports accuracy with the noise off and with the noise on
(the mean over ``draws`` passes), attacking the noisy model with EOT gradients.

Everything is deterministic given ``seed``: corruption ``c`` draws from ``make_generator(seed,
"corruption", c)`` (shared by its severities), and the model's noise modules are reseeded from ``seed`` and
the condition for the evaluation and restored afterwards.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ninr.errors import ConfigError, check_choice, check_positive_int
from ninr.nn.modes import force_noise, noise_modules
from ninr.rng import derive_seed, make_generator
from ninr.robustness.attacks import attack
from ninr.robustness.calibration import (
    DEFAULT_BINS,
    ExampleCalibration,
    mean_softmax,
    per_example_from_log_probs,
    summarize,
)
from ninr.robustness.certify import abstain_rate, average_certified_radius, certified_accuracy, certify
from ninr.robustness.corruptions import get_corruption
from ninr.robustness.shift import labelled_split, shift_split
from ninr.robustness.suites import CertifySpec, Suite, get_suite

NOISE_MODES = ("auto", "off", "on", "both")
PROBE_SIZE = 64  # examples in the two forward passes that detect a randomized model
DEFAULT_DRAWS = 5  # noise draws averaged for noise-on accuracy


class TrainModeWarning(UserWarning):
    """The model was in train mode when evaluated (noise and dropout on, batch norm updating)."""


class RandomizedModelWarning(UserWarning):
    """Two identical forward passes of the model gave different outputs."""


Record = dict[str, Any]


class _NoiseControl:
    """Reseeds the model's noise modules per condition and restores their seeds and streams on exit."""

    def __init__(self, model: nn.Module, seed: int) -> None:
        self.modules = noise_modules(model)
        self.seed = seed
        self.saved = [(m.seed, m.get_rng_state()) for m in self.modules]

    def reseed(self, *key: str | int) -> None:
        for i, m in enumerate(self.modules):
            m.reseed(derive_seed(self.seed, "eval-noise", *key, i))

    def restore(self) -> None:
        for m, (seed, state) in zip(self.modules, self.saved, strict=True):
            m.reseed(seed)
            if state:
                m.set_rng_state(state)


@contextlib.contextmanager
def _controlled_noise(model: nn.Module, seed: int) -> Iterator[_NoiseControl]:
    ctl = _NoiseControl(model, seed)
    try:
        yield ctl
    finally:
        ctl.restore()


def _device(model: nn.Module, fallback: torch.device) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else fallback


def parameter_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (``None`` without one)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


class InputCast(nn.Module):
    """Runs ``model`` on its input cast to ``dtype`` (the model's parameter dtype); gradients flow back to
    the input's own dtype, so attacks on a half-precision model keep float32 images."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.input_dtype = dtype
        self.training = model.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x if self.input_dtype is None else x.to(self.input_dtype))


@torch.no_grad()
def outputs_differ(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether two identical forward passes on ``x`` give different outputs (a randomized model)."""
    return not torch.equal(model(x), model(x))


def _modes(noise: str, randomized: bool, model: nn.Module) -> list[str]:
    check_choice("noise", noise, NOISE_MODES)
    if noise == "auto":
        return ["off", "on"] if randomized else ["off"]
    if noise == "off":
        return ["off"]
    if not noise_modules(model) and not randomized:
        raise ConfigError(f"`noise` must be 'auto' or 'off' for a model without noise modules, got {noise!r}")
    return ["on"] if noise == "on" else ["off", "on"]


class _Evaluator:
    """The loop shared by every block: chunks, noise modes, draws; per-example calibration when asked."""

    def __init__(
        self, model: nn.Module, modes: list[str], draws: int, batch_size: int, device: torch.device, calibration: bool
    ):
        self.model, self.modes, self.draws, self.batch_size, self.device = model, modes, draws, batch_size, device
        self.calibration = calibration

    def reps(self, mode: str) -> int:
        return self.draws if mode == "on" else 1

    def correct(self, x: torch.Tensor, y: torch.Tensor, mode: str) -> int:
        return self.run(x, y, mode, calibrate=False)[0]

    def run(
        self, x: torch.Tensor, y: torch.Tensor, mode: str, calibrate: bool = True
    ) -> tuple[int, ExampleCalibration | None]:
        """Correct predictions summed over the draws, and the per-example calibration of the mean softmax."""
        total = 0
        logits = []
        with force_noise(self.model, mode == "on"):
            for _ in range(self.reps(mode)):
                out = self.model(x)
                total += int((out.argmax(dim=1) == y).sum())
                if calibrate and self.calibration:
                    logits.append(out)
        if not logits:
            return total, None
        return total, per_example_from_log_probs(mean_softmax(torch.stack(logits)), y)

    def chunks(self, x: torch.Tensor, y: torch.Tensor, size: int | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        step = size or self.batch_size
        for start in range(0, len(x), step):
            yield x[start : start + step].to(self.device), y[start : start + step].to(self.device)


def _record(
    condition: str, family: str, mode: str, value: float, n: int, draws: int, metric: str = "accuracy", **levels: Any
) -> Record:
    return {
        "condition": condition,
        "family": family,
        "severity": levels.get("severity"),
        "intensity": levels.get("intensity"),
        "epsilon": levels.get("epsilon"),
        "metric": metric,
        "value": value,
        "noise": mode,
        "draws": draws,
        "n": n,
    }


class _Calibration:
    """Per-example calibration of each (condition, level, noise mode), in the order of their accuracy
    records; turned into the ``ece``, ``nll`` and ``brier`` records at the end."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.parts: dict[tuple[Any, ...], list[ExampleCalibration]] = {}
        self.meta: dict[tuple[Any, ...], tuple[str, str, str, int, dict[str, Any]]] = {}

    def add(
        self,
        condition: str,
        family: str,
        mode: str,
        draws: int,
        levels: dict[str, Any],
        part: ExampleCalibration | None,
    ) -> None:
        if part is None:
            return
        key = (condition, mode, tuple(sorted(levels.items())))
        self.parts.setdefault(key, []).append(part)
        self.meta[key] = (condition, family, mode, draws, levels)

    def records(self) -> list[Record]:
        out = []
        for key, parts in self.parts.items():
            condition, family, mode, draws, levels = self.meta[key]
            stats = ExampleCalibration.cat(parts)
            metrics, bins = summarize(stats, self.bins)
            n = len(stats.nll)
            for metric, value in metrics.items():
                rec = _record(condition, family, mode, value, n, draws, metric=metric, **levels)
                if metric == "ece":
                    rec |= {"bins": self.bins, "bin_count": bins.count, "bin_confidence": bins.confidence,
                            "bin_accuracy": bins.accuracy}  # fmt: skip
                out.append(rec)
        return out


def _plain_block(
    ev: _Evaluator,
    ctl: _NoiseControl,
    x: torch.Tensor,
    y: torch.Tensor,
    condition: str,
    family: str,
    cal: _Calibration,
) -> list[Record]:
    records = []
    ctl.reseed(condition)
    for mode in ev.modes:
        hits = 0
        with torch.inference_mode():
            for xb, yb in ev.chunks(x, y):
                got, part = ev.run(xb, yb, mode)
                hits += got
                cal.add(condition, family, mode, ev.reps(mode), {}, part)
        n = len(x)
        records.append(_record(condition, family, mode, hits / (n * ev.reps(mode)), n, ev.reps(mode)))
    return records


def _corruption_block(
    ev: _Evaluator,
    ctl: _NoiseControl,
    x: torch.Tensor,
    y: torch.Tensor,
    name: str,
    levels: list[dict],
    seed: int,
    cal: _Calibration,
) -> list[Record]:
    spec = get_corruption(name)
    gen = make_generator(seed, "corruption", spec.name)
    hits = {(i, mode): 0 for i in range(len(levels)) for mode in ev.modes}
    ctl.reseed(spec.name)
    with torch.inference_mode():
        for xb, yb in ev.chunks(x, y):
            state = spec.prepare(xb, spec.keys(len(xb), gen, xb.device))
            for i, level in enumerate(levels):
                xc = spec.apply(xb, spec.level(**level), state).clamp_(0.0, 1.0)
                for mode in ev.modes:
                    got, part = ev.run(xc, yb, mode)
                    hits[(i, mode)] += got
                    cal.add(spec.name, spec.family, mode, ev.reps(mode), level, part)
    n = len(x)
    return [
        _record(spec.name, spec.family, mode, hits[(i, mode)] / (n * ev.reps(mode)), n, ev.reps(mode), **level)
        for i, level in enumerate(levels)
        for mode in ev.modes
    ]


def _attack_block(
    ev: _Evaluator, ctl: _NoiseControl, x: torch.Tensor, y: torch.Tensor, suite: Suite, options: dict, seed: int
) -> list[Record]:
    records = []
    for spec in suite.attacks:
        for mode in ev.modes:
            ctl.reseed(spec.label, mode)
            gen = make_generator(seed, "attack", spec.label)
            kw = {**spec.options(), **({"generator": gen} if spec.takes_generator else {})}
            kw["eot_samples"] = options["eot_samples"] if mode == "on" else 1
            hits = [0] * len(suite.epsilons)
            for xb, yb in ev.chunks(x, y, options["attack_batch_size"]):
                with force_noise(ev.model, mode == "on"):
                    adv = attack(spec.name, ev.model, xb, yb, suite.epsilons, **kw)
                with torch.inference_mode():
                    for i in range(len(suite.epsilons)):
                        hits[i] += ev.correct(adv[i], yb, mode)
            n, reps = len(x), ev.reps(mode)
            records += [
                _record(spec.label, "attack", mode, hits[i] / (n * reps), n, reps, epsilon=eps)
                for i, eps in enumerate(suite.epsilons)
            ]
    return records


def _certify_block(
    ev: _Evaluator, ctl: _NoiseControl, x: torch.Tensor, y: torch.Tensor, spec: CertifySpec, seed: int
) -> list[Record]:
    """Per smoothing sigma and noise mode: certified accuracy at each radius, abstain rate, average radius.

    ``intensity`` holds the smoothing sigma and ``epsilon`` the L2 radius (no perturbation of that L2 norm
    changes the smoothed classifier's prediction). Both noise modes get the same smoothing noise (one
    generator per sigma).
    """
    n_ex = len(x) if spec.examples is None else min(spec.examples, len(x))
    xs, ys = x[:n_ex], y[:n_ex]
    records: list[Record] = []
    for sigma in spec.sigmas:
        for mode in ev.modes:
            ctl.reseed("certify", f"{sigma:g}", mode)
            gen = make_generator(seed, "certify", f"{sigma:g}")
            with force_noise(ev.model, mode == "on"):
                cert = certify(
                    ev.model, xs, ys, sigma=sigma, n0=spec.n0, n=spec.n, alpha=spec.alpha, batch=ev.batch_size,
                    generator=gen,
                )  # fmt: skip
            extra = {"n0": spec.n0, "alpha": spec.alpha}
            for radius, value in zip(spec.radii, certified_accuracy(cert, spec.radii), strict=True):
                rec = _record("certify", "certify", mode, value, n_ex, spec.n, "certified-accuracy",
                              intensity=sigma, epsilon=radius)  # fmt: skip
                records.append(rec | extra)
            for metric, value in (
                ("abstain-rate", abstain_rate(cert)),
                ("average-radius", average_certified_radius(cert)),
            ):
                records.append(
                    _record("certify", "certify", mode, value, n_ex, spec.n, metric, intensity=sigma) | extra
                )
    return records


def evaluate(
    model: nn.Module,
    data: Any,
    suite: str | Suite = "all",
    *,
    severities: Sequence[int] | None = None,
    intensities: Sequence[float] | None = None,
    epsilons: Sequence[float] | None = None,
    shift_data: Mapping[str, Any] | None = None,
    noise: str = "auto",
    draws: int = DEFAULT_DRAWS,
    eot_samples: int | None = None,
    batch_size: int = 1000,
    attack_batch_size: int = 500,
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    calibration: bool = True,
    bins: int = DEFAULT_BINS,
) -> list[Record]:
    """Evaluate ``model`` on ``data``'s test split under a suite; returns tidy records (clean first).

    Args:
        model: a classifier returning logits; evaluated in the mode it is in (a warning if train).
        data: a :class:`ninr.data.Dataset` (its test split is used) or an ``(x, y)`` pair.
        suite: a name in :data:`ninr.robustness.suites.SUITES` or a :class:`Suite`.
        severities, intensities, epsilons: override the suite's grids.
        shift_data: other labelled data sets (name to Dataset or ``(x, y)``) with the same input shape.
        noise: ``"auto"`` (both modes when the model is randomized, else off), ``"off"``, ``"on"``, ``"both"``.
        draws: forward passes averaged for noise-on accuracy.
        eot_samples: EOT gradient samples for attacks on the noisy model (``None``: attacks' default).
        batch_size: examples per forward pass (corruptions are applied per batch, results do not change).
        attack_batch_size: examples per attack batch (each repeated once per epsilon).
        seed: seed of every random stream of the evaluation.
        meta: fields added to every record (run id, method, seed, ...).
        progress: called with a short message before each block.
        calibration: also return the ``ece``, ``nll`` and ``brier`` records of every condition but the attacks.
        bins: equal-width confidence bins of the expected calibration error.

    Returns:
        One record per condition, level, noise mode and metric: the accuracy records first (clean first), then
        the certification records (a suite with ``certify``), then the calibration records.
    """
    x, y = labelled_split(data)
    spec = get_suite(suite, severities=severities, intensities=intensities, epsilons=epsilons)
    check_positive_int("draws", draws)
    check_positive_int("batch_size", batch_size)
    check_positive_int("attack_batch_size", attack_batch_size)
    check_positive_int("bins", bins)
    say = progress or (lambda message: None)
    if model.training:
        warnings.warn(
            "the model is in train mode: its noise, dropout and batch norm act as in training; call model.eval() "
            "for test-time accuracy (evaluating as it is)",
            TrainModeWarning,
            stacklevel=2,
        )
    device = _device(model, x.device)
    records: list[Record] = []
    cal = _Calibration(bins)
    net = InputCast(model, parameter_dtype(model))
    with _controlled_noise(model, seed) as ctl:
        ctl.reseed("probe")
        probe = x[:PROBE_SIZE].to(device)
        randomized = outputs_differ(net, probe)
        modes = _modes(noise, randomized, model)
        if randomized:
            with force_noise(model, False):
                still = outputs_differ(net, probe)
            extra = " (it stays random with its ninr noise off: dropout in train mode?)" if still else ""
            warnings.warn(
                f"the model is randomized: two identical forward passes differ{extra}; reporting accuracy with its "
                f"noise off and on (mean over {draws} draws), attacks on the noisy model use EOT",
                RandomizedModelWarning,
                stacklevel=2,
            )
        ev = _Evaluator(net, modes, draws, batch_size, device, calibration)
        say("clean")
        records += _plain_block(ev, ctl, x, y, "clean", "clean", cal)
        for name in spec.corruptions:
            say(name)
            levels = [{"severity": s} for s in spec.severities]
            records += _corruption_block(ev, ctl, x, y, name, levels, seed, cal)
        for name in spec.curves:
            say(f"{name} (noise std)")
            records += _corruption_block(ev, ctl, x, y, name, [{"intensity": s} for s in spec.intensities], seed, cal)
        for name in spec.shifts:
            say(f"shift {name}")
            xs, ys = shift_split(name, (x, y), seed=seed)
            records += _plain_block(ev, ctl, xs, ys, name, "shift", cal)
        for name, other in (shift_data or {}).items():
            say(f"shift {name}")
            xs, ys = shift_split(other, (x, y), seed=seed)
            records += _plain_block(ev, ctl, xs, ys, name, "shift", cal)
        if spec.attacks:
            say("attacks")
            options = {"eot_samples": eot_samples, "attack_batch_size": attack_batch_size}
            records += _attack_block(ev, ctl, x, y, spec, options, seed)
        if spec.certify is not None:
            say("certify")
            records += _certify_block(ev, ctl, x, y, spec.certify, seed)
        records += cal.records()
    extra_fields = dict(meta or {})
    return [{**r, **extra_fields} for r in records]
