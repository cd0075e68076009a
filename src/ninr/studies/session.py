"""Running a study part into its results store: expand, skip what is finished, execute, write.

:func:`run_study` is what ``ninr sweep`` and ``ninr reproduce`` call for each part. Each finished
run is written to the store the moment its result arrives, so an interrupted session loses only
the runs that were executing; ``resume=True`` then skips every run id already in the store.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ninr.errors import ConfigError
from ninr.studies.config import Preset
from ninr.studies.executors import Executor, TaskFn, run_planned
from ninr.studies.parts import get_part
from ninr.studies.progress import Progress
from ninr.studies.store import ResultStore, RunResult
from ninr.studies.sweep import RunSpec, relabel
from ninr.studies.tasks import Task, describe_plan, pending, plan_tasks, stacking
from ninr.train.setup import versions


@dataclass(frozen=True)
class StudySummary:
    """What one session did to one part's store."""

    part: str
    store: ResultStore
    total: int
    new: int
    resumed: int
    elapsed_s: float

    def line(self) -> str:
        """``"table: 36 runs (30 new, 6 resumed) in 192.0s -> results/quick/table"``."""
        counts = f"{self.total} runs ({self.new} new, {self.resumed} resumed)"
        return f"{self.part}: {counts} in {self.elapsed_s:.1f}s -> {self.store.root}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def study_info(preset: Preset, part: str, specs: Sequence[RunSpec]) -> dict[str, Any]:
    """The ``study.json`` of a part: enough to rebuild its report without the config file."""
    return {
        "preset": preset.name,
        "description": preset.description,
        "source": preset.source,
        "config_text": preset.text,
        "part": part,
        "title": get_part(part).title,
        "study": dataclasses.asdict(preset.study(part)),
        "seeds": list(preset.study(part).seeds),
        "run_ids": [s.run_id for s in specs],
        "versions": versions(),
        "updated_at": _now(),
    }


def _relabel_finished(store: ResultStore, specs: Sequence[RunSpec], finished: set[str]) -> None:
    """Finished runs whose row was renamed in the config get the new labels (nothing is recomputed)."""
    for spec in specs:
        if spec.run_id not in finished:
            continue
        result = store.read(spec.run_id)
        labels = spec.labels()
        if any(rec.get(k) != v for rec in result.records for k, v in labels.items()):
            records = [relabel(rec, spec) for rec in result.records]
            spec_dict = {**result.spec, **{k: v for k, v in spec.to_dict().items() if k != "train"}}
            store.write(RunResult(result.run_id, spec_dict, records, result.wall_time_s, result.meta))


def plan(specs: Sequence[RunSpec], store: ResultStore, *, resume: bool = False) -> tuple[list[RunSpec], set[str]]:
    """The specs still to run and the ids already finished in ``store``.

    Raises:
        ConfigError: The store already holds some of these runs and ``resume`` is false.
    """
    store.clean_tmp()
    finished = store.run_ids() & {s.run_id for s in specs}
    if finished and not resume:
        raise ConfigError(
            f"{store.root} already holds {len(finished)} of the {len(specs)} runs of this sweep; "
            "pass --resume to keep them and run only the missing ones, or choose another --out"
        )
    _relabel_finished(store, specs, finished)
    return [s for s in specs if s.run_id not in finished], finished


def execute_into(
    tasks: Sequence[Task],
    store: ResultStore,
    executor: Executor,
    *,
    run_fn: TaskFn = run_planned,
    progress: Progress | None = None,
    label: str = "",
    total: int | None = None,
    finished: set[str] | None = None,
) -> int:
    """Execute ``tasks``, writing each result to ``store`` as it arrives; returns how many runs were written.

    A result whose run id is in ``finished`` (a stack retrained whole to recompute its missing runs) is
    not written: a finished run is never rewritten. The session (executor, counts, elapsed time, and
    whether it completed, failed or was interrupted) is appended to the store's ``sessions.jsonl`` in
    every case.
    """
    done = finished or set()
    todo = len({s.run_id for t in tasks for s in t.specs} - done)
    started, new, status = time.perf_counter(), 0, "interrupted"
    try:
        for result in executor.map(tasks, run_fn):
            if result.run_id in done:
                continue
            store.write(result)
            new += 1
            if progress is not None:
                progress.update(result)
        status = "completed"
    except Exception as exc:
        status = f"failed: {type(exc).__name__}: {exc}"
        raise
    finally:
        entry = {"label": label, "finished_at": _now(), "elapsed_s": time.perf_counter() - started}
        entry |= {"executor": executor.describe(), "total": total if total is not None else todo}
        entry |= {"new": new, "todo": todo, "tasks": len(tasks), "stacks": sum(t.stacked for t in tasks)}
        entry |= {"status": status}
        store.log_session(entry)
    return new


def plan_session(specs: Sequence[RunSpec], executor: Executor, finished: set[str], *, stack: bool = True) -> list[Task]:
    """The tasks this session executes: the plan of the full ``specs`` over the executor's slots, less what
    is finished (:func:`ninr.studies.tasks.pending`). ``stack`` False: every run on its own."""
    tasks = plan_tasks(specs, workers=executor.slots, stack=stack)
    return pending(tasks, finished)


def run_specs(
    specs: Sequence[RunSpec],
    store: ResultStore,
    executor: Executor,
    *,
    resume: bool = False,
    run_fn: TaskFn = run_planned,
    progress: Progress | None = None,
    stack: bool = True,
) -> tuple[int, int]:
    """Run the specs missing from ``store`` (stacked where their part can, unless ``stack`` is False);
    returns ``(new, resumed)``."""
    todo, finished = plan(specs, store, resume=resume)
    can_stack = bool(specs) and get_part(specs[0].part).run_many is not None
    tasks = plan_session(specs, executor, finished, stack=stack and can_stack) if todo else []
    new = execute_into(tasks, store, executor, run_fn=run_fn, progress=progress, total=len(specs), finished=finished)
    return new, len(finished)


def run_study(
    preset: Preset,
    part: str,
    out: str | Path,
    executor: Executor,
    *,
    resume: bool = False,
    quiet: bool = False,
    run_fn: TaskFn = run_planned,
    stack: bool = True,
) -> StudySummary:
    """Run one part of ``preset`` into the store ``out/<part>``; ``stack=False`` (``--no-stack``) trains every
    run on its own whatever the preset says."""
    started = time.perf_counter()
    study, study_part = preset.study(part), get_part(part)
    stacked = stacking(study, study_part.run_many is not None, enabled=stack)
    specs = study_part.expand(study, preset.name)
    store = ResultStore(Path(out) / part)
    todo, finished = plan(specs, store, resume=resume)
    store.write_study(study_info(preset, part, specs))
    tasks = plan_session(specs, executor, finished, stack=stacked) if todo else []
    progress = Progress(len(specs), done=len(finished), quiet=quiet, label=part)
    try:
        progress.message(
            f"== {part}: {len(specs)} runs ({len(finished)} already finished) on {executor.describe()} -> {store.root}"
        )
        if tasks:
            progress.message(f"   this session: {describe_plan(tasks)}")
        new = execute_into(
            tasks,
            store,
            executor,
            run_fn=run_fn,
            progress=progress,
            label=part,
            total=len(specs),
            finished=finished,
        )
    finally:
        progress.close()
    return StudySummary(part, store, len(specs), new, len(finished), time.perf_counter() - started)
