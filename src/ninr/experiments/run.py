"""``run(spec) -> records``: one run of a study, as a pure function.

No global state is read or left behind: the run's randomness derives from its seed
(:func:`ninr.train.train` is bit-reproducible on CPU), and the records hold only values that the
config determines. Wall-clock times (``epoch_time_s``) are dropped from records; the store keeps
each run's total wall time beside them. So the same spec gives the same records in-process, in a
process pool or on a Dask worker.

Records are tidy rows, one per epoch, each carrying the run id, the labels (study, part, arch,
label, expected_phase), the seed, the model and method names, and the run's final status
(``run_status``: completed, stopped or diverged). The last epoch row has ``final = True`` and the
fields added by run hooks (e.g. ``phase``, the phase classifier's verdict). A diverged run with no hook
verdict gets ``phase = "divergent"`` (the phase classifier's name for it). Rows a hook adds (e.g. one
per robustness condition, with a ``kind`` field) follow the epoch rows, with ``final = False``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ninr.data.base import Dataset, load_dataset
from ninr.registry import Registry
from ninr.train.callbacks import Callback
from ninr.train.run import TrainResult, train

if TYPE_CHECKING:
    from ninr.experiments.sweep import RunSpec

Records = list[dict[str, Any]]

DROPPED_KEYS = frozenset({"epoch_time_s"})  # wall-clock: differs between identical runs


class RunHook(Callback):
    """A training callback that adds fields to the run's final record, and possibly rows of its own.

    Like every callback it must not draw from the run's random streams (use a generator of its own),
    so adding a hook never changes the trajectory. Register a factory ``factory(spec) -> RunHook`` in
    :data:`RUN_HOOKS`; a study turns it on with ``hooks = ["name"]``. A hook's settings, if any, live
    in the study's ``[<part>.options.<hook name>]`` table (they join the run id).

    Attributes:
        report: ``"module:function"`` of ``report(records, study) -> PartReport``, a report section of
            its own after the part's (imported only when a report is built); ``""`` for none.
    """

    report: ClassVar[str] = ""

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Validate this hook's settings in the study's ``options`` (called when the preset is loaded)."""

    def summary(self, result: TrainResult) -> dict[str, Any]:
        """Fields for the final record, e.g. ``{"phase": "decay", "decay_time": 123.0}``."""
        return {}

    def records(self, result: TrainResult, data: Dataset) -> Records:
        """Extra tidy rows after the run's epoch rows (each gets the run's fields), e.g. robustness results."""
        return []


RUN_HOOKS = Registry[Callable[["RunSpec"], RunHook]]("run hook")

# Modules that register run hooks when imported (workers import them too). Others plug theirs in here.
HOOK_MODULES: tuple[str, ...] = ("ninr.experiments.hooks", "ninr.experiments.robustness_hook")


def load_hooks() -> None:
    """Import every module in :data:`HOOK_MODULES` (idempotent), registering their hooks."""
    for module in HOOK_MODULES:
        importlib.import_module(module)


def get_hook(name: str) -> Callable[[RunSpec], RunHook]:
    """The hook factory called ``name``, after :func:`load_hooks` (did-you-mean on a miss)."""
    load_hooks()
    return RUN_HOOKS.get(name)


RUN_THREADS = 1
"""Intra-op threads of every run, whatever the executor. Float reductions in the matrix products depend on
the thread count, and a run near a phase boundary amplifies the difference (the quick preset's sigma 256 MLP
phase run ended at test accuracy 0.4435 on two threads, 0.5344 on one), so without a pin the in-process
executor (two threads) and a pool of two workers (one thread each) would store different records. Parallelism
comes from workers (``--workers``, Dask), which is also faster for these small models on contended cores."""


def run(spec: RunSpec) -> Records:
    """The records of one run (dispatched to the run function of ``spec.part``), on ``RUN_THREADS`` threads."""
    from ninr.experiments.parts import get_part
    from ninr.perf import num_threads

    with num_threads(RUN_THREADS):
        return get_part(spec.part).run(spec)


def train_records(spec: RunSpec, *, data: Dataset | None = None) -> Records:
    """Train ``spec.train`` with the spec's hooks and return its records (the table part's run function)."""
    hooks = [get_hook(name)(spec) for name in spec.hooks]
    if data is None:  # loaded here, as train() would, so hooks evaluate on the same data without a reload
        data = load_dataset(spec.train.dataset, **dict(spec.train.dataset_kwargs))
    result = train(spec.train, data=data, callbacks=hooks)
    extra: dict[str, Any] = {}
    for hook in hooks:
        extra.update(hook.summary(result))
    rows = to_records(spec, result.records, result.status, extra)
    base = {**base_fields(spec), "run_status": result.status}
    for hook in hooks:
        rows += [{**base, **row, "final": False} for row in hook.records(result, data)]
    return rows


def base_fields(spec: RunSpec) -> dict[str, Any]:
    """The fields every record of ``spec`` carries."""
    methods = "+".join(m.name for m in spec.train.methods) or "none"
    return {"run_id": spec.run_id, **spec.labels(), "seed": spec.seed, "model": spec.train.model, "methods": methods}


def to_records(
    spec: RunSpec, epoch_records: Sequence[Mapping[str, Any]], status: str, final_extra: Mapping[str, Any] | None = None
) -> Records:
    """Tidy records of a run from its per-epoch records, its status and the hooks' final fields."""
    base = {**base_fields(spec), "run_status": status}
    rows = [
        {**base, **{k: v for k, v in rec.items() if k not in DROPPED_KEYS}, "final": False} for rec in epoch_records
    ]
    if not rows:
        rows = [{**base, "epoch": 0, "status": status, "final": False}]
    rows[-1]["final"] = True
    rows[-1].update(dict(final_extra or {}))
    if status == "diverged":
        rows[-1].setdefault("phase", "divergent")
    return rows


def final_records(records: Sequence[Mapping[str, Any]]) -> Records:
    """The ``final`` row of each run."""
    return [dict(r) for r in records if r.get("final")]
