"""The sharded event store: atomic shards, growth across runs, resume after a kill, refusal of another config.

The store logic runs with a fake job function (no Pythia) that has the property the store relies on: a
job's events depend only on its seed and their index, so a longer job with the same seed replays the
shorter one's events first (Pythia with one seed does; ``test_a_longer_pythia_job_replays_the_shorter_one``
checks it on real events).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ninr.errors import ConfigError, DataError
from ninr.hep.config import GenerationConfig
from ninr.hep.events import ORIGIN_DECAY, ORIGIN_HARD, concat, toy_candidates
from ninr.hep.generate import Job, JobResult, plan_jobs

HAS_H5PY = importlib.util.find_spec("h5py") is not None
HAS_PYTHIA = any(importlib.util.find_spec(m) is not None for m in ("pythia8mc", "pythia8"))
pytestmark = pytest.mark.skipif(not HAS_H5PY, reason="h5py not installed (pip install 'ninr[hep]')")
needs_pythia = pytest.mark.skipif(not HAS_PYTHIA, reason="pythia8mc not installed (pip install 'ninr[hep]')")

CFG = GenerationConfig(n_signal_events=25, n_background_events=35, events_per_job=10, seed=5)


class FakeRunner:
    """A job function: event e of a job with seed s has a candidate with probability 0.4, both drawn from
    ``default_rng([s, e])``; it counts its calls and can be told to fail at one job (a simulated kill)."""

    def __init__(self, fail_at: tuple[str, int] | None = None) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.fail_at = fail_at

    def __call__(self, job: Job) -> JobResult:
        if self.fail_at == (job.process, job.index):
            raise KeyboardInterrupt("killed")
        self.calls.append((job.process, job.index, job.n_events))
        parts, events = [], []
        for e in range(job.n_events):
            rng = np.random.default_rng([job.seed, e])
            if rng.random() < 0.4:
                one = toy_candidates(1, seed=int(rng.integers(2**31)))
                prompt = job.process == "signal" and rng.random() < 0.9
                parts.append(
                    dataclasses.replace(
                        one,
                        label=np.array([int(prompt)], np.int8),
                        origin=np.array([ORIGIN_HARD if prompt else ORIGIN_DECAY], np.int8),
                    )
                )
                events.append(e)
        index = np.array(events, np.int64)
        return JobResult(concat(parts), job.process, job.n_events, 0, 0.01, index, {"pythia": 0.01})


def _same(a: object, b: object) -> None:
    for name, arr in a.arrays().items():  # type: ignore[attr-defined]
        np.testing.assert_array_equal(arr, b.arrays()[name], err_msg=name)  # type: ignore[attr-defined]


def test_a_store_grows_and_equals_a_store_made_at_once(tmp_path: Path) -> None:
    from ninr.hep.shards import ShardStore

    store, runner = ShardStore(tmp_path / "grown"), FakeRunner()
    report = store.grow(CFG, runner=runner)
    assert (report.reused, report.generated) == (0, 7)  # 3 signal jobs (10, 10, 5), 4 background (10, 10, 10, 5)
    small, meta = store.load(CFG)
    assert meta["events"] == {"signal": 25, "background": 35} and meta["shards"] == 7
    assert meta["candidates"]["signal"] + meta["candidates"]["background"] == len(small)
    big = dataclasses.replace(CFG, n_signal_events=42, n_background_events=35)
    runner.calls.clear()
    report = store.grow(big, runner=runner)
    # the finished signal jobs 0 and 1 and every background job are kept; the partial signal job 2 (5 events)
    # is made whole with its own seed, and jobs 3 and 4 are new, with new seeds
    assert (report.reused, report.generated) == (6, 3)
    assert runner.calls == [("signal", 2, 10), ("signal", 3, 10), ("signal", 4, 2)]
    seeds = {(j.process, j.index): j.seed for j in plan_jobs(big)}
    assert len(set(seeds.values())) == len(seeds)
    grown, meta = store.load(big)
    assert meta["events"] == {"signal": 42, "background": 35}
    once = ShardStore(tmp_path / "once")
    once.grow(big, runner=FakeRunner())
    _same(grown, once.load(big)[0])
    # a smaller target reads the first events of a longer shard: the same as a store made for it
    _same(store.load(CFG)[0], small)


def test_a_killed_run_leaves_only_complete_shards_and_resumes(tmp_path: Path) -> None:
    from ninr.hep.shards import ShardStore

    store = ShardStore(tmp_path / "s")
    with pytest.raises(KeyboardInterrupt):
        store.grow(CFG, runner=FakeRunner(fail_at=("background", 1)))
    names = sorted(p.name for p in store.root.iterdir())
    assert names == ["background-000000.h5", "signal-000000.h5", "signal-000001.h5", "signal-000002.h5", "store.json"]
    with pytest.raises(DataError, match="lacks 3 shard"):
        store.load(CFG)  # a data set is built from complete shards only, and this target is not complete
    # a writer killed mid-file leaves a temporary file: not counted, deleted once its process is gone
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tmp = store.root / f".background-000001.h5.{int(dead.stdout)}.tmp"
    tmp.write_bytes(b"\x89HDF\r\n half a file")
    assert set(store.shards()) == {("signal", 0), ("signal", 1), ("signal", 2), ("background", 0)}
    runner = FakeRunner()
    store.grow(CFG, runner=runner)
    assert runner.calls == [("background", 1, 10), ("background", 2, 10), ("background", 3, 5)]
    assert not tmp.exists()
    once = ShardStore(tmp_path / "once")
    once.grow(CFG, runner=FakeRunner())
    _same(store.load(CFG)[0], once.load(CFG)[0])


def test_a_shard_write_that_fails_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ninr.hep import shards

    job = plan_jobs(CFG)[0]
    result = FakeRunner()(job)
    path = tmp_path / shards.shard_name(job.process, job.index)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(shards.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        shards.write_shard(path, job, result, shards.store_hash(CFG))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    shards.write_shard(path, job, result, shards.store_hash(CFG))
    info = shards.read_shard_info(path)
    assert (info.process, info.index, info.seed, info.n_events) == ("signal", 0, job.seed, 10)
    assert info.n_candidates == len(result.candidates) and info.n_prompt == int(result.candidates.label.sum())
    back, event = shards.read_shard(path)
    _same(back, result.candidates)
    np.testing.assert_array_equal(event, result.event_index)


def test_another_config_is_refused_naming_the_setting(tmp_path: Path) -> None:
    from ninr.hep.shards import ShardStore

    store = ShardStore(tmp_path / "s")
    store.grow(CFG, runner=FakeRunner())
    other = dataclasses.replace(CFG, photon_pt_min_gev=25.0)
    with pytest.raises(ConfigError, match=r"^`photon_pt_min_gev` must be 20\.0, the value the shards in .* got 25\.0$"):
        store.grow(other, runner=FakeRunner())
    with pytest.raises(ConfigError, match="`events_per_job` must be 10"):
        store.load(dataclasses.replace(CFG, events_per_job=20))
    # the targets may change: that is growth, not another config
    store.check(dataclasses.replace(CFG, n_background_events=1000))
    store.clear()
    assert not any(store.root.iterdir())
    store.grow(other, runner=FakeRunner())  # a cleared store takes any config


def test_cli_refuses_another_config_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ninr.cli import main
    from ninr.hep.shards import ShardStore

    out = tmp_path / "out"
    ShardStore(out / "events.shards").grow(CFG, runner=FakeRunner())
    before = {p.name: p.stat().st_mtime_ns for p in (out / "events.shards").iterdir()}
    toml = tmp_path / "study.toml"
    toml.write_text("[generation]\nn_signal_events = 25\nn_background_events = 35\nevents_per_job = 10\nseed = 6\n")
    with pytest.raises(SystemExit) as exc:
        main(["hep", "generate", "--config", str(toml), "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "`seed` must be 5, the value the shards in" in err and "got 6" in err and "Traceback" not in err
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "events.shards").iterdir()}


def test_events_file_of_another_config_is_refused_and_the_targets_may_grow(tmp_path: Path) -> None:
    from ninr.hep.datasets import check_events_file, write_events

    path = tmp_path / "events.h5"
    write_events(path, toy_candidates(4), CFG)
    assert check_events_file(path, CFG) is True
    assert check_events_file(path, dataclasses.replace(CFG, n_background_events=99)) is False
    with pytest.raises(ConfigError, match=r"`isolation_cone` must be 0\.0"):
        check_events_file(path, dataclasses.replace(CFG, isolation_cone=0.4))
    assert check_events_file(tmp_path / "missing.h5", CFG) is False


@needs_pythia
@pytest.mark.slow
def test_a_longer_pythia_job_replays_the_shorter_one() -> None:
    from ninr.hep.generate import run_job

    cfg = GenerationConfig(common_settings=("PartonLevel:MPI = off",))
    short, long = Job(cfg, "signal", 0, 40, 4321), Job(cfg, "signal", 0, 90, 4321)
    a, b = run_job(short), run_job(long)
    first = np.flatnonzero(b.event_index < 40)
    assert len(a.candidates) >= 5 and len(b.candidates) > len(a.candidates)
    _same(a.candidates, b.candidates.select(first))
    np.testing.assert_array_equal(a.event_index, b.event_index[first])


@needs_pythia
@pytest.mark.slow
def test_generate_sharded_writes_the_events_file_from_the_shards(tmp_path: Path) -> None:
    from ninr.hep.datasets import generate_sharded, load_or_generate, read_events
    from ninr.hep.generate import generate

    cfg = GenerationConfig(
        n_signal_events=30, n_background_events=20, events_per_job=20, common_settings=("PartonLevel:MPI = off",)
    )
    path = tmp_path / "events.h5"
    candidates, meta = generate_sharded(path, cfg)
    assert (meta["generated_shards"], meta["reused_shards"]) == (3, 0)
    direct, _ = generate(cfg)  # the same jobs and seeds in memory
    _same(candidates, direct)
    back, _, stored_meta = read_events(path, expected=cfg)
    _same(back, direct)
    assert stored_meta["shards"] == 3 and sum(stored_meta["events"].values()) == 50
    path.unlink()  # the file is rebuilt from the shards without generating
    again, meta = load_or_generate(path, cfg)
    assert meta["generated_shards"] == 0 and meta["reused_shards"] == 3
    _same(again, direct)
