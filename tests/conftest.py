"""Fixtures shared across test modules."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ninr.perf import num_threads

HEP_STUDY_TOML = """
[generation]
n_signal_events = 0
n_background_events = 0

[simulation]
em_cells = 8
had_cells = 2

[study]
model_kwargs = {{ width = 4 }}
seeds = [5]
epochs = 1
batch_size = 32
events = "{events}"

[[methods]]
label = "none"
name = "none"

[[methods]]
label = "in-ninr"
name = "in-ninr"
params = {{ sigma = 0.5, per = "pixel" }}
"""
"""A tiny photon study: 8x8 images, a width-4 ResNet, one epoch, two methods, on the events file ``events``."""


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread than on a contended pair; restored afterwards.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    with num_threads(1):
        yield


@pytest.fixture(scope="session")
def pool() -> Iterator[Any]:
    """A process pool of two workers shared by every test that needs one: starting the workers (each imports
    torch) takes seconds, running a tiny study on them a fraction of one."""
    from ninr.studies import PoolExecutor

    with PoolExecutor(2) as executor:
        yield executor


@pytest.fixture(scope="session")
def hep_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The photon-study file of :data:`HEP_STUDY_TOML` over 120 toy candidates written to an events file
    (no event generator needed); skipped without h5py, which the events file needs."""
    if importlib.util.find_spec("h5py") is None:
        pytest.skip("h5py not installed (pip install 'ninr[hep]')")
    from ninr.hep.config import GenerationConfig
    from ninr.hep.datasets import write_events
    from ninr.hep.events import toy_candidates

    tmp = tmp_path_factory.mktemp("hep-study")
    events = tmp / "events.h5"
    write_events(events, toy_candidates(120), GenerationConfig(n_signal_events=0, n_background_events=0))
    study = tmp / "study.toml"
    study.write_text(HEP_STUDY_TOML.format(events=events))
    return study
