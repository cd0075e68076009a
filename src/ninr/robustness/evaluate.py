"""``evaluate(model, data, suite) -> records``: clean, corrupted, adversarial and shifted accuracy.

Records are tidy dicts, one per (condition, level, noise mode)::

    {"condition": "motion-blur", "family": "blur", "severity": 3, "intensity": None, "epsilon": None,
     "metric": "accuracy", "value": 0.71, "noise": "off", "draws": 1, "n": 10000, **meta}

Clean accuracy is always the first record. The evaluation cannot fool itself silently: it warns
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
from ninr.robustness.corruptions import get_corruption
from ninr.robustness.shift import labelled_split, shift_split
from ninr.robustness.suites import Suite, get_suite

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
    """The loop shared by every block: chunks, noise modes, draws."""

    def __init__(self, model: nn.Module, modes: list[str], draws: int, batch_size: int, device: torch.device):
        self.model, self.modes, self.draws, self.batch_size, self.device = model, modes, draws, batch_size, device

    def reps(self, mode: str) -> int:
        return self.draws if mode == "on" else 1

    def correct(self, x: torch.Tensor, y: torch.Tensor, mode: str) -> int:
        total = 0
        with force_noise(self.model, mode == "on"):
            for _ in range(self.reps(mode)):
                total += int((self.model(x).argmax(dim=1) == y).sum())
        return total

    def chunks(self, x: torch.Tensor, y: torch.Tensor, size: int | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        step = size or self.batch_size
        for start in range(0, len(x), step):
            yield x[start : start + step].to(self.device), y[start : start + step].to(self.device)


def _record(condition: str, family: str, mode: str, value: float, n: int, draws: int, **levels: Any) -> Record:
    return {
        "condition": condition,
        "family": family,
        "severity": levels.get("severity"),
        "intensity": levels.get("intensity"),
        "epsilon": levels.get("epsilon"),
        "metric": "accuracy",
        "value": value,
        "noise": mode,
        "draws": draws,
        "n": n,
    }


def _plain_block(
    ev: _Evaluator, ctl: _NoiseControl, x: torch.Tensor, y: torch.Tensor, condition: str, family: str
) -> list[Record]:
    records = []
    ctl.reseed(condition)
    for mode in ev.modes:
        hits = 0
        with torch.inference_mode():
            for xb, yb in ev.chunks(x, y):
                hits += ev.correct(xb, yb, mode)
        n = len(x)
        records.append(_record(condition, family, mode, hits / (n * ev.reps(mode)), n, ev.reps(mode)))
    return records


def _corruption_block(
    ev: _Evaluator, ctl: _NoiseControl, x: torch.Tensor, y: torch.Tensor, name: str, levels: list[dict], seed: int
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
                    hits[(i, mode)] += ev.correct(xc, yb, mode)
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
            kw = {**spec.options(), **({"generator": gen} if spec.name == "pgd" else {})}
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

    Returns:
        One record per condition, level and noise mode.
    """
    x, y = labelled_split(data)
    spec = get_suite(suite, severities=severities, intensities=intensities, epsilons=epsilons)
    check_positive_int("draws", draws)
    check_positive_int("batch_size", batch_size)
    check_positive_int("attack_batch_size", attack_batch_size)
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
    with _controlled_noise(model, seed) as ctl:
        ctl.reseed("probe")
        probe = x[:PROBE_SIZE].to(device)
        randomized = outputs_differ(model, probe)
        modes = _modes(noise, randomized, model)
        if randomized:
            with force_noise(model, False):
                still = outputs_differ(model, probe)
            extra = " (it stays random with its ninr noise off: dropout in train mode?)" if still else ""
            warnings.warn(
                f"the model is randomized: two identical forward passes differ{extra}; reporting accuracy with its "
                f"noise off and on (mean over {draws} draws), attacks on the noisy model use EOT",
                RandomizedModelWarning,
                stacklevel=2,
            )
        ev = _Evaluator(model, modes, draws, batch_size, device)
        say("clean")
        records += _plain_block(ev, ctl, x, y, "clean", "clean")
        for name in spec.corruptions:
            say(name)
            levels = [{"severity": s} for s in spec.severities]
            records += _corruption_block(ev, ctl, x, y, name, levels, seed)
        for name in spec.curves:
            say(f"{name} (noise std)")
            records += _corruption_block(ev, ctl, x, y, name, [{"intensity": s} for s in spec.intensities], seed)
        for name in spec.shifts:
            say(f"shift {name}")
            xs, ys = shift_split(name, (x, y), seed=seed)
            records += _plain_block(ev, ctl, xs, ys, name, "shift")
        for name, other in (shift_data or {}).items():
            say(f"shift {name}")
            xs, ys = shift_split(other, (x, y), seed=seed)
            records += _plain_block(ev, ctl, xs, ys, name, "shift")
        if spec.attacks:
            say("attacks")
            options = {"eot_samples": eot_samples, "attack_batch_size": attack_batch_size}
            records += _attack_block(ev, ctl, x, y, spec, options, seed)
    extra_fields = dict(meta or {})
    return [{**r, **extra_fields} for r in records]
