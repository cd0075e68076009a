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

A *task* is what a worker executes (:mod:`ninr.studies.tasks`, :func:`run_task`): one spec through its
part's ``run``, or a stack of specs through the part's ``run_many``, which for the table part trains them as
one stack (:func:`train_records_many`). Either way every spec gets its
own records, and how it was trained goes to :attr:`RunOutput.meta`, never into the records or the run id.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ninr.data.base import Dataset, load_dataset
from ninr.errors import ConfigError
from ninr.registry import Registry
from ninr.train.callbacks import Callback
from ninr.train.config import canonical_json
from ninr.train.run import TrainResult, train

if TYPE_CHECKING:
    from ninr.studies.sweep import RunSpec

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class RunOutput:
    """One spec's records from a task, and facts about how it ran for the run file's ``meta``.

    Attributes:
        records: The run's tidy records (what :func:`run` returns for it alone, to float tolerance).
        meta: Merged into :attr:`ninr.studies.store.RunResult.meta`, e.g. ``{"stacked": {"runs": 8,
            "index": 3}}`` for a run trained in a stack of 8. Not part of the records: how a run was
            computed is not what it computed.
    """

    records: Records
    meta: Mapping[str, Any] = field(default_factory=dict)


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


RUN_HOOKS = Registry[Callable[["RunSpec"], RunHook]]("run hook", group="ninr.hooks")

# Modules that register run hooks when imported (workers import them too). Others plug theirs in here.
HOOK_MODULES: tuple[str, ...] = ("ninr.studies.hooks", "ninr.studies.robustness_hook")


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
    from ninr.perf import num_threads
    from ninr.studies.parts import get_part

    with num_threads(RUN_THREADS):
        return get_part(spec.part).run(spec)


def run_task(specs: Sequence[RunSpec], *, stacked: bool = False) -> list[RunOutput]:
    """One task's outputs: with ``stacked``, the specs through their part's ``run_many`` (one stack, even of
    one spec); otherwise one spec through the part's ``run``.

    On ``RUN_THREADS`` threads, like :func:`run`, so a task's records do not depend on the executor.

    Raises:
        ConfigError: An empty task, specs of several parts, several specs without ``stacked``, or a stack
            for a part without ``run_many``.
    """
    from ninr.perf import num_threads
    from ninr.studies.parts import get_part

    if not specs:
        raise ConfigError("`specs` must be a non-empty task, got an empty one")
    parts = {s.part for s in specs}
    if len(parts) != 1:
        raise ConfigError(f"`specs` must be runs of one part, got runs of {sorted(parts)}")
    part = get_part(specs[0].part)
    with num_threads(RUN_THREADS):
        if not stacked:
            if len(specs) != 1:
                raise ConfigError(f"`specs` must be one spec when not stacked, got {len(specs)}")
            return [RunOutput(part.run(specs[0]))]
        if part.run_many is None:
            raise ConfigError(f"part {specs[0].part!r} runs its specs one by one (it has no run_many)")
        outputs = part.run_many(specs)
    if len(outputs) != len(specs):
        raise ConfigError(f"part {specs[0].part!r}: run_many returned {len(outputs)} outputs for {len(specs)} specs")
    return outputs


def train_records(spec: RunSpec, *, data: Dataset | None = None) -> Records:
    """Train ``spec.train`` with the spec's hooks and return its records (the table part's run function)."""
    hooks = [get_hook(name)(spec) for name in spec.hooks]
    if data is None:  # loaded here, as train() would, so hooks evaluate on the same data without a reload
        data = load_dataset(spec.train.dataset, **dict(spec.train.dataset_kwargs))
    result = train(spec.train, data=data, callbacks=hooks)
    return _hooked_records(spec, hooks, result, data)


def train_records_many(specs: Sequence[RunSpec]) -> list[RunOutput]:
    """Train the specs' configs with :func:`ninr.train.train_many` (as one stack where they share one), each with
    its own hooks; the table part's ``run_many``.

    Each output's records are what :func:`train_records` gives for its spec alone, to float tolerance (hooks
    are callbacks of their own run, stacked or not); ``meta["stacked"] = {"runs": K, "index": k}`` says which
    runs were trained in a stack of K (absent for a run that went one by one: the log says why).
    """
    from ninr.train.run import train_many

    hooks = [[get_hook(name)(spec) for name in spec.hooks] for spec in specs]
    keys = [canonical_json([s.train.dataset, dict(s.train.dataset_kwargs)]) for s in specs]
    datasets: dict[str, Dataset] = {}
    for spec, key in zip(specs, keys, strict=True):  # one load per data set, shared by training and the hooks
        if key not in datasets:
            datasets[key] = load_dataset(spec.train.dataset, **dict(spec.train.dataset_kwargs))
    data = datasets[keys[0]] if len(datasets) == 1 else None
    # min_stack=1: a stack of one (a group split across workers, or resumed part-way) computes what it does
    # in the whole stack (composition_invariant), where the one-by-one loop would differ in the last bits.
    results = train_many([s.train for s in specs], data, callbacks=hooks, max_stack=len(specs), min_stack=1)
    outputs = []
    for spec, spec_hooks, result, key in zip(specs, hooks, results, keys, strict=True):
        stacked = result.setup.get("stacked")
        records = _hooked_records(spec, spec_hooks, result, datasets[key])
        outputs.append(RunOutput(records, {"stacked": dict(stacked)} if stacked else {}))
    return outputs


def _hooked_records(spec: RunSpec, hooks: Sequence[RunHook], result: TrainResult, data: Dataset) -> Records:
    """The tidy records of a trained run: its epochs, the hooks' final fields, then the hooks' own rows."""
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
