"""The benchmarks' goal verdicts: PASS/MISS from the measured ratio, and which variants each goal compares."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The benchmark modules, imported as run.py imports them (their directory on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    modules = {name: importlib.import_module(name) for name in ("bench_common", "epoch_time")}
    monkeypatch.setattr(modules["bench_common"], "GOALS", [])
    return modules


def test_check_goal_verdicts(bench: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]) -> None:
    check = bench["bench_common"].check_goal
    assert check("faster", 2.1, 2.0, at_least=True) == "PASS"
    assert check("faster", 1.9, 2.0, at_least=True) == "MISS"
    assert check("overhead", 0.049, 0.05, at_least=False, unit="%") == "PASS"
    assert check("overhead", 0.11, 0.10, at_least=False, unit="%") == "MISS"
    assert check("unmeasured", math.nan, 1.0, at_least=True) == "MISS"
    out = capsys.readouterr().out
    assert "goal faster: 2.10x (goal >= 2.00x) PASS" in out and "+11.0% (goal <= 10%) MISS" in out
    assert [g["verdict"] for g in bench["bench_common"].GOALS] == ["PASS", "MISS", "PASS", "MISS", "MISS"]


def test_epoch_time_goals_compare_the_named_variants(bench: dict[str, ModuleType]) -> None:
    epoch_time = bench["epoch_time"]
    names = {c.name for c in epoch_time.cases(True)}
    for _, case, base, _ in epoch_time.GOALS:  # every goal names two variants the suite runs
        assert case in names and base in names
    times = {
        "reference DataLoader b64 fp32": [4.0, 6.0],
        "ninr stacked K=8 b64 fp32": [1.0, 4.0],  # per-round speed-ups 4.0 and 1.5: median 2.75
        "ninr single dropout b64 fp32": [2.0, 2.0],
        "ninr stacked K=8 dropout b64 fp32": [2.5, 2.5],
    }
    epoch_time.check_goals(times)
    got = {g["goal"][:3]: (g["value"], g["verdict"]) for g in bench["bench_common"].GOALS}
    assert got == {"(a)": (2.75, "PASS"), "(d)": (0.8, "MISS")}  # (b)'s bf16 variant did not run: no verdict
