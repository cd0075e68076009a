"""Properties of the command line's argument types and of the preset parser, checked on generated inputs.

* The number types (``ninr.cli.args``): the text of any value that keeps the rule parses back to that value, and
  any text at all either parses to a value that keeps the rule or raises ``ArgumentTypeError`` naming the rule.
* ``KEY=VALUE``: any key without ``=`` and any JSON value round-trip; text without a key is refused.
* ``check_device``: any text is a torch device or a ``ConfigError`` naming the argument.
* The preset parser: a section holding a key its part does not know is refused naming that key, whatever else the
  section holds; valid tiny sections always parse and expand to the grid they describe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ninr.cli.args import arg_type, key_value, nonneg_float, nonneg_int, pos_float, pos_int, unit_float
from ninr.cli.eval import severity_int
from ninr.errors import ConfigError, check_device
from ninr.studies import PARTS, parse_preset
from ninr.train import TrainConfig

FAST = settings(max_examples=100, deadline=None)
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FLOATS: dict[str, tuple[Callable[[str], Any], str, Callable[[float], bool]]] = {
    "nonneg_float": (nonneg_float, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0),
    "pos_float": (pos_float, "a finite number > 0", lambda v: math.isfinite(v) and v > 0),
    "unit_float": (unit_float, "a number in [0, 1)", lambda v: 0 <= v < 1),
}
INTS: dict[str, tuple[Callable[[str], Any], str, Callable[[int], bool]]] = {
    "pos_int": (pos_int, "an integer >= 1", lambda v: v >= 1),
    "nonneg_int": (nonneg_int, "an integer >= 0", lambda v: v >= 0),
    "severity_int": (severity_int, "an integer in 1..5", lambda v: 1 <= v <= 5),
}
TYPES = {**FLOATS, **INTS}


def _parse(parser: Callable[[str], Any], text: str) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, message)`` of an ArgumentTypeError (any other exception escapes)."""
    try:
        return True, parser(text)
    except argparse.ArgumentTypeError as exc:
        return False, str(exc)


# ----------------------------------------------------------------------------- number types


@pytest.mark.parametrize("name", list(FLOATS))
@FAST
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_float_types_round_trip_what_keeps_the_rule_and_name_the_rule_otherwise(name: str, value: float) -> None:
    parser, rule, ok = FLOATS[name]
    parsed, got = _parse(parser, repr(value))
    if ok(value):
        assert parsed and got == value and math.copysign(1, got) == math.copysign(1, value)  # -0.0 stays -0.0
    else:
        assert not parsed and got == f"must be {rule}, got {value!r}"


@pytest.mark.parametrize("name", list(INTS))
@FAST
@given(value=st.integers())
def test_int_types_round_trip_what_keeps_the_rule_and_name_the_rule_otherwise(name: str, value: int) -> None:
    parser, rule, ok = INTS[name]
    parsed, got = _parse(parser, str(value))
    if ok(value):
        assert parsed and got == value and type(got) is int
    else:
        assert not parsed and got == f"must be {rule}, got {value}"


@pytest.mark.parametrize("name", list(INTS))
@FAST
@given(value=st.floats())
def test_int_types_refuse_the_text_of_a_float_naming_the_rule(name: str, value: float) -> None:
    # a float's repr always has a ".", an "e", "inf" or "nan", none of which int() takes
    parser, rule, _ = INTS[name]
    parsed, got = _parse(parser, repr(value))
    assert not parsed and got == f"must be {rule}, got {repr(value)!r}"


@pytest.mark.parametrize("name", list(TYPES))
@FAST
@given(text=st.text())
def test_any_text_parses_within_the_rule_or_is_refused_naming_it(name: str, text: str) -> None:
    parser, rule, ok = TYPES[name]
    parsed, got = _parse(parser, text)
    if parsed:
        assert ok(got)
    else:
        assert got.startswith(f"must be {rule}, got ")


@FAST
@given(lo=st.integers(-1000, 1000), value=st.integers(-2000, 2000))
def test_arg_type_applies_its_own_rule(lo: int, value: int) -> None:
    parser = arg_type(f"an integer >= {lo}", lambda v: v >= lo, int)
    parsed, got = _parse(parser, str(value))
    assert parsed == (value >= lo)
    assert got == value if parsed else got == f"must be an integer >= {lo}, got {value}"


# ----------------------------------------------------------------------------- KEY=VALUE

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
KEYS = st.text(min_size=1).filter(lambda k: "=" not in k)


@FAST
@given(key=KEYS, value=JSON)
def test_key_value_round_trips_json_values(key: str, value: Any) -> None:
    assert key_value(f"{key}={json.dumps(value)}") == (key, value)


@FAST
@given(key=KEYS, raw=st.text())
def test_key_value_keeps_text_that_is_not_json_as_text(key: str, raw: str) -> None:
    try:
        expected = json.loads(raw)
    except json.JSONDecodeError:
        expected = raw
    assert key_value(f"{key}={raw}") == (key, expected)


@FAST
@given(text=st.text().filter(lambda t: "=" not in t) | st.text().map(lambda t: "=" + t))
def test_key_value_without_a_key_is_refused_naming_the_form(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be KEY=VALUE, got "):
        key_value(text)


# ----------------------------------------------------------------------------- devices


@FAST
@given(text=st.text(max_size=12) | st.sampled_from(["cpu", "cuda", "cuda:0", "cuda:x", "mps", "meta", "cpu:0"]))
def test_check_device_takes_torch_devices_and_names_the_argument_otherwise(text: str) -> None:
    try:
        torch_ok = bool(text) and torch.device(text) is not None
    except RuntimeError:
        torch_ok = False
    try:
        got = check_device("--device", text)
    except ConfigError as exc:
        assert not torch_ok and str(exc).startswith("`--device` must be a torch device")
    else:
        assert torch_ok and got == text


def test_the_cpu_is_always_available() -> None:
    assert check_device("--device", "cpu", available=True) == "cpu"


# ----------------------------------------------------------------------------- the preset parser

VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers())


def _known(part: str) -> list[str]:
    return [f.name for f in dataclasses.fields(PARTS.get(part).Section) if f.init]


@st.composite
def with_an_unknown_key(draw: st.DrawFn, part: str) -> tuple[dict[str, Any], str]:
    """A random table for ``part``: some of its keys (random values) and unknown keys, in a random order; and the
    first unknown key."""
    known = _known(part)
    keys = draw(st.lists(st.sampled_from(known), unique=True, max_size=len(known)))
    unknown = draw(st.lists(st.text(min_size=1, max_size=8).filter(lambda k: k not in known), min_size=1, max_size=3))
    order = draw(st.permutations(keys + list(dict.fromkeys(unknown))))
    table = {key: draw(VALUES) for key in order}
    return table, next(k for k in table if k not in known)


@pytest.mark.parametrize("part", PARTS.names())
@FAST
@given(data=st.data())
def test_a_section_with_an_unknown_key_is_refused_naming_the_key(part: str, data: st.DataObject) -> None:
    table, first = data.draw(with_an_unknown_key(part))
    with pytest.raises(ConfigError) as exc:
        parse_preset({"name": "p", part: table})
    assert f"[{part}]: unknown key {first!r}" in str(exc.value)


@FAST
@given(key=st.text(min_size=1, max_size=10).filter(lambda k: k not in ("name", "description", *PARTS.names())))
def test_an_unknown_section_is_refused_naming_it(key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_preset({"name": "p", key: {}, "phases": {"seeds": [0]}})
    assert f"unknown section {key!r}" in str(exc.value)


@SLOW
@given(key=st.text(min_size=1, max_size=8).filter(lambda k: k not in {f.name for f in dataclasses.fields(TrainConfig)}))
def test_an_unknown_train_field_is_refused_naming_it(key: str) -> None:
    preset = parse_preset({"name": "p", "table": {"seeds": 1, "train": {"dataset": "synthetic", key: 1}}})
    with pytest.raises(ConfigError) as exc:
        PARTS.get("table").expand(preset.section("table"), "p")
    assert f"unknown config key {key!r}" in str(exc.value)


SEEDS = st.integers(1, 3) | st.lists(st.integers(0, 99), min_size=1, max_size=3, unique=True)


@st.composite
def grid_sections(draw: st.DrawFn) -> dict[str, Any]:
    """A valid tiny ``[table]`` section: synthetic data, a few architectures and rows that differ."""
    section: dict[str, Any] = {"seeds": draw(SEEDS)}
    if draw(st.booleans()):
        section["stack"] = draw(st.booleans())
    train = {"dataset": "synthetic", "epochs": draw(st.integers(1, 3)), "batch_size": draw(st.integers(1, 256))}
    if draw(st.booleans()):
        train["max_steps"] = draw(st.integers(1, 10))
    section["train"] = train
    n_arch = draw(st.integers(0, 2))
    if n_arch:  # each architecture its own width, so no two runs share a config
        section["arch"] = {f"A{i}": {"model": "mlp", "model_kwargs": {"width": 4 + i}} for i in range(n_arch)}
    n_rows = draw(st.integers(0, 3))
    if n_rows:
        rows = []
        for i in range(n_rows):  # each row its own learning rate
            row: dict[str, Any] = {"label": f"row {i}", "train": {"lr": 0.01 * (i + 1)}}
            if draw(st.booleans()):
                sigma = draw(st.floats(0, 10, allow_nan=False))
                row["methods"] = [{"name": "in-ninr", "params": {"sigma": sigma}}]
            rows.append(row)
        section["variant"] = rows
    return section


@SLOW
@given(section=grid_sections())
def test_valid_grid_sections_parse_and_expand_to_their_grid(section: dict[str, Any]) -> None:
    preset = parse_preset({"name": "p", "table": section})
    specs = PARTS.get("table").expand(preset.section("table"), "p")
    seeds = section["seeds"]
    n_seeds = seeds if isinstance(seeds, int) else len(seeds)
    assert len(specs) == max(1, len(section.get("arch", {}))) * max(1, len(section.get("variant", []))) * n_seeds
    assert len({s.run_id for s in specs}) == len(specs)
    for spec in specs:
        config = spec.options.train
        assert (config.dataset, config.epochs, config.batch_size) == (
            "synthetic",
            section["train"]["epochs"],
            section["train"]["batch_size"],
        )
        assert config.max_steps == section["train"].get("max_steps")


@SLOW
@given(
    seeds=st.lists(st.integers(0, 99), min_size=1, max_size=2, unique=True),
    sigmas=st.lists(st.floats(0.01, 50, allow_nan=False), min_size=1, max_size=4, unique=True),
    noise=st.lists(st.sampled_from(["redrawn", "fixed"]), min_size=1, unique=True),
    steps=st.integers(1, 50),
)
def test_valid_phases_sections_parse_and_expand_to_their_grid(
    seeds: list[int], sigmas: list[float], noise: list[str], steps: int
) -> None:
    section = {"seeds": seeds, "options": {"linear": {"sigmas": sigmas, "noise": noise, "steps": steps}}}
    preset = parse_preset({"name": "p", "phases": section})
    specs = PARTS.get("phases").expand(preset.section("phases"), "p")
    assert len(specs) == len(seeds) * len(sigmas) * len(noise)
    assert {(s.options.sigma, s.options.noise) for s in specs} == {(x, n) for x in sigmas for n in noise}
