"""The contract every study part keeps, as plain functions; tests/test_parts.py applies them to every registered part.

Each function takes a part's name and a tiny section (the part's TOML table as a dict) or the study run from it:

* :func:`run_reference`: the study run in-process into ``<root>/<part>``: the records every other path must store.
* :func:`check_executor_agrees`: another executor (a process pool, Dask) stores exactly the reference records.
  Every run is pinned to one thread (:data:`ninr.studies.executors.RUN_THREADS`) and deterministic, and stacked
  runs of models without convolutions do not depend on the composition of their stack on the CPU
  (:func:`ninr.train.stacking.composition_invariant`), so a pool of two, which splits a stack in two, computes
  the same bits as one process training the whole stack.
* :func:`check_resume`: a study killed in the middle of a task and resumed stores exactly the uninterrupted
  records, computing only the unfinished tasks; resuming a finished study computes nothing.
* :func:`check_report_from_stores`: the report is rebuilt from a copy of the stores while the part refuses to
  expand, prepare or run anything, and it has the part's section with every run.
* :func:`check_unknown_keys_named`: each key of the section, misspelled, fails with a did-you-mean naming the key
  and the section.
* :func:`check_spec_round_trip`: a run spec rebuilt from its JSON dict (``RunSpec.to_dict``) has the same id.

Records are compared as canonical JSON text: floats are written with ``repr``, which round-trips exactly, so equal
text is equal bits, and a NaN or an infinity (a diverged fit, an empty efficiency bin) equals itself.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ninr.errors import ConfigError
from ninr.report import build_report
from ninr.report.builder import render_markdown
from ninr.report.sections import SECTIONS
from ninr.schema import parse
from ninr.studies import PARTS, Executor, Preset, ResultStore, RunSpec, parse_preset, run_specs, run_study
from ninr.studies.executors import run_planned
from ninr.studies.spec import spec_id
from ninr.studies.tasks import Task, plan_tasks, stacking


@dataclass(frozen=True)
class Study:
    """A part's tiny study run in-process: its preset, runs and store (the reference records)."""

    part: str
    section: Mapping[str, Any]
    preset: Preset
    specs: list[RunSpec]
    store: ResultStore

    @property
    def root(self) -> Path:
        """The results directory holding the store."""
        return self.store.root.parent


class FailOnNth:
    """A task function that runs tasks normally until the ``n``-th, which raises KeyboardInterrupt (a kill in the
    middle of a task); ``n=None`` never raises. Counts and keeps the tasks it was given."""

    def __init__(self, n: int | None) -> None:
        self.n, self.calls = n, 0
        self.tasks: list[Task] = []

    def __call__(self, task: Task) -> list:
        self.calls += 1
        self.tasks.append(task)
        if self.calls == self.n:
            raise KeyboardInterrupt("killed during a task")
        return run_planned(task)


def preset_of(part: str, section: Mapping[str, Any]) -> Preset:
    """A preset holding only ``section`` as the part's table."""
    return parse_preset({"name": f"tiny-{part}", part: dict(section)}, name=f"tiny-{part}")


def records_by_id(store: ResultStore) -> dict[str, str]:
    """Run id -> the run's records as canonical JSON text (see the module docstring)."""
    return {r.run_id: json.dumps(r.records, sort_keys=True) for r in store.results()}


def run_reference(part: str, section: Mapping[str, Any], root: Path) -> Study:
    """Run ``section`` in-process into ``root/<part>``; every run is stored with records carrying its id."""
    preset = preset_of(part, section)
    specs = PARTS.get(part).expand(preset.section(part), preset.name)
    assert specs, f"the tiny [{part}] section expands to no run"
    summary = run_study(preset, part, root, Executor(), quiet=True)
    assert (summary.total, summary.new, summary.resumed) == (len(specs), len(specs), 0)
    store = summary.store
    assert store.run_ids() == {s.run_id for s in specs}
    for spec in specs:
        records = store.read(spec.run_id).records
        assert records, f"{spec.describe()}: no records"
        assert all(r["run_id"] == spec.run_id and r["part"] == part for r in records), spec.describe()
    return Study(part, section, preset, specs, store)


def check_executor_agrees(study: Study, executor: Executor, root: Path) -> None:
    """``executor`` stores exactly the reference records of ``study`` (run into ``root/<part>``)."""
    summary = run_study(study.preset, study.part, root, executor, quiet=True)
    assert summary.new == len(study.specs)
    got, want = records_by_id(summary.store), records_by_id(study.store)
    assert got.keys() == want.keys()
    for run_id, records in want.items():
        assert got[run_id] == records, f"{study.part}: run {run_id} differs on {executor.describe()}"


def check_resume(study: Study, root: Path) -> None:
    """Kill the study in its middle task, resume it, and compare with the reference (see the module docstring)."""
    part, specs = study.part, study.specs
    stack = stacking(part, study.preset.section(part))
    tasks = plan_tasks(specs, stack=stack)
    assert len(tasks) >= 2, f"the tiny [{part}] section must plan at least two tasks, so that a kill leaves some"
    n = len(tasks) // 2 + 1
    done = {s.run_id for task in tasks[: n - 1] for s in task.specs}
    store = ResultStore(root / part)
    with pytest.raises(KeyboardInterrupt):
        run_specs(specs, store, Executor(), run_fn=FailOnNth(n), stack=stack)
    assert store.run_ids() == done
    assert store.sessions()[-1]["status"] == "interrupted"
    assert not list(store.runs_dir.glob(".*.tmp"))
    with pytest.raises(ConfigError, match="--resume"):
        run_specs(specs, store, Executor(), stack=stack)
    counting = FailOnNth(None)
    assert run_specs(specs, store, Executor(), resume=True, run_fn=counting, stack=stack) == (
        len(specs) - len(done),
        len(done),
    )
    assert counting.calls == len(tasks) - (n - 1)  # only the unfinished tasks ran
    assert not {s.run_id for t in counting.tasks for s in t.specs} & done
    assert records_by_id(store) == records_by_id(study.store)
    assert run_specs(specs, store, Executor(), resume=True, run_fn=FailOnNth(1), stack=stack) == (0, len(specs))


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a report must be built from the stores alone, without running the part")


def check_report_from_stores(study: Study, copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report of a copy of the study's results directory, with the part refusing to run, has its section."""
    part = PARTS.get(study.part)
    for name in ("expand", "prepare", "run", "run_many"):
        monkeypatch.setattr(part, name, _refuse)
    shutil.copytree(study.root, copy)
    assert study.part in SECTIONS, f"no report section registered for part {study.part!r}"
    report = build_report(copy)
    sections = [s for s in report.sections if Path(s.store) == copy / study.part]
    assert sections, f"the report has no section for part {study.part!r}"
    section = sections[0]
    assert section.n_runs == section.n_expected == len(study.specs)
    assert section.body.tables or section.body.figures, f"the {study.part} section shows nothing"
    assert not any(note.startswith("Only ") for note in section.body.notes)
    assert f"## {section.body.title} (`{section.body.part}`)" in render_markdown(report)


def check_unknown_keys_named(part: str, section: Mapping[str, Any]) -> None:
    """Each key of ``section`` misspelled (its last letter doubled) fails naming the key and ``[part]``."""
    for key, value in section.items():
        wrong = key + key[-1]
        with pytest.raises(ConfigError) as exc:
            parse_preset({"name": "t", part: {**section, wrong: value}})
        message = str(exc.value)
        assert f"[{part}]" in message and repr(wrong) in message, message
        assert "did you mean" in message and repr(key) in message, message


def check_spec_round_trip(specs: list[RunSpec]) -> None:
    """Each spec's JSON dict rebuilds a spec with the same dict and id; the id is the hash of its identity."""
    for spec in specs:
        data = json.loads(json.dumps(spec.to_dict()))
        assert spec_id(data["part"], data["identity"]["options"], data["identity"]["data"]) == spec.run_id
        options = parse(type(spec.options), data["options"], "options")
        again = RunSpec(data["part"], data["study"], data["arch"], data["label"], data["seed"], options, data["phase"])
        assert again.run_id == spec.run_id == data["run_id"]
        assert json.loads(json.dumps(again.to_dict())) == data
