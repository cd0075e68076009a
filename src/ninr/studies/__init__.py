"""Studies: typed options -> run specs -> executor -> results store, one pipeline for every study.

* :mod:`~ninr.studies.preset`: TOML preset files, one section per part, parsed into each part's typed section.
* :mod:`~ninr.studies.part`: the registry of study parts (:data:`PARTS`); ninr's own in :mod:`ninr.studies.parts`.
* :mod:`~ninr.studies.spec`: :class:`RunSpec`, a run's labels, typed options and id.
* :mod:`~ninr.studies.hook`: run hooks (:data:`RUN_HOOKS`); ninr's own in :mod:`ninr.studies.hooks`.
* :mod:`~ninr.studies.tasks`: runs planned into tasks (stacks of runs that share an architecture).
* :mod:`~ninr.studies.executors`: in-process, process pool, Dask.
* :mod:`~ninr.studies.store`: one directory per part, one atomically written file per finished run.
* :mod:`~ninr.studies.session`: a part of a preset run into its store, resumable.

Reports are built from the stores' records by :mod:`ninr.report`.
"""

from ninr.studies import hooks, parts
from ninr.studies.executors import DaskExecutor, Executor, InProcessExecutor, PoolExecutor, execute, make_executor
from ninr.studies.hook import RUN_HOOKS, RunHook
from ninr.studies.part import PARTS, Part, RunOutput, ordered, register_part
from ninr.studies.preset import Preset, find_preset, load_preset, parse_preset
from ninr.studies.progress import Progress
from ninr.studies.records import base_fields, final_records, to_records
from ninr.studies.session import StudySummary, run_specs, run_study
from ninr.studies.spec import RunSpec
from ninr.studies.store import ResultStore, RunResult, find_stores, records_to_csv
from ninr.studies.tasks import Task, plan_tasks

__all__ = [
    "PARTS",
    "RUN_HOOKS",
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "Part",
    "PoolExecutor",
    "Preset",
    "Progress",
    "ResultStore",
    "RunHook",
    "RunOutput",
    "RunResult",
    "RunSpec",
    "StudySummary",
    "Task",
    "base_fields",
    "execute",
    "final_records",
    "find_preset",
    "find_stores",
    "hooks",
    "load_preset",
    "make_executor",
    "ordered",
    "parse_preset",
    "parts",
    "plan_tasks",
    "records_to_csv",
    "register_part",
    "run_specs",
    "run_study",
    "to_records",
]
