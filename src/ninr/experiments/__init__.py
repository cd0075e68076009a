"""Experiments as data: preset files -> frozen configs -> sweeps of runs -> a results store.

* :mod:`~ninr.experiments.config`: TOML preset files resolved into :class:`Preset` / :class:`StudyConfig`.
* :mod:`~ninr.experiments.sweep`: the grid of runs (:class:`RunSpec`) with stable run ids.
* :mod:`~ninr.experiments.run`: ``run(spec) -> records``, a pure function.
* :mod:`~ninr.experiments.store`: one directory per study part, one atomically written file per run.
* :mod:`~ninr.experiments.tasks`: runs planned into tasks (stacks of runs that share an architecture).
* :mod:`~ninr.experiments.executors`: in-process, process pool, Dask.
* :mod:`~ninr.experiments.parts`: the registry of study parts (table, robustness, phases).
"""

from ninr.experiments.config import Arch, Preset, StudyConfig, Variant, find_preset, load_preset, parse_preset
from ninr.experiments.executors import DaskExecutor, Executor, InProcessExecutor, PoolExecutor, execute, make_executor
from ninr.experiments.parts import PART_MODULES, PARTS, StudyPart, get_part, load_parts, register_part
from ninr.experiments.progress import Progress
from ninr.experiments.run import (
    RUN_HOOKS,
    RunHook,
    RunOutput,
    final_records,
    run,
    run_task,
    to_records,
    train_records,
    train_records_many,
)
from ninr.experiments.session import StudySummary, run_specs, run_study
from ninr.experiments.store import ResultStore, RunResult, find_stores, records_to_csv
from ninr.experiments.sweep import RunSpec, expand_grid, expand_preset
from ninr.experiments.tasks import Task, plan_tasks

__all__ = [
    "PARTS",
    "PART_MODULES",
    "RUN_HOOKS",
    "Arch",
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "PoolExecutor",
    "Preset",
    "Progress",
    "ResultStore",
    "RunHook",
    "RunOutput",
    "RunResult",
    "RunSpec",
    "StudyConfig",
    "StudyPart",
    "StudySummary",
    "Task",
    "Variant",
    "execute",
    "expand_grid",
    "expand_preset",
    "final_records",
    "find_preset",
    "find_stores",
    "get_part",
    "load_parts",
    "load_preset",
    "make_executor",
    "parse_preset",
    "plan_tasks",
    "records_to_csv",
    "register_part",
    "run",
    "run_specs",
    "run_study",
    "run_task",
    "to_records",
    "train_records",
    "train_records_many",
]
