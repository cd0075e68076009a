"""Executors: where the runs of a sweep execute. In-process (default), a local process pool, or Dask.

Every executor maps ``execute(task, run_fn)`` over the tasks (:class:`ninr.studies.tasks.Task`: one
spec, or a stack of specs) and yields one :class:`RunResult` per spec as its task finishes (completion
order; a stack's results come together). Results travel back to the calling process, which alone
writes the store, so Dask workers on other machines need no shared file system. ``slots`` (the number
of tasks it runs at once) is what the sweep balances its stacks over.

When one task raises, executors stop handing out new tasks, still yield the results of tasks that
were already executing (nothing finished is lost), then raise the first error.

Threads: a process-pool worker, and a Dask worker process started by ``--dask-local``, sets
``torch.set_num_threads(max(1, cores // workers))`` so that N workers do not oversubscribe the CPU.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import torch

from ninr.errors import ConfigError, check_positive_int
from ninr.perf import num_threads
from ninr.studies.part import PARTS, RunOutput
from ninr.studies.store import RunResult
from ninr.studies.tasks import Task
from ninr.train.setup import versions

TaskFn = Callable[[Task], list[RunOutput]]
"""``run_fn(task) -> outputs``, one per spec of the task in order (default: :func:`run_planned`)."""

RUN_THREADS = 1
"""Intra-op threads of every run, whatever the executor. Float reductions in the matrix products depend on
the thread count, and a run near a phase boundary amplifies the difference, so without a pin the in-process
executor (two threads) and a pool of two workers (one thread each) would store different records.
Parallelism comes from workers (``--workers``, Dask), which is also faster for these small models."""


def run_planned(task: Task) -> list[RunOutput]:
    """The default task function: a stacked task through its part's ``run_many``, else the lone spec's ``run``;
    on :data:`RUN_THREADS` threads, so a task's records do not depend on the executor."""
    part = PARTS.get(task.specs[0].part)
    if any(s.part != part.name for s in task.specs):
        raise ConfigError(f"a task must hold runs of one part, got {sorted({s.part for s in task.specs})}")
    with num_threads(RUN_THREADS):
        if not task.stacked:
            return [RunOutput(part.run(task.specs[0]))]
        outputs = part.run_many(task.specs)
    if len(outputs) != len(task.specs):
        raise ConfigError(f"part {part.name!r}: run_many returned {len(outputs)} outputs for {len(task.specs)} specs")
    return outputs


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def execute(task: Task, run_fn: TaskFn = run_planned) -> list[RunResult]:
    """Run one task and wrap each spec's records with its wall time and metadata.

    A stack's wall time is shared equally by its runs (as :func:`ninr.train.train_stacked` does), so
    summed over runs it is still the compute time; ``meta`` gets what the part says about each run
    (e.g. ``stacked``).
    """
    started = time.perf_counter()
    outputs = run_fn(task)
    wall = (time.perf_counter() - started) / len(task.specs)
    meta = {
        "versions": versions(),
        "host": platform.node(),
        "pid": os.getpid(),
        "torch_threads": torch.get_num_threads(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    results = []
    for spec, output in zip(task.specs, outputs, strict=True):
        results.append(RunResult(spec.run_id, spec.to_dict(), output.records, wall, {**meta, **dict(output.meta)}))
    return results


def _set_threads(threads: int | None) -> None:
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _task(task: Task, run_fn: TaskFn, threads: int | None) -> list[RunResult]:
    """The unit of work a worker executes (module level: picklable by reference)."""
    _set_threads(threads)
    return execute(task, run_fn)


class Executor:
    """Base class: runs tasks one after another in this process."""

    name = "in-process"

    @property
    def slots(self) -> int:
        """Tasks executed at once (the sweep splits its stacks over them)."""
        return 1

    def map(self, tasks: Iterable[Task], run_fn: TaskFn = run_planned) -> Iterator[RunResult]:
        """Yield the result of each spec as its task finishes."""
        for task in tasks:
            yield from execute(task, run_fn)

    def describe(self) -> str:
        """A short description for logs and reports."""
        return self.name

    def close(self) -> None:
        """Release workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


InProcessExecutor = Executor


class PoolExecutor(Executor):
    """A local process pool (``spawn`` start method: no fork of a process holding torch threads)."""

    name = "process-pool"

    def __init__(self, workers: int, *, context: str = "spawn", threads: int | None = None) -> None:
        self.workers = check_positive_int("workers", workers)
        self.threads = threads if threads is not None else max(1, available_cores() // workers)
        self._pool = cf.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context(context), initializer=_set_threads, initargs=(self.threads,)
        )

    def describe(self) -> str:
        return f"{self.name} ({self.workers} workers x {self.threads} torch threads)"

    @property
    def slots(self) -> int:
        return self.workers

    def map(self, tasks: Iterable[Task], run_fn: TaskFn = run_planned) -> Iterator[RunResult]:
        futures = [self._pool.submit(_task, task, run_fn, None) for task in tasks]
        error: BaseException | None = None
        for fut in cf.as_completed(futures):
            if fut.cancelled():
                continue
            exc = fut.exception()
            if exc is None:
                yield from fut.result()
            elif error is None:
                error = exc
                for other in futures:
                    other.cancel()  # queued runs never start; running ones finish and are yielded
        if error is not None:
            raise error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """A Dask cluster: an existing scheduler (``tcp://host:port``) or a LocalCluster of ``local_workers``."""

    name = "dask"

    def __init__(
        self, *, scheduler: str | None = None, local_workers: int | None = None, processes: bool = True
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("the Dask executor needs the `dask` extra: pip install 'ninr[dask]'") from None
        if (scheduler is None) == (local_workers is None):
            raise ConfigError("give exactly one of `scheduler` (tcp://HOST:PORT) and `local_workers` (N)")
        self.cluster: Any = None
        self.threads: int | None = None
        self.local_workers = local_workers
        if scheduler is not None:
            self.where = scheduler
            self.client: Any = Client(scheduler)
        else:
            n = check_positive_int("local_workers", local_workers)
            self.cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            # In-thread workers share this process: leave its torch threads alone.
            self.threads = max(1, available_cores() // n) if processes else None
            self.where = f"LocalCluster({n} {'processes' if processes else 'threads'})"
            self.client = Client(self.cluster)

    def describe(self) -> str:
        return f"{self.name} {self.where}"

    @property
    def slots(self) -> int:
        """The LocalCluster's workers, or the threads the scheduler's workers offer now (at least 1)."""
        if self.local_workers is not None:
            return int(self.local_workers)
        return max(1, sum(self.client.nthreads().values()))

    def map(self, tasks: Iterable[Task], run_fn: TaskFn = run_planned) -> Iterator[RunResult]:
        from distributed import as_completed

        futures = [
            self.client.submit(
                _task, t, run_fn, self.threads, key=f"ninr-task-{t.specs[0].run_id}-{len(t.specs)}", pure=False
            )
            for t in tasks
        ]
        error: BaseException | None = None
        try:
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                if fut.status == "error":
                    if error is None:
                        error = fut.exception()
                        # Queued tasks never start; tasks the workers hold finish and are yielded.
                        held = {key for keys in self.client.processing().values() for key in keys}
                        self.client.cancel([f for f in futures if not f.done() and f.key not in held])
                    continue
                yield from fut.result()
        finally:
            self.client.cancel([f for f in futures if not f.done()])
        if error is not None:
            raise error

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(
    *, workers: int | None = None, dask_local: int | None = None, scheduler: str | None = None
) -> Executor:
    """The executor the CLI options name (at most one of them; none: in-process)."""
    chosen = [
        n for n, v in (("workers", workers), ("dask_local", dask_local), ("scheduler", scheduler)) if v is not None
    ]
    if len(chosen) > 1:
        raise ConfigError(f"choose one executor, got {' and '.join('--' + c.replace('_', '-') for c in chosen)}")
    if workers is not None:
        return PoolExecutor(workers) if workers > 1 else Executor()
    if dask_local is not None:
        return DaskExecutor(local_workers=dask_local)
    if scheduler is not None:
        return DaskExecutor(scheduler=scheduler)
    return Executor()
