"""Noise-scale schedules: closed forms at chosen steps, endpoints, and validation."""

from __future__ import annotations

import itertools
import math

import pytest

from ninr.errors import ConfigError, UnknownNameError
from ninr.functional.perturb import gradient_noise_std
from ninr.functional.schedules import SCHEDULES, Schedule, scheduled_scale


def test_registry_holds_the_documented_schedules() -> None:
    assert {"constant", "linear", "cosine", "anneal"} <= set(SCHEDULES.names())


@pytest.mark.parametrize("name", ["constant", "linear", "cosine", "anneal"])
def test_every_schedule_starts_at_one(name: str) -> None:
    assert Schedule(name, decay_steps=10 if name in ("linear", "cosine") else None)(0) == 1.0


def test_constant() -> None:
    s = Schedule("constant")
    assert [s(t) for t in (0, 1, 10**6)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(("step", "expected"), [(0, 1.0), (25, 0.8), (50, 0.6), (100, 0.2), (500, 0.2)])
def test_linear_decays_to_final_then_stays(step: int, expected: float) -> None:
    assert Schedule("linear", decay_steps=100, final=0.2)(step) == pytest.approx(expected)


@pytest.mark.parametrize(("step", "expected"), [(0, 1.0), (50, 0.5), (100, 0.0), (1000, 0.0)])
def test_cosine_closed_form(step: int, expected: float) -> None:
    assert Schedule("cosine", decay_steps=100)(step) == pytest.approx(expected, abs=1e-12)


def test_cosine_with_final_quarter_point() -> None:
    # final + (1 - final) (1 + cos(pi/4)) / 2 at a quarter of the way
    expected = 0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2
    assert Schedule("cosine", decay_steps=40, final=0.1)(10) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_decays_are_monotone_non_increasing(name: str) -> None:
    s = Schedule(name, decay_steps=37, final=0.3)
    values = [s(t) for t in range(60)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.3)


@pytest.mark.parametrize("step", [0, 1, 10, 1000])
def test_anneal_squared_is_the_neelakantan_variance_decay(step: int) -> None:
    eta, gamma = 0.3, 0.55
    std = scheduled_scale(math.sqrt(eta), step, Schedule("anneal", gamma=gamma))
    assert std**2 == pytest.approx(eta / (1 + step) ** gamma)
    assert std == pytest.approx(gradient_noise_std(step, eta, gamma))


def test_schedule_is_a_pure_function_of_the_step() -> None:
    s = Schedule("cosine", decay_steps=20)
    first = [s(t) for t in (7, 3, 7, 19)]
    assert first == [s(t) for t in (7, 3, 7, 19)]
    assert first[0] == first[2]


def test_bad_schedules_are_rejected_at_construction() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'cosine'"):
        Schedule("cosin")
    with pytest.raises(ConfigError, match="`decay_steps` must be an integer >= 1 for schedule 'linear'"):
        Schedule("linear")
    with pytest.raises(ConfigError, match="`decay_steps` must be an integer >= 1"):
        Schedule("cosine", decay_steps=0)
    with pytest.raises(ConfigError, match="`final` must be a number in"):
        Schedule("linear", decay_steps=5, final=1.5)
    with pytest.raises(ConfigError, match="`gamma`"):
        Schedule("anneal", gamma=math.nan)
    with pytest.raises(ConfigError, match="`step`"):
        Schedule("constant")(-1)
