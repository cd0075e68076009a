"""Typed options from TOML tables (:mod:`ninr.schema`): keys, types, required fields, value rules, round trip."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ninr.errors import ConfigError, check_positive_int, fail
from ninr.schema import convert, parse, to_dict


def _even(value: Any, where: str) -> int:
    """A custom field parser: an even integer (or a string spelling one)."""
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number % 2:
        raise fail(where, "an even integer", value)
    return number


@dataclass(frozen=True)
class Inner:
    """A nested table with a value rule."""

    steps: int = 10
    rate: float = 0.5

    def __post_init__(self) -> None:
        check_positive_int("steps", self.steps)


@dataclass(frozen=True)
class Options:
    """One field of every supported kind."""

    name: str
    flag: bool = False
    count: int = 1
    scale: float = 1.0
    limit: int | None = None
    mode: Literal["redrawn", "fixed"] = "redrawn"
    sigmas: tuple[float, ...] = (1.0,)
    pair: tuple[int, str] = (0, "a")
    extra: Mapping[str, Any] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    even: int = field(default=0, metadata={"parse": _even})
    anything: Any = None


def test_a_full_table_parses_with_conversions() -> None:
    got = parse(
        Options,
        {
            "name": "x",
            "flag": True,
            "count": 3,
            "scale": 2,
            "limit": 7,
            "mode": "fixed",
            "sigmas": [1, 2.5],
            "pair": [4, "b"],
            "extra": {"k": [1, 2]},
            "inner": {"steps": 4},
            "maybe": {"rate": 1},
            "even": "12",
            "anything": [None, "x"],
        },
        "[t]",
    )
    assert got == Options(
        name="x",
        flag=True,
        count=3,
        scale=2.0,
        limit=7,
        mode="fixed",
        sigmas=(1.0, 2.5),
        pair=(4, "b"),
        extra={"k": [1, 2]},
        inner=Inner(steps=4),
        maybe=Inner(rate=1.0),
        even=12,
        anything=[None, "x"],
    )
    # integers become floats where a float is declared (TOML writes 2 for 2.0)
    assert type(got.scale) is float and all(type(s) is float for s in got.sigmas) and type(got.maybe.rate) is float
    assert isinstance(got.extra, dict) and isinstance(got.sigmas, tuple)
    assert parse(Options, {"name": "y"}, "[t]") == Options(name="y")
    assert parse(Options, {"name": "y", "limit": None, "maybe": None}, "[t]") == Options(name="y")


def test_unknown_key_gets_a_did_you_mean_naming_the_table() -> None:
    with pytest.raises(ConfigError) as exc:
        parse(Options, {"name": "x", "sigma": [1.0]}, "[phases.options.linear]")
    message = str(exc.value)
    assert message.startswith("[phases.options.linear]: unknown key 'sigma'; did you mean 'sigmas'?")
    assert "(allowed: name, flag, count, scale, limit, mode, sigmas, pair, extra, inner, maybe, even, anything)" in (
        message
    )
    with pytest.raises(ConfigError, match=r"^\[t\]: unknown key 'zzz' \(allowed: "):  # nothing close: no suggestion
        parse(Options, {"name": "x", "zzz": 1}, "[t]")
    with pytest.raises(ConfigError, match=r"^\[t\.inner\]: unknown key 'step'; did you mean 'steps'"):
        parse(Options, {"name": "x", "inner": {"step": 3}}, "[t]")
    with pytest.raises(ConfigError, match=r"^\[t\.maybe\]: unknown key 'rat'; did you mean 'rate'"):
        parse(Options, {"name": "x", "maybe": {"rat": 3}}, "[t]")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("flag", 1, "`[t].flag` must be true or false, got 1"),
        ("flag", "yes", "`[t].flag` must be true or false, got 'yes'"),
        ("count", 1.5, "`[t].count` must be an integer, got 1.5"),
        ("count", True, "`[t].count` must be an integer, got True"),
        ("count", "3", "`[t].count` must be an integer, got '3'"),
        ("scale", "2", "`[t].scale` must be a number, got '2'"),
        ("scale", False, "`[t].scale` must be a number, got False"),
        ("name", 3, "`[t].name` must be a string, got 3"),
        ("limit", 2.5, "`[t].limit` must be an integer or absent, got 2.5"),
        ("mode", "fix", "`[t].mode` must be one of ['redrawn', 'fixed'], got 'fix'"),
        ("mode", None, "`[t].mode` must be one of ['redrawn', 'fixed'], got None"),
        ("sigmas", 1.0, "`[t].sigmas` must be a list of numbers, got 1.0"),
        ("sigmas", "1 2", "`[t].sigmas` must be a list of numbers, got '1 2'"),
        ("sigmas", [1.0, "x"], "`[t].sigmas[1]` must be a number, got 'x'"),
        ("pair", [1], "`[t].pair` must be a list of 2 items (an integer, a string), got [1]"),
        ("pair", [1, 2], "`[t].pair[1]` must be a string, got 2"),
        ("extra", [1], "`[t].extra` must be a table, got [1]"),
        ("inner", 3, "`[t.inner]` must be a table, got 3"),
        ("inner", {"steps": "4"}, "`[t.inner].steps` must be an integer, got '4'"),
        ("maybe", [], "`[t].maybe` must be a table or absent, got []"),
        ("maybe", {"steps": 0}, "[t.maybe]: `steps` must be an integer >= 1, got 0"),
        ("limit", "2", "`[t].limit` must be an integer or absent, got '2'"),
        ("maybe", {"rate": "x"}, "`[t.maybe].rate` must be a number, got 'x'"),
        ("even", 3, "`[t].even` must be an even integer, got 3"),
        ("even", True, "`[t].even` must be an even integer, got True"),
    ],
)
def test_a_wrong_type_names_the_key_the_rule_and_the_value(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(Options, {"name": "x", key: value}, "[t]")
    assert str(exc.value) == message


def test_convert_literals_bare_containers_unions_and_unsupported_types() -> None:
    # True == 1 and 1.0 == 1 in Python, but neither is the literal 1
    for value in (True, 1.0):
        with pytest.raises(ConfigError, match=r"must be one of \[1, 2\]"):
            convert(Literal[1, 2], value, "k")
    assert convert(Literal[1, 2], 2, "k") == 2
    assert convert(tuple[int, ...], [], "k") == ()
    assert convert(tuple, [1, "a"], "k") == (1, "a")
    assert convert(dict, {"a": 1}, "k") == {"a": 1}
    assert convert(int | str, "a", "k") == "a"
    with pytest.raises(ConfigError, match=r"^`k` must be an integer or a string, got 1.5$"):
        convert(int | str, 1.5, "k")
    with pytest.raises(ConfigError, match=r"^`k` must be an integer or absent, got 'x'$"):
        convert(int | None, "x", "k")
    with pytest.raises(ConfigError, match=r"^k: no parser for a field of type list\[int\]$"):
        convert(list[int], [1], "k")


def test_missing_required_keys_and_non_tables() -> None:
    with pytest.raises(ConfigError, match=r"^\[t\]: `name` is required$"):
        parse(Options, {"flag": True}, "[t]")
    with pytest.raises(ConfigError, match=r"^`\[t\]` must be a table, got \[1, 2\]$"):
        parse(Options, [1, 2], "[t]")


def test_value_rules_in_post_init_are_prefixed_with_the_table() -> None:
    with pytest.raises(ConfigError) as exc:
        parse(Inner, {"steps": 0}, "[phases.options.linear]")
    assert str(exc.value) == "[phases.options.linear]: `steps` must be an integer >= 1, got 0"
    with pytest.raises(ConfigError) as exc:
        parse(Options, {"name": "x", "inner": {"steps": -2}}, "[t]")
    assert str(exc.value) == "[t.inner]: `steps` must be an integer >= 1, got -2"


def test_init_false_fields_are_not_keys() -> None:
    @dataclass(frozen=True)
    class Derived:
        a: int = 1
        twice: int = field(init=False, default=0)

        def __post_init__(self) -> None:
            object.__setattr__(self, "twice", 2 * self.a)

    assert parse(Derived, {"a": 3}, "[t]").twice == 6
    with pytest.raises(ConfigError, match=r"unknown key 'twice' \(allowed: a\)"):
        parse(Derived, {"a": 3, "twice": 1}, "[t]")


def test_to_dict_gives_json_ready_data_that_parses_back() -> None:
    options = Options(
        name="x", sigmas=(0.5, 2.0), pair=(3, "z"), limit=4, inner=Inner(steps=2), maybe=Inner(rate=0.25), even=8
    )
    data = to_dict(options)
    assert data["sigmas"] == [0.5, 2.0] and data["pair"] == [3, "z"]
    assert data["inner"] == {"steps": 2, "rate": 0.5} and data["maybe"] == {"steps": 10, "rate": 0.25}
    assert parse(Options, data, "[t]") == options


@dataclass(frozen=True)
class Small:
    """A small options table for the round-trip property."""

    label: str
    on: bool = True
    n: int = 0
    x: float = 0.0
    cap: int | None = None
    noise: Literal["redrawn", "fixed"] = "redrawn"
    sigmas: tuple[float, ...] = ()
    inner: Inner = field(default_factory=Inner)


finite = st.floats(allow_nan=False, allow_infinity=False)
smalls = st.builds(
    Small,
    label=st.text(max_size=8),
    on=st.booleans(),
    n=st.integers(),
    x=finite,
    cap=st.none() | st.integers(),
    noise=st.sampled_from(["redrawn", "fixed"]),
    sigmas=st.lists(finite, max_size=4).map(tuple),
    inner=st.builds(Inner, steps=st.integers(min_value=1), rate=finite),
)


@given(smalls)
def test_parse_of_to_dict_is_the_identity(x: Small) -> None:
    assert parse(Small, to_dict(x), "t") == x


@given(st.floats(allow_nan=False) | st.integers(min_value=-(2**53), max_value=2**53))
def test_a_float_field_takes_any_real_number(value: float) -> None:
    got = convert(float, value, "k")
    assert type(got) is float and (got == value or (math.isinf(got) and math.isinf(value)))
