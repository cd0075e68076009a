"""Training runs from configs: ``train(config)``, ``train_stacked(configs)``, ``train_many(configs)``.

These are the entry points the CLI and the study parts call. Each loads the data (unless given), prepares
every run the same way (:func:`ninr.train.setup.prepare_run`), trains through the one loop
(:func:`ninr.train.fit.fit`) on the one-model or the stacked backend, and (given output directories)
writes each run's directory. No global state is read or left behind.

``train_many`` is the hook for sweeps: it groups configs with :func:`ninr.train.stacking.group_stackable`,
stacks each group and trains the rest one by one, saying so in the log (logger ``ninr.train.stacking``).
Stacked and one-by-one training give each run the same records to float tolerance (the tests check it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ninr.data.base import Dataset, load_dataset
from ninr.errors import ConfigError, check_positive_int
from ninr.methods.base import Method
from ninr.models.layers import channel_stats
from ninr.perf import check_precision, use_channels_last
from ninr.rng import derive_seed, scoped_global_seed
from ninr.train import rundir
from ninr.train.backends.base import Backend
from ninr.train.backends.single import SingleBackend
from ninr.train.backends.stacked import StackedBackend
from ninr.train.backends.stacked_net import NotStackableError
from ninr.train.callbacks import Callback, FitState
from ninr.train.config import TrainConfig, canonical_json
from ninr.train.fit import Snapshot, fit
from ninr.train.setup import (
    PreparedRun,
    build_setup,
    prepare_run,
    resolve,
    to_conv_layout,
    versions,
    with_calibrated_sigma,
)
from ninr.train.stacking import MAX_STACK, group_stackable, solo_reason, stack_key, why_alone

log = logging.getLogger("ninr.train.stacking")


@dataclass
class TrainResult:
    """The outcome of one run."""

    run_id: str
    config: dict[str, Any]
    status: str
    records: list[dict[str, Any]]
    model: nn.Module
    setup: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    out_dir: Path | None = None

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's record (empty if no epoch finished)."""
        return self.records[-1] if self.records else {}


class MetricsWriter(Callback):
    """Appends each epoch's record to ``metrics.jsonl`` as soon as it exists."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_epoch_end(self, state: FitState, record: dict[str, Any]) -> None:
        rundir.append_jsonl(self.path, record)


def train(
    config: TrainConfig,
    *,
    data: Dataset | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
) -> TrainResult:
    """Train one run described by ``config``; with ``out_dir``, write its run directory.

    With ``out_dir`` the run's state is checkpointed after every epoch (``epoch.pt``, deleted when the run has
    finished). ``resume``: ``out_dir`` holds this run (its ``config.json`` has this run's id); it continues from
    the end of its last checkpointed epoch, in place, or starts again where there is none; :func:`resume_refusal`
    says which runs are refused. On the same machine, thread count and code path the records and final weights
    equal those of an uninterrupted run (tested); ``callbacks`` are not checkpointed: they see
    ``on_train_start`` with the restored epoch and records, then the remaining epochs.

    Example:
        >>> cfg = TrainConfig(dataset="synthetic", epochs=1, max_steps=2)
        >>> train(cfg).status
        'stopped'
    """
    if resume and (out_dir is None or overwrite):
        raise ConfigError("`resume` needs `out_dir` (the run directory to continue) and no `overwrite`")
    return _train_group([config], data, [out_dir], overwrite, [list(callbacks)], stacked=False, resume=resume)[0]


def resume_refusal(methods: Sequence[Method]) -> str | None:
    """Why a run with ``methods`` cannot be resumed exactly from an epoch checkpoint (``None``: it can).

    An epoch checkpoint holds the model, the optimizer and every generator the loop hands out (a method's own
    stream, its noise modules'). A method is resumable when it keeps no state of its own besides: its instance
    holds nothing but its hyperparameters (dataclass fields), and it is one of ninr's own methods or its class
    declares ``resumable = True`` (a plugin that keeps everything in the model, its noise modules and its
    stream). ``resumable = False`` refuses.
    """
    for method in methods:
        cls = type(method)
        fields: set[str] = {f.name for f in dataclasses.fields(method)} if dataclasses.is_dataclass(method) else set()
        extra = sorted(set(getattr(method, "__dict__", {})) - fields)
        declared = getattr(cls, "resumable", None)
        why = ""
        if extra:
            why = f"it keeps state besides its hyperparameters ({', '.join(extra)}), which no checkpoint holds"
        elif declared is False:
            why = "its class declares resumable = False"
        elif declared is None and not cls.__module__.startswith("ninr.methods."):
            why = (
                f"its class ({cls.__module__}.{cls.__qualname__}) does not declare `resumable = True` (a method whose "
                "state lives only in the model, its noise modules and its own stream)"
            )
        if why:
            return f"method {method.name!r} cannot be resumed exactly: {why}"
    return None


def train_stacked(
    configs: Sequence[TrainConfig],
    *,
    data: Dataset | None = None,
    out_dirs: Sequence[str | Path | None] | None = None,
    overwrite: bool = False,
    callbacks: Sequence[Sequence[Callback]] | None = None,
) -> list[TrainResult]:
    """Train ``configs`` (one stack: equal :func:`~ninr.train.stacking.stack_key`) as one computation.

    ``callbacks``: one sequence per config, called as :func:`train` calls a run's callbacks (their
    ``state.model`` is the run's own model, its parameters views of the stack until training ends).

    Raises:
        ConfigError: the configs do not share a stack key.
        NotStackableError: the built models have no stacked form (nothing has been written yet).
    """
    keys = {stack_key(c) for c in configs}
    if not configs or None in keys or len(keys) != 1:
        raise ConfigError("`configs` must be non-empty and stackable together (equal stack_key); use train_many")
    outs = _per_config("out_dirs", out_dirs, len(configs), lambda: None)
    cbs = _per_config("callbacks", callbacks, len(configs), list)
    return _train_group(configs, data, outs, overwrite, cbs, stacked=True)


def train_many(
    configs: Sequence[TrainConfig],
    data: Dataset | None = None,
    *,
    out_dirs: Sequence[str | Path | None] | None = None,
    overwrite: bool = False,
    max_stack: int = MAX_STACK,
    callbacks: Sequence[Sequence[Callback]] | None = None,
    min_stack: int = 2,
) -> list[TrainResult]:
    """Train every config, stacking those that can share a stack; results in the order of ``configs``.

    Groups come from :func:`~ninr.train.stacking.group_stackable`; a group smaller than ``min_stack``, or a
    group whose models turn out not to stack, is trained one by one, and the log (logger
    ``ninr.train.stacking``) says which and why. ``min_stack=1`` trains even a config without a partner as a
    stack of one (unless it has a :func:`~ninr.train.stacking.solo_reason`), so that its records are bit for
    bit those a larger stack gives it where :func:`~ninr.train.stacking.composition_invariant` holds.
    ``data``, when given, is used for every config; otherwise each data set is loaded once per call.
    """
    check_positive_int("min_stack", min_stack)
    outs = _per_config("out_dirs", out_dirs, len(configs), lambda: None)
    cbs = _per_config("callbacks", callbacks, len(configs), list)
    cache: dict[str, Dataset] = {}
    results: list[TrainResult | None] = [None] * len(configs)
    for group in group_stackable(configs, max_stack):
        group_data = data if data is not None else _load(configs[group[0]], cache)
        solo = solo_reason(configs[group[0]]) if len(group) == 1 else None
        stack_it = len(group) >= min_stack and solo is None
        if stack_it:
            try:
                done = _train_group(
                    [configs[i] for i in group],
                    group_data,
                    [outs[i] for i in group],
                    overwrite,
                    [cbs[i] for i in group],
                    stacked=True,
                )
            except NotStackableError as exc:
                log.warning("training %d runs one by one: their models do not stack (%s)", len(group), exc)
            else:
                log.info("trained %d runs as one stack (%s)", len(group), configs[group[0]].model)
                for i, result in zip(group, done, strict=True):
                    results[i] = result
                continue
        for i in group:
            if not stack_it:
                why = solo or (why_alone(configs[i]) if len(group) == 1 else f"groups under min_stack={min_stack}")
                log.info("training run %d one by one: %s", i, why)
            results[i] = _train_group([configs[i]], group_data, [outs[i]], overwrite, [cbs[i]], stacked=False)[0]
    return [r for r in results if r is not None]


def _train_group(
    configs: Sequence[TrainConfig],
    data: Dataset | None,
    out_dirs: Sequence[str | Path | None],
    overwrite: bool,
    callbacks: Sequence[Sequence[Callback]],
    stacked: bool,
    resume: bool = False,
) -> list[TrainResult]:
    """Prepare, train (one model, or one stack) and write ``configs``; one result per config.

    An output directory that holds a run (with ``overwrite``) is not touched until the new run has finished:
    the new run is written beside it (:func:`ninr.train.rundir.prepare_run_dir`) and swapped in at the end;
    if anything fails or interrupts it first, the new run's directory is deleted and the old run stays.
    ``resume`` (one run): continue the run in its directory, in place; a failure leaves it to resume again.
    """
    cfg = configs[0]
    check_precision(cfg.precision, cfg.device)
    for c in configs:
        resolve(c)  # bad names and hyperparameters fail before anything is written
    targets = [None if d is None else Path(d) for d in out_dirs]
    if resume:
        return _train_into(configs, data, targets, callbacks, stacked, resume=True)
    for target in targets:  # refuse before creating anything
        if target is not None:
            rundir.check_run_dir(target, overwrite=overwrite)
    prepared: list[tuple[Path, bool] | None] = []
    try:
        for target in targets:
            prepared.append(None if target is None else rundir.prepare_run_dir(target, overwrite=overwrite))
        outs = [None if p is None else p[0] for p in prepared]
        results = _train_into(configs, data, outs, callbacks, stacked)
    except BaseException:
        for p in prepared:
            if p is not None and p[1]:
                rundir.discard(p[0])
        raise
    for result, target, p in zip(results, targets, prepared, strict=True):
        if p is not None and p[1] and target is not None:
            rundir.replace_run_dir(p[0], target)
        result.out_dir = target
    return results


def _train_into(
    configs: Sequence[TrainConfig],
    data: Dataset | None,
    outs: Sequence[Path | None],
    callbacks: Sequence[Sequence[Callback]],
    stacked: bool,
    resume: bool = False,
) -> list[TrainResult]:
    """Train ``configs`` and write each run's files into its directory of ``outs`` (``None``: none).

    A run trained on its own with a directory checkpoints every epoch (``epoch.pt``); ``resume`` continues it
    from there (:func:`_resume_from`).
    """
    started = time.perf_counter()
    cfg = configs[0]
    if data is None:
        data = load_dataset(cfg.dataset, **dict(cfg.dataset_kwargs))
    if any(out is not None for out in outs):
        _ = data.fingerprint  # computed on the data's own device, before the copy to the training device
    data = data.to(cfg.device)
    stats = channel_stats(data.x_train)
    runs = [prepare_run(c, data, stats) for c in configs]
    backend = _backend(runs, stacked)
    if stacked:
        for k, run in enumerate(runs):
            run.setup["stacked"] = {"runs": len(runs), "index": k}
    metas = [_run_meta(run, data) if out is not None else {} for run, out in zip(runs, outs, strict=True)]
    saved = _resume_from(runs[0], outs[0], metas[0]) if resume else None
    writers: list[list[Callback]] = []
    for out, meta in zip(outs, metas, strict=True):
        if out is not None:
            rundir.atomic_write_json(out / rundir.CONFIG, meta)
        writers.append([MetricsWriter(out / rundir.METRICS)] if out is not None else [])
    if resume and outs[0] is not None:  # the epochs after the checkpoint are computed again
        rundir.write_jsonl(outs[0] / rundir.METRICS, [] if saved is None else saved["info"]["records"])
    per_run = [[*w, *cbs] for w, cbs in zip(writers, callbacks, strict=True)]
    save = None if stacked or outs[0] is None else _epoch_saver(outs[0], metas[0])
    with scoped_global_seed(derive_seed(cfg.seed, "global")):  # for code that draws from torch's global RNG
        states = fit(backend, data, configs, [run.methods for run in runs], per_run, resume=saved, checkpoint=save)
    backend.release()
    wall = (time.perf_counter() - started) / len(runs)
    results = []
    for run, state, out, meta in zip(runs, states, outs, metas, strict=True):
        result = TrainResult(run.run_id, run.resolved, state.status, state.records, run.model, run.setup, wall, out)
        if out is not None:
            _write_outputs(out, result, meta)
        results.append(result)
    return results


def _epoch_saver(out: Path, meta: Mapping[str, Any]) -> Callable[[Snapshot], None]:
    """The ``checkpoint`` function of :func:`ninr.train.fit.fit` that writes ``out/epoch.pt``."""
    keep = {k: meta[k] for k in ("run_id", "config", "versions")}

    def save(snap: Snapshot) -> None:
        rundir.save_epoch_checkpoint(out / rundir.EPOCH_CHECKPOINT, snap, keep)

    return save


def _resume_from(run: PreparedRun, out: Path | None, meta: Mapping[str, Any]) -> Snapshot | None:
    """The epoch checkpoint ``run`` continues from (``None``: none was written, the run starts again from its
    first epoch), after checking that ``out`` holds this very run and that it can be resumed exactly.

    Raises:
        ConfigError: ``out`` holds no run or another run; a method cannot be resumed (:func:`resume_refusal`); the
            checkpoint was written by other versions of ninr, torch or Python (their arithmetic may differ).
        DataError: ``config.json`` or ``epoch.pt`` is damaged.
    """
    if out is None:
        raise ConfigError("`resume` needs the run directory of the run to continue, got none")
    held = rundir.read_config(out)["run_id"] if (out / rundir.CONFIG).is_file() else None
    if held != run.run_id:
        what = "no run" if held is None else f"run {held}"
        raise ConfigError(f"`out` must hold run {run.run_id} to resume it, got {str(out)!r} which holds {what}")
    refusal = resume_refusal(run.methods)
    if refusal is not None:
        raise ConfigError(f"{refusal}; train it again from the start instead (--overwrite)")
    path = out / rundir.EPOCH_CHECKPOINT
    if not path.is_file():
        return None
    saved, saved_meta = rundir.load_epoch_checkpoint(path)
    if saved_meta.get("run_id") != run.run_id:
        raise ConfigError(f"{path} is a checkpoint of run {saved_meta.get('run_id')}, not of run {run.run_id}")
    if saved_meta.get("versions") != meta["versions"]:
        raise ConfigError(
            f"{path} was written by {saved_meta.get('versions')} and this is {meta['versions']}: resumed, the run "
            "would not compute what the uninterrupted run computes; train it again (--overwrite) or resume it "
            "with those versions"
        )
    return saved


def _backend(runs: Sequence[PreparedRun], stacked: bool) -> Backend:
    cfg = runs[0].config
    if not stacked:
        model = to_conv_layout(runs[0].model, cfg.device)
        return SingleBackend(model, lr=cfg.lr, momentum=cfg.momentum)
    models = [run.model for run in runs]
    has_conv = any(isinstance(m, nn.Conv2d) for m in models[0].modules())
    return StackedBackend(
        models,
        lr=[run.config.lr for run in runs],
        momentum=[run.config.momentum for run in runs],
        use_channels_last=has_conv and use_channels_last(cfg.device, models[0]),
    )


def _per_config(name: str, values: Sequence[Any] | None, n: int, default: Any) -> list[Any]:
    """One entry per config: ``values`` checked for length, or ``default`` for each."""
    if values is None:
        return [default() for _ in range(n)]
    if len(values) != n:
        raise ConfigError(f"`{name}` must have one entry per config ({n}), got {len(values)}")
    return list(values)


def _load(config: TrainConfig, cache: dict[str, Dataset]) -> Dataset:
    key = canonical_json([config.dataset, dict(config.dataset_kwargs)])
    if key not in cache:
        cache[key] = load_dataset(config.dataset, **dict(config.dataset_kwargs))
    return cache[key]


def _run_meta(run: PreparedRun, data: Dataset) -> dict[str, Any]:
    """``config.json``: the run id, the resolved config, the data it trained on, the model's facts, versions.

    ``data``: the data's identity (:meth:`~ninr.data.Dataset.identity`) and ``registered``, whether it is
    the registered data set the config names (then ``load_dataset`` rebuilds it, and the identity is not in
    the run id) or data given in Python (its identity is in the run id; ``ninr eval`` cannot reload it).
    """
    return {
        "run_id": run.run_id,
        "config": run.resolved,
        "data": {"registered": run.data is None, **data.identity()},
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "setup": run.setup,
        "versions": versions(),
    }


def _write_outputs(out: Path, result: TrainResult, meta: dict[str, Any]) -> None:
    summary = {
        "run_id": result.run_id,
        "status": result.status,
        "epochs_completed": len(result.records),
        "final": result.final,
        "wall_time_s": result.wall_time_s,
    }
    rundir.atomic_write_json(out / rundir.SUMMARY, summary)
    rundir.save_checkpoint(out / rundir.CHECKPOINT, result.model.state_dict(), meta)
    (out / rundir.EPOCH_CHECKPOINT).unlink(missing_ok=True)  # finished: the run directory holds its outputs only


def load_run(run_dir: str | Path, *, device: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild a trained model from its run directory (checkpoint loaded with ``weights_only=True``)."""
    path = Path(run_dir)
    state_dict, meta = rundir.load_checkpoint(path / rundir.CHECKPOINT, map_location=device)
    config = with_calibrated_sigma(TrainConfig.from_dict({**meta["config"], "device": device}), meta.get("setup", {}))
    _, methods = resolve(config)
    model, _ = build_setup(config, meta["input_shape"], meta["num_classes"], methods)
    to_conv_layout(model, device)
    model.load_state_dict(state_dict)
    model.eval()
    return model, config
