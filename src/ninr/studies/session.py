"""Running a study part into its results store: expand, skip what is finished, execute, write.

:func:`run_study` is what ``ninr sweep`` and ``ninr reproduce`` call for each part. Each finished
run is written to the store the moment its result arrives, so an interrupted session loses only
the runs that were executing; ``resume=True`` then skips every run id already in the store.

Two sessions on one store (two ``--resume`` commands started side by side, or one started while another
runs) train each run once: a session claims each run just before it executes it
(:class:`ninr.studies.store.Claims`), skips runs another live process has claimed, and when it has nothing
else to do waits for them (:func:`execute_into`). The concurrency paragraph of docs/experiments.md says
exactly what the second session does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
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
from ninr.studies.store import Claims, ResultStore, RunResult
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
    others: int = 0
    """Runs another process finished while this session ran (claimed by it, see :func:`execute_into`)."""

    def line(self) -> str:
        """``"table: 36 runs (30 new, 6 resumed) in 192.0s -> results/quick/table"`` (and ``, 4 by another
        process`` where another process finished some of them meanwhile)."""
        others = f", {self.others} by another process" if self.others else ""
        counts = f"{self.total} runs ({self.new} new, {self.resumed} resumed{others})"
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


CLAIM_POLL_S = 1.0
"""Seconds between two looks at the runs another process holds, while a session waits for them (a run takes
seconds to hours; a look reads one small file per run)."""


def _stamp(store: ResultStore, run_id: str) -> int | None:
    """The mtime of run ``run_id``'s file (``None``: there is none)."""
    try:
        return store.path(run_id).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _written_since(store: ResultStore, stamps: Mapping[str, int | None], run_id: str) -> bool:
    """Whether run ``run_id``'s file was written since ``stamps`` were taken and is readable (a run another process
    finished; a run present before, which a ``redo`` session recomputes, does not count until it is rewritten)."""
    return _stamp(store, run_id) != stamps.get(run_id) and store.has(run_id)


def _claimed(
    tasks: Iterable[Task],
    store: ResultStore,
    claims: Claims,
    stamps: Mapping[str, int | None],
    done: set[str],
    waiting: set[str],
    others: set[str],
    progress: Progress | None,
) -> Iterator[Task]:
    """``tasks`` less what this session does not hold, claiming each run as its task is about to be handed out.

    A run another live process holds joins ``waiting``; a run finished meanwhile (by another process) joins
    ``done`` and ``others``. A task with runs held elsewhere is cut down as a resumed stack is
    (:func:`ninr.studies.tasks.pending`): only this session's runs, or the whole stack where composition changes
    records, of which only this session's runs are written.
    """
    for task in tasks:
        mine: list[str] = []
        for spec in task.specs:
            run_id = spec.run_id
            if run_id in done:
                continue
            if not claims.acquire(run_id):
                waiting.add(run_id)
                continue
            if _written_since(store, stamps, run_id):  # finished by another process since this session began
                claims.release(run_id)
                _finished_elsewhere(run_id, store, done, others, progress)
                continue
            mine.append(run_id)
        if mine:
            yield from pending([task], {s.run_id for s in task.specs} - set(mine))


def _finished_elsewhere(
    run_id: str, store: ResultStore, done: set[str], others: set[str], progress: Progress | None
) -> None:
    done.add(run_id)
    others.add(run_id)
    if progress is not None:
        progress.message(f"   run {run_id}: finished by another process")


def _wait_for(
    waiting: set[str],
    store: ResultStore,
    claims: Claims,
    stamps: Mapping[str, int | None],
    done: set[str],
    others: set[str],
    progress: Progress | None,
) -> set[str]:
    """Wait until a run of ``waiting`` is finished by its holder (it joins ``done`` and ``others``) or may be
    claimed (released, or stale: its holder died); returns those that may be claimed, once there are some or
    nothing is left to wait for."""
    if progress is not None:
        holders = sorted({h.describe() for h in map(store.claim_holder, sorted(waiting)) if h is not None})
        progress.message(
            f"   waiting for {len(waiting)} run(s) claimed by another process ({'; '.join(holders) or 'unknown'})"
        )
    while True:
        free = set()
        for run_id in sorted(waiting):
            if _written_since(store, stamps, run_id):
                waiting.discard(run_id)
                _finished_elsewhere(run_id, store, done, others, progress)
            elif store.claimable(run_id, stale_s=claims.stale_s):
                free.add(run_id)
        if free or not waiting:
            waiting -= free
            return free
        time.sleep(CLAIM_POLL_S)


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

    Each run is claimed in the store as its task is handed to the executor (:class:`ninr.studies.store.Claims`)
    and released when its file is written, or when the session ends however it ends. A run another live process
    holds is skipped; once everything else is done the session waits for it, polling every
    :data:`CLAIM_POLL_S`: a run its holder finishes is counted as finished by another process, and a run whose
    claim is released or goes stale (its holder died) is claimed and executed here. So two sessions on one store
    execute each run once.

    A result whose run this session does not hold (a stack retrained whole to recompute its missing runs) is not
    written: a finished run is never rewritten. The session (executor, counts, elapsed time, and whether it
    completed, failed or was interrupted) is appended to the store's ``sessions.jsonl`` in every case.
    """
    done = set(finished or ())
    todo = len({s.run_id for t in tasks for s in t.specs} - done)
    started, new, status = time.perf_counter(), 0, "interrupted"
    others: set[str] = set()
    try:
        with Claims(store) as claims:
            everything = {s.run_id for t in tasks for s in t.specs}
            stamps = {run_id: _stamp(store, run_id) for run_id in everything}
            remaining: Sequence[Task] = tasks
            waiting: set[str] = set()  # held by another live process
            while True:
                claimed = _claimed(remaining, store, claims, stamps, done, waiting, others, progress)
                for result in executor.map(claimed, run_fn):
                    if not claims.holds(result.run_id):
                        continue
                    store.write(result)
                    claims.release(result.run_id)
                    done.add(result.run_id)
                    new += 1
                    if progress is not None:
                        progress.update(result)
                if not waiting:
                    break
                free = _wait_for(waiting, store, claims, stamps, done, others, progress)
                remaining = pending(tasks, everything - free)
        status = "completed"
    except Exception as exc:
        status = f"failed: {type(exc).__name__}: {exc}"
        raise
    finally:
        entry = {"label": label, "finished_at": _now(), "elapsed_s": time.perf_counter() - started}
        entry |= {"executor": executor.describe(), "total": total if total is not None else todo}
        entry |= {"new": new, "todo": todo, "tasks": len(tasks), "stacks": sum(t.stacked for t in tasks)}
        entry |= {"by_others": len(others), "status": status}
        store.log_session(entry)
    return new


def plan_session(
    specs: Sequence[RunSpec], executor: Executor, finished: set[str], *, stack: bool = True, progress: bool = False
) -> list[Task]:
    """The tasks this session executes: the plan of the full ``specs`` over the executor's slots, less what
    is finished (:func:`ninr.studies.tasks.pending`). ``stack`` False: every run on its own. ``progress``: the
    stacked tasks print a line per epoch (:attr:`ninr.studies.tasks.Task.progress`)."""
    tasks = plan_tasks(specs, workers=executor.slots, stack=stack)
    return [replace(t, progress=progress) if t.stacked else t for t in pending(tasks, finished)]


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
        tasks = plan_session(specs, executor, finished, stack=stack, progress=not quiet) if todo else []
        if tasks:
            progress.message(f"   this session: {describe_plan(tasks)}")
        new = execute_into(
            tasks, store, executor, run_fn=run_fn, progress=progress, label=part, total=len(specs), finished=finished
        )
    finally:
        progress.close()
    # every run is finished now: before this session, by it, or by another process that held its claim
    others = max(0, len(store.run_ids() & {s.run_id for s in specs}) - len(finished) - new) if todo else 0
    return StudySummary(part, store, len(specs), new, len(finished), time.perf_counter() - started, others)


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
