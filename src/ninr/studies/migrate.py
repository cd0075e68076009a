"""``ninr store migrate``: give the runs of a store written under the earlier run-id scheme their current ids.

Run ids are ``hash(part, typed options, data identity)`` (:mod:`ninr.studies.spec`). Stores written before
that scheme named a table run by the hash of its resolved training config (with its hooks and part options
when it had any), and a phase-diagram run by a stand-in training config plus its options. Those runs
compute exactly what the current runs of the same preset compute, so nothing needs training again: this
module re-expands the preset a store records (``study.json`` keeps the preset's text), computes each run's
earlier id, and renames the run files, rewriting the ids in their records. A detector-study store holds the
whole study as one run under the earlier scheme, which is now one run per method and seed: it is left as it
is and recomputed by ``--resume``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ninr.studies.part import PARTS
from ninr.studies.parts.phases import LinearRun, MLPRun
from ninr.studies.parts.table import TrainRun
from ninr.studies.preset import parse_preset
from ninr.studies.spec import RunSpec, spec_id
from ninr.studies.store import ResultStore, RunResult, find_stores
from ninr.train.config import MethodSpec, TrainConfig, run_id
from ninr.train.setup import resolve


def legacy_id(spec: RunSpec) -> str | None:
    """The id ``spec`` had under the earlier scheme (``None`` where no run of it mapped to one)."""
    options = spec.options
    if isinstance(options, TrainRun):
        resolved = resolve(options.train)[0]
        if not options.hooks and not options.hook_options:
            return run_id(resolved)
        return run_id({"train": resolved, "hooks": list(options.hooks), "options": dict(options.hook_options)})
    if isinstance(options, LinearRun | MLPRun):
        train, settings = _legacy_phase_point(options)
        document = {"model": spec.arch, "noise": options.noise, "sigma": options.sigma, **settings}
        return run_id({"train": resolve(train)[0], "hooks": [], "options": document})
    return None


def _legacy_phase_point(o: LinearRun | MLPRun) -> tuple[TrainConfig, dict[str, Any]]:
    """The stand-in training config and the settings a phase run's earlier id hashed."""
    methods = (MethodSpec("in-ninr", {"sigma": o.sigma}),)
    if isinstance(o, LinearRun):
        settings: dict[str, Any] = {
            "lr": o.lr,
            "steps": o.steps,
            "batch_size": o.batch_size,
            "n_train": o.n_train,
            "dim": o.dim,
        }
        batch = o.batch_size or o.n_train
        train = TrainConfig(
            dataset="synthetic", model="linear", lr=o.lr, batch_size=batch, epochs=1, max_steps=o.steps,
            seed=o.seed, methods=methods,
        )  # fmt: skip
        return train, settings
    settings = {
        "lr": o.lr, "epochs": o.epochs, "batch_size": o.batch_size, "train_examples": o.train_examples,
        "dataset": o.dataset, "dataset_kwargs": dict(o.dataset_kwargs), "niw_every": o.niw_every,
        "loss_every": o.loss_every, "probe_size": o.probe_size,
    }  # fmt: skip
    train = TrainConfig(
        dataset=o.dataset, dataset_kwargs=o.dataset_kwargs, lr=o.lr, epochs=o.epochs, seed=o.seed,
        batch_size=o.batch_size, methods=methods,
    )  # fmt: skip
    return train, settings


@dataclass(frozen=True)
class Migration:
    """What migrating one store did (or, in a dry run, would do)."""

    store: Path
    part: str
    renamed: int
    current: int
    unknown: int
    note: str = ""

    def line(self) -> str:
        """``"results/quick/table: 36 renamed, 0 already current, 0 not in the preset"``."""
        text = f"{self.store}: {self.renamed} renamed, {self.current} already current, {self.unknown} not in the preset"
        return text + (f" ({self.note})" if self.note else "")


def current_specs(info: Mapping[str, Any]) -> list[RunSpec]:
    """The runs of the part ``info`` (a ``study.json``) records, expanded from its preset text now."""
    part = str(info["part"])
    preset = parse_preset(tomllib.loads(str(info["config_text"])), name=str(info.get("preset", "")))
    return PARTS.get(part).expand(preset.section(part), preset.name)


def migrate_store(store: ResultStore, *, dry_run: bool = False) -> Migration:
    """Rename the runs of ``store`` written under the earlier scheme (see the module docstring)."""
    info = store.read_study()
    part = str(info.get("part", "?"))
    if not info.get("config_text"):
        # a study made on the command line (ninr train, eval, phases): no preset to re-expand; its runs are
        # current where their stored identity hashes to their id
        results = store.results()
        current = sum(_hashes_to_its_id(r, part) for r in results)
        unknown = len(results) - current
        note = "no preset text in study.json: not migrated" if unknown else ""
        return Migration(store.root, part, 0, current, unknown, note)
    specs = current_specs(info)
    by_legacy = {legacy_id(s): s for s in specs}
    by_legacy.pop(None, None)
    current_ids = {s.run_id for s in specs}
    stored = store.run_ids()
    renamed = current = unknown = 0
    for old in sorted(stored):
        if old in current_ids:
            current += 1
            continue
        spec = by_legacy.get(old)
        if spec is None or spec.run_id in stored:
            # not a run of the preset, or one already recomputed under its current id (never overwritten)
            unknown += 1
            continue
        renamed += 1
        if not dry_run:
            result = store.read(old)
            records = [{**r, "run_id": spec.run_id} for r in result.records]
            store.write(RunResult(spec.run_id, spec.to_dict(), records, result.wall_time_s, result.meta))
            store.path(old).unlink()
    if not dry_run and renamed:
        store.write_study({**info, "run_ids": [s.run_id for s in specs]})
    note = "the detector study is one run per method and seed now: --resume recomputes it" if part == "hep" else ""
    return Migration(store.root, part, renamed, current, unknown, note)


def _hashes_to_its_id(result: RunResult, part: str) -> bool:
    """Whether a run file's stored identity gives its run id under the current scheme."""
    identity = result.spec.get("identity")
    if not isinstance(identity, Mapping):
        return False
    options, data = identity.get("options"), identity.get("data")
    if not isinstance(options, Mapping) or not isinstance(data, Mapping):
        return False
    return spec_id(str(result.spec.get("part", part)), options, data) == result.run_id


def migrate(root: str | Path, *, dry_run: bool = False) -> list[Migration]:
    """Migrate every store under ``root``."""
    return [migrate_store(store, dry_run=dry_run) for store in find_stores(root)]
