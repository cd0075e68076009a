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

Tasks are taken from the iterable as they are handed out: the in-process executor takes one when the last
has finished, the process pool one per free worker (so a session claims a run in the store only when a
worker is about to start it), Dask all at once.

A process-pool worker exits when the process that started the pool dies, even by ``kill -9``
(:func:`exit_with_parent`): otherwise it would wait on its task queue for good, and with it the
multiprocessing resource tracker, which exits once every process holding its pipe has.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import multiprocessing
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import torch

from ninr.errors import ConfigError, check_positive_int
from ninr.perf import machine, num_threads
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
            return [part.run_output(task.specs[0])]
        outputs = part.run_many(task.specs, progress=sys.stderr if task.progress else None)
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
        "machine": machine(),
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


PARENT_POLL_S = 0.5
"""Seconds between two checks, by a worker's watchdog thread, that the process that started it still runs. Where
the parent-death signal is available (Linux) it ends the worker at once and the poll is the fallback; elsewhere a
worker outlives a killed parent by at most this long (plus the time to reach the next Python bytecode)."""
ORPHAN_EXIT_CODE = 70
"""The exit status of a worker that exits because its parent died (nobody reads it: the parent is gone)."""
PARENT_DEATH_SIGNAL = getattr(signal, "SIGUSR1", None)
"""The signal the kernel sends a pool worker when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``). Not SIGKILL:
the kernel sends it when the *thread* that started the worker exits, which need not be the end of the process (a
pool used from a thread that finishes before it), so the handler first checks that the parent process is gone."""
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux); whether it was done."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return bool(prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)


def _watch_parent(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(ORPHAN_EXIT_CODE)


def exit_with_parent(
    parent_pid: int | None = None, *, poll_s: float = PARENT_POLL_S, death_signal: bool = True
) -> None:
    """Make this process exit (``os._exit``) as soon as its parent, the process ``parent_pid``, is gone.

    Two mechanisms: on Linux (``death_signal``, from the main thread) the kernel's parent-death signal
    (:data:`PARENT_DEATH_SIGNAL`), whose handler exits once ``os.getppid()`` is no longer ``parent_pid``; and
    everywhere a daemon thread that polls ``os.getppid()`` every ``poll_s`` seconds. An orphan is re-parented
    (to init or a subreaper), so its ``getppid()`` changes when its parent dies. A parent that died before this
    call is caught by the first check, given ``parent_pid`` (``None``: the parent this process has now).
    """
    if parent_pid is None:
        parent_pid = os.getppid()
    if death_signal and PARENT_DEATH_SIGNAL is not None and threading.current_thread() is threading.main_thread():

        def on_parent_death(signum: int, frame: Any) -> None:
            if os.getppid() != parent_pid:
                os._exit(ORPHAN_EXIT_CODE)

        signal.signal(PARENT_DEATH_SIGNAL, on_parent_death)  # before the request: a signal never finds no handler
        _set_parent_death_signal(PARENT_DEATH_SIGNAL)
    if os.getppid() != parent_pid:
        os._exit(ORPHAN_EXIT_CODE)
    threading.Thread(target=_watch_parent, args=(parent_pid, poll_s), name="ninr-parent-watch", daemon=True).start()


def _worker_init(threads: int | None, parent_pid: int | None) -> None:
    """A pool worker's initializer: exit with the parent (``parent_pid``; ``None``: the process that started the
    worker, a fork server's child), then set the torch threads."""
    exit_with_parent(parent_pid)
    _set_threads(threads)


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
            workers,
            mp_context=multiprocessing.get_context(context),
            initializer=_worker_init,
            # spawn and fork: this process starts the workers; a fork server starts them itself (and exits with us)
            initargs=(self.threads, os.getpid() if context in ("spawn", "fork") else None),
        )

    def describe(self) -> str:
        return f"{self.name} ({self.workers} workers x {self.threads} torch threads)"

    @property
    def slots(self) -> int:
        return self.workers

    def map(self, tasks: Iterable[Task], run_fn: TaskFn = run_planned) -> Iterator[RunResult]:
        """Yield each task's results as it finishes, with at most one task per worker handed out at a time: the
        next task is taken from ``tasks`` when a worker is free (after an error, none is)."""
        queue = iter(tasks)
        running: set[cf.Future[list[RunResult]]] = set()
        error: BaseException | None = None
        while True:
            while error is None and len(running) < self.workers:
                task = next(queue, None)
                if task is None:
                    break
                running.add(self._pool.submit(_task, task, run_fn, None))
            if not running:
                break
            finished, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                exc = fut.exception()
                if exc is None:
                    yield from fut.result()
                elif error is None:
                    error = exc  # no new task starts; the running ones finish and are yielded
        if error is not None:
            raise error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


SCHEDULER_TIMEOUT_S = 10.0
"""Seconds to wait for a Dask scheduler to answer before refusing its address. Dask's own default (30 s) is
for slow links; a running scheduler answers in well under a second on a LAN and in a few on a slow WAN with
TLS, so 10 s refuses a wrong or dead address quickly without refusing a slow live one."""


def connect(scheduler: str, timeout_s: float | None = None) -> Any:
    """A ``distributed.Client`` of the scheduler at ``scheduler``; a malformed address, or one where no scheduler
    answers within ``timeout_s`` (default :data:`SCHEDULER_TIMEOUT_S`), raises :class:`ConfigError` naming the
    address."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=SCHEDULER_TIMEOUT_S if timeout_s is None else timeout_s)
    except (OSError, ValueError, TypeError) as exc:  # a timeout is an OSError; a malformed address a ValueError
        raise ConfigError(
            f"`scheduler` must be the address of a running Dask scheduler (tcp://HOST:PORT), got {scheduler!r} ({exc})"
        ) from None


class DaskExecutor(Executor):
    """A Dask cluster: an existing scheduler (``tcp://host:port``) or a LocalCluster of ``local_workers``.

    ``connect_timeout_s``: how long to wait for an existing scheduler to answer (:data:`SCHEDULER_TIMEOUT_S`).
    """

    name = "dask"

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        local_workers: int | None = None,
        processes: bool = True,
        connect_timeout_s: float | None = None,
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
            self.client: Any = connect(scheduler, connect_timeout_s)
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
