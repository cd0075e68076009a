"""Experiments as data: preset files -> frozen configs -> sweeps of runs -> a results store.

* :mod:`~ninr.studies.config`: TOML preset files resolved into :class:`Preset` / :class:`StudyConfig`.
* :mod:`~ninr.studies.sweep`: the grid of runs (:class:`RunSpec`) with stable run ids.
* :mod:`~ninr.studies.run`: ``run(spec) -> records``, a pure function.
* :mod:`~ninr.studies.store`: one directory per study part, one atomically written file per run.
* :mod:`~ninr.studies.tasks`: runs planned into tasks (stacks of runs that share an architecture).
* :mod:`~ninr.studies.executors`: in-process, process pool, Dask.
* :mod:`~ninr.studies.parts`: the registry of study parts (table, robustness, phases).
"""

from ninr.studies.config import Arch, Preset, StudyConfig, Variant, find_preset, load_preset, parse_preset
from ninr.studies.executors import DaskExecutor, Executor, InProcessExecutor, PoolExecutor, execute, make_executor
from ninr.studies.parts import PART_MODULES, PARTS, StudyPart, get_part, load_parts, register_part
from ninr.studies.progress import Progress
from ninr.studies.run import (
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
from ninr.studies.session import StudySummary, run_specs, run_study
from ninr.studies.store import ResultStore, RunResult, find_stores, records_to_csv
from ninr.studies.sweep import RunSpec, expand_grid, expand_preset
from ninr.studies.tasks import Task, plan_tasks

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
