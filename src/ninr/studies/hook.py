"""Run hooks: code a study attaches to each of a part's training runs (``hooks = ["phase"]`` in a section).

A hook is a training callback that may add fields to the run's final record (``summary``) and rows of its own
(``records``). Like every callback it must not draw from the run's random streams (it uses a generator of its
own), so adding a hook never changes the trajectory. Its settings live in the section's
``[<part>.options.<hook name>]`` table; they join the run's id. A hook's report section is found in
:mod:`ninr.report` under the hook's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ninr.data.base import Dataset
from ninr.registry import Registry
from ninr.studies.records import Records
from ninr.studies.spec import RunSpec
from ninr.train.callbacks import Callback
from ninr.train.run import TrainResult


class RunHook(Callback):
    """A training callback that adds to the run's records. Register a factory ``factory(spec) -> RunHook``."""

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Validate this hook's settings in the section's ``options`` (called when the preset is expanded)."""

    def summary(self, result: TrainResult) -> dict[str, Any]:
        """Fields for the final record, e.g. ``{"phase": "decay", "phase_reason": "..."}``."""
        return {}

    def records(self, result: TrainResult, data: Dataset) -> Records:
        """Extra tidy rows after the run's epoch rows (each gets the run's fields), e.g. robustness results."""
        return []


HookFactory = Callable[[RunSpec], RunHook]

RUN_HOOKS = Registry[HookFactory]("hook", group="ninr.hooks")
