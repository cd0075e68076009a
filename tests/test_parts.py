"""Every registered study part keeps the contract of tests/part_harness.py, on a tiny section of its own.

The parts are those registered when the tests are collected (``PARTS.names()``): a new part is tested the moment
it is registered, and fails here until :data:`TINY` has a tiny section for it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import part_harness as harness
from ninr.studies import PARTS, DaskExecutor
from ninr.train import MethodSpec, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

# The tiny preset's table (synthetic data, FC and CNN x {None, in-NINR} x 2 seeds, 5 SGD steps) with both run hooks,
# so the hooks' records go through every executor and through resume too.
TABLE = {
    **tomllib.loads((ROOT / "configs" / "tiny.toml").read_text())["table"],
    "hooks": ["phase", "robustness"],
    "options": {"robustness": {"stds": [0.3], "corruptions": ["fog"], "severities": [1, 2]}},
}

Fixture = Callable[[str], Any]
"""``request.getfixturevalue``: a section that needs files (an events file, a trained run) asks for their fixture."""

TINY: dict[str, Callable[[Fixture], dict[str, Any]]] = {
    "table": lambda fixture: TABLE,
    "train": lambda fixture: TABLE,
    # k = eta sigma^2: 0.0025 (decoupled), 0.09 (decay), 2.56 (divergent) at eta = 0.01; linear2: k0 = 0.09 (decay),
    # 2.89 (catapult), without the boundary measurement (tests/test_phases_part.py runs it)
    "phases": lambda fixture: {
        "seeds": [0],
        "options": {
            "linear": {"sigmas": [0.5, 3.0, 16.0], "noise": ["redrawn", "fixed"], "steps": 40},
            "linear2": {"sigmas": [3.0, 17.0], "noise": ["redrawn"], "steps": 40, "boundary_seeds": 0},
        },
    },
    "hep": lambda fixture: {"seeds": [0, 1], "options": {"study": str(fixture("hep_study"))}},
    "eval": lambda fixture: {
        "seeds": [0, 1],
        "runs": [str(fixture("trained_run"))],
        "suite": "gaussian",
        "stds": [0.1, 0.3],
        "limit": 32,
    },
}
"""Part name -> its tiny section (a few seconds at most for every check together)."""

NO_TINY = "part {!r} has no tiny section: add one to TINY in tests/test_parts.py"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of an in-NINR MLP trained 2 steps on synthetic data (the eval part's input)."""
    config = TrainConfig(
        dataset="synthetic",
        dataset_kwargs={"n_train": 64, "n_test": 32},
        epochs=1,
        max_steps=2,
        methods=(MethodSpec("in-ninr", {"sigma": 0.5}),),
    )
    out = tmp_path_factory.mktemp("trained") / "run"
    train(config, out_dir=out)
    return out


@pytest.fixture(scope="module", params=PARTS.names())
def study(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> harness.Study:
    """The part's tiny study run in-process: the reference records."""
    part = request.param
    if part not in TINY:
        pytest.fail(NO_TINY.format(part))
    section = TINY[part](request.getfixturevalue)
    return harness.run_reference(part, section, tmp_path_factory.mktemp(f"{part}-reference"))


@pytest.fixture(scope="module")
def dask() -> Iterator[DaskExecutor]:
    """A Dask LocalCluster of one in-process worker thread."""
    pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'ninr[dask]')")
    with DaskExecutor(local_workers=1, processes=False) as executor:
        yield executor


@pytest.mark.parametrize("part", PARTS.names())
def test_every_part_has_a_tiny_section(part):
    assert part in TINY, NO_TINY.format(part)


def test_process_pool_stores_the_in_process_records(study, pool, tmp_path):
    harness.check_executor_agrees(study, pool, tmp_path)


def test_dask_stores_the_in_process_records(study, dask, tmp_path):
    harness.check_executor_agrees(study, dask, tmp_path)


def test_interrupted_study_resumes_to_the_uninterrupted_records(study, tmp_path):
    harness.check_resume(study, tmp_path)


def test_report_is_built_from_the_stores_alone(study, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    harness.check_report_from_stores(study, tmp_path / "copy", monkeypatch)


def test_unknown_key_is_named_with_its_section(study):
    harness.check_unknown_keys_named(study.part, study.section)


def test_spec_round_trips_through_its_dict(study):
    harness.check_spec_round_trip(study.specs)
