"""Tasks: which runs of a part one worker executes together, as one stack, planned in the main process.

A :class:`Task` is the unit of work an executor hands to a worker: one spec trained on its own, or
several trained as one stack by the part's ``run_many`` (:func:`ninr.train.train_many`). Every spec
still gets its own records and run file; whether it was stacked goes to the run file's ``meta``.

:func:`plan_tasks` decides, from the **full** spec list of a part (never from what is still missing, so
a resumed session plans the same stacks as the first one):

1. Stacking is on when the part's runs can stack (:meth:`ninr.studies.part.Part.stackable`) and neither the
   preset (``stack = false`` in the part's section) nor the command line (``--no-stack``) turns it off
   (:func:`stacking`).
2. Specs share a stack only with specs of the same part and stack family (the table's: same hooks and hook
   settings), and when :func:`ninr.train.group_stackable` puts their training configs
   (:meth:`~ninr.studies.part.Part.stack_config`) in one stack. A spec that cannot stack (a method without a
   stacked form, a CNN on the CPU, ...) is a task of its own, and the log (logger
   ``ninr.train.stacking``) says why. So is a spec without a training config to stack by (``stack_config``
   gives ``None``: the runs of a part that computes them one by one, a run that writes its run directory).
3. Each group of n specs is split into ``min(workers, n)`` near-equal stacks (more if a stack would
   exceed ``max_stack``): every worker gets its share of every kind of run, so the work balances
   whatever the runs' relative cost (a CNN run costs 20 FC runs), and no task holds more than
   ``1/workers`` of its group's work, hence of the part's.

Records do not depend on the plan where :func:`ninr.train.stacking.composition_invariant` holds (models
without convolutions on the CPU: every stack the sweep builds there): a run's records are then bit for
bit the same in a stack of 1, 8 or 16, in any slot, so the in-process, pool and Dask executors store
identical records whatever their number of workers. Elsewhere, stacks differ from one another (and from
one-by-one training) in the last bits, like runs on different thread counts.

Resuming (:func:`pending`): a task whose runs are all finished is skipped; a task with some finished
runs trains only its missing runs, as a smaller stack, where composition does not change records, and
otherwise trains whole again, and the session writes only its missing runs (finished runs are never
rewritten). Either way a resumed sweep stores exactly the records of an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ninr.errors import ConfigError, check_positive_int
from ninr.studies.part import PARTS
from ninr.studies.spec import RunSpec
from ninr.train.config import TrainConfig, canonical_json
from ninr.train.stacking import MAX_STACK, composition_invariant, group_stackable, why_alone

log = logging.getLogger("ninr.train.stacking")


@dataclass(frozen=True)
class Task:
    """Specs one worker executes together.

    Attributes:
        specs: The runs, in plan order.
        stacked: Through the part's ``run_many`` as one stack (even a single spec: a stack of one computes
            what it computes in a larger stack, where composition does not change records); otherwise
            ``specs`` is one spec computed by the part's ``run``.
        progress: A stacked task prints a line per epoch of its stack to stderr (the session sets it unless
            quiet; it changes no record).
    """

    specs: tuple[RunSpec, ...]
    stacked: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if not self.specs:
            raise ConfigError("`specs` of a task must be non-empty")
        if not self.stacked and len(self.specs) != 1:
            raise ConfigError(f"a task that is not stacked must hold one spec, got {len(self.specs)}")

    def describe(self) -> str:
        """``"table FC | None | seed 0"`` or ``"stack of 8: table FC | None | seed 0, ..."``."""
        if not self.stacked:
            return self.specs[0].describe()
        return f"stack of {len(self.specs)}: {self.specs[0].describe()}, ..."


def stacking(part: str, section: Any, *, enabled: bool = True) -> bool:
    """Whether ``part`` trains the runs of ``section`` in stacks: the section's ``stack`` (default: on where the
    part's runs can stack) and the command line's ``enabled`` (``--no-stack`` gives False).

    Raises:
        ConfigError: ``stack = true`` for a part whose runs always go one by one.
    """
    can = PARTS.get(part).stackable()
    wanted = getattr(section, "stack", None)
    if wanted and not can:
        raise ConfigError(f"[{part}].stack: the {part} part computes its runs one by one; remove `stack`")
    return enabled and can and wanted is not False


def _stack_config(spec: RunSpec) -> TrainConfig:
    config = PARTS.get(spec.part).stack_config(spec)
    if config is None:
        raise ConfigError(f"part {spec.part!r} has no training config to stack {spec.describe()!r} by")
    return config


def plan_tasks(
    specs: Sequence[RunSpec], *, workers: int = 1, stack: bool = True, max_stack: int = MAX_STACK
) -> list[Task]:
    """The tasks of a part's runs: stacks, then single runs, each in the order of its first spec (see the module
    docstring)."""
    check_positive_int("workers", workers)
    check_positive_int("max_stack", max_stack)
    if not stack:
        return [Task((s,)) for s in specs]
    families: dict[str, list[RunSpec]] = {}  # same part and stack family: may share a stack
    for spec in specs:
        key = canonical_json([spec.part, PARTS.get(spec.part).stack_family(spec)])
        families.setdefault(key, []).append(spec)
    planned: list[tuple[int, Task]] = []
    position = {s.run_id: i for i, s in enumerate(specs)}
    for runs in families.values():
        # A run without a training config to stack by never shares a stack (Part.stack_config): every run of the
        # phases, hep and eval parts, and a training run that writes its run directory.
        alone = {s.run_id for s in runs if PARTS.get(s.part).stack_config(s) is None}
        planned += [(position[s.run_id], Task((s,))) for s in runs if s.run_id in alone]
        family = [s for s in runs if s.run_id not in alone]
        if not family:
            continue
        for group in group_stackable([_stack_config(s) for s in family], max_stack=len(family)):
            members = [family[i] for i in group]
            if len(members) == 1:
                log.info("%s: one by one: %s", members[0].describe(), why_alone(_stack_config(members[0])))
                planned.append((position[members[0].run_id], Task((members[0],))))
                continue
            chunks = _split(members, workers, max_stack)
            planned += [(position[c[0].run_id], Task(tuple(c), stacked=True)) for c in chunks]
            sizes = "/".join(str(len(c)) for c in chunks)
            log.info(
                "%s and %d more: %d stack(s) of %s runs", members[0].describe(), len(members) - 1, len(chunks), sizes
            )
    # Stacks first (each in the order of its first spec), then single runs: the largest tasks start first, so
    # workers run out of work together (a long run without a stacked form would otherwise hold back a stack).
    return [task for _, task in sorted(planned, key=lambda pair: (not pair[1].stacked, pair[0]))]


def _split(members: list[RunSpec], workers: int, max_stack: int) -> list[list[RunSpec]]:
    """``members`` in ``min(workers, n)`` near-equal consecutive chunks (more where one would exceed ``max_stack``)."""
    n = len(members)
    chunks = max(min(workers, n), math.ceil(n / max_stack))
    size, extra = divmod(n, chunks)
    out, start = [], 0
    for c in range(chunks):
        end = start + size + (1 if c < extra else 0)
        out.append(members[start:end])
        start = end
    return out


def pending(tasks: Sequence[Task], finished: set[str]) -> list[Task]:
    """What a session still executes: tasks with missing runs; a part-finished stack trains only its missing
    runs where :func:`~ninr.train.stacking.composition_invariant` holds, else trains whole (the session then
    writes only the missing runs)."""
    todo = []
    for task in tasks:
        missing = tuple(s for s in task.specs if s.run_id not in finished)
        if not missing:
            continue
        if len(missing) == len(task.specs) or not composition_invariant(_stack_config(task.specs[0])):
            todo.append(task)
        else:
            todo.append(Task(missing, stacked=True, progress=task.progress))
    return todo


def describe_plan(tasks: Sequence[Task]) -> str:
    """One line: ``"36 runs as 24 tasks: 16 in 4 stack(s) (4x4), 20 one by one"`` (stacks as count x size)."""
    runs = sum(len(t.specs) for t in tasks)
    stacks = [t for t in tasks if t.stacked]
    if not stacks:
        return f"{runs} runs, one by one"
    sizes = Counter(len(t.specs) for t in stacks)
    shape = ", ".join(f"{count}x{size}" for size, count in sorted(sizes.items(), reverse=True))
    stacked = sum(len(t.specs) for t in stacks)
    alone = runs - stacked
    return f"{runs} runs as {len(tasks)} tasks: {stacked} in {len(stacks)} stack(s) ({shape}), {alone} one by one"
