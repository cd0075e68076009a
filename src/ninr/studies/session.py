"""Running a study part into its results store: expand, skip what is finished, execute, write.

:func:`run_study` is what ``ninr sweep`` and ``ninr reproduce`` call for each part. Each finished
run is written to the store the moment its result arrives, so an interrupted session loses only
the runs that were executing; ``resume=True`` then skips every run id already in the store.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ninr.errors import ConfigError
from ninr.schema import to_dict
from ninr.studies.executors import Executor, TaskFn, run_planned
from ninr.studies.part import PARTS
from ninr.studies.preset import Preset
from ninr.studies.progress import Progress
from ninr.studies.spec import RunSpec
from ninr.studies.store import ResultStore, RunResult
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
    section = preset.section(part)
    return {
        "preset": preset.name,
        "description": preset.description,
        "source": preset.source,
        "config_text": preset.text,
        "part": part,
        "title": PARTS.get(part).title,
        "study": to_dict(section),
        "seeds": list(getattr(section, "seeds", ())),
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
            records = [spec.relabeled(rec) for rec in result.records]
            spec_dict = {**result.spec, **{k: v for k, v in spec.to_dict().items() if k not in ("options", "identity")}}
            store.write(RunResult(result.run_id, spec_dict, records, result.wall_time_s, result.meta))


def plan(
    specs: Sequence[RunSpec], store: ResultStore, *, resume: bool = False, redo: bool = False
) -> tuple[list[RunSpec], set[str]]:
    """The specs still to run and the ids already finished in ``store``.

    ``redo``: compute every spec again and replace its run file (a single-shot command run twice).

    Raises:
        ConfigError: The store already holds some of these runs and neither ``resume`` nor ``redo`` is set.
    """
    store.clean_tmp()
    finished = set() if redo else store.run_ids() & {s.run_id for s in specs}
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
    redo: bool = False,
    run_fn: TaskFn = run_planned,
    progress: Progress | None = None,
    stack: bool = True,
) -> tuple[int, int]:
    """Run the specs missing from ``store`` (stacked where their part can, unless ``stack`` is False);
    returns ``(new, resumed)``."""
    todo, finished = plan(specs, store, resume=resume, redo=redo)
    can_stack = bool(specs) and PARTS.get(specs[0].part).stackable()
    if todo:
        PARTS.get(specs[0].part).prepare(todo, store.root)
    tasks = plan_session(specs, executor, finished, stack=stack and can_stack) if todo else []
    new = execute_into(tasks, store, executor, run_fn=run_fn, progress=progress, total=len(specs), finished=finished)
    return new, len(finished)


def run_part(
    specs: Sequence[RunSpec],
    store: ResultStore,
    executor: Executor,
    info: Mapping[str, Any],
    *,
    resume: bool = False,
    redo: bool = False,
    quiet: bool = False,
    run_fn: TaskFn = run_planned,
    stack: bool = True,
) -> StudySummary:
    """Run ``specs`` (one part's) into ``store`` with ``info`` as its ``study.json``: prepare, plan, execute."""
    started = time.perf_counter()
    part = str(info["part"])
    todo, finished = plan(specs, store, resume=resume, redo=redo)
    store.write_study(info)
    progress = Progress(len(specs), done=len(finished), quiet=quiet, label=part)
    try:
        progress.message(
            f"== {part}: {len(specs)} runs ({len(finished)} already finished) on {executor.describe()} -> {store.root}"
        )
        if todo:
            PARTS.get(part).prepare(todo, store.root)
        tasks = plan_session(specs, executor, finished, stack=stack) if todo else []
        if tasks:
            progress.message(f"   this session: {describe_plan(tasks)}")
        new = execute_into(
            tasks, store, executor, run_fn=run_fn, progress=progress, label=part, total=len(specs), finished=finished
        )
    finally:
        progress.close()
    return StudySummary(part, store, len(specs), new, len(finished), time.perf_counter() - started)


def run_study(
    preset: Preset,
    part: str,
    out: str | Path,
    executor: Executor,
    *,
    resume: bool = False,
    redo: bool = False,
    quiet: bool = False,
    run_fn: TaskFn = run_planned,
    stack: bool = True,
) -> StudySummary:
    """Run one part of ``preset`` into the store ``out/<part>``; ``stack=False`` (``--no-stack``) trains every
    run on its own whatever the preset says."""
    section = preset.section(part)
    stacked = stacking(part, section, enabled=stack)
    specs = PARTS.get(part).expand(section, preset.name)
    store = ResultStore(Path(out) / part)
    info = study_info(preset, part, specs)
    return run_part(specs, store, executor, info, resume=resume, redo=redo, quiet=quiet, run_fn=run_fn, stack=stacked)


def single_info(part: str, specs: Sequence[RunSpec], section: Mapping[str, Any], description: str) -> dict[str, Any]:
    """The ``study.json`` of a study made on the command line (``ninr train``, ``ninr eval``): no preset file."""
    return {
        "preset": part,
        "description": description,
        "source": "the command line",
        "config_text": "",
        "part": part,
        "title": PARTS.get(part).title,
        "study": dict(section),
        "seeds": sorted({s.seed for s in specs}),
        "run_ids": [s.run_id for s in specs],
        "versions": versions(),
        "updated_at": _now(),
    }
