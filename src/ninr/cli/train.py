"""``ninr train`` (one run) and ``ninr demo`` (the MLP with and without in-NINR)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ninr.cli.args import (
    Handler,
    check_out_path,
    key_value,
    nonneg_float,
    nonneg_int,
    pos_float,
    pos_int,
    refuse_non_empty,
    unit_float,
)
from ninr.data import DATASETS, load_dataset
from ninr.errors import ConfigError
from ninr.methods import METHODS
from ninr.methods import get as get_method
from ninr.models import MODELS
from ninr.perf import check_precision, num_threads
from ninr.studies.executors import RUN_THREADS, Executor, run_planned
from ninr.studies.part import RunOutput
from ninr.studies.parts.table import TrainRun, hooked_records
from ninr.studies.records import final_records
from ninr.studies.session import run_part, single_info
from ninr.studies.spec import RunSpec
from ninr.studies.store import STUDY, ResultStore
from ninr.studies.tasks import Task
from ninr.train import EpochPrinter, MethodSpec, TrainConfig, resolve, run_id, rundir, train

NIN_TO_METHOD = {"input": "in-ninr", "all": "full-ninr"}

TRAIN_DESCRIPTION = (
    "Train one model with plain SGD and print its final test accuracy. With --out DIR the run is written to the "
    "run directory DIR (config, per-epoch metrics, checkpoint; reload it with ninr.train.load_run or ninr eval); "
    "without --out nothing is written. An existing run in DIR is never replaced without --overwrite."
)
DEMO_DESCRIPTION = (
    "Train the MLP on Fashion-MNIST with and without in-NINR (input noise injection node) and print both test "
    "accuracies side by side. The two run directories go to OUT/none and OUT/in-ninr; OUT must be new or empty "
    "unless --overwrite."
)


def register(sub: Any) -> dict[str, Handler]:
    """Add ``train`` and ``demo``; return their handlers."""
    p_train = sub.add_parser("train", help="train one model", description=TRAIN_DESCRIPTION)
    add_train_args(p_train)
    p_demo = sub.add_parser(
        "demo", help="train the MLP with and without in-NINR and compare", description=DEMO_DESCRIPTION
    )
    p_demo.add_argument(
        "--out", default="runs/demo", help="parent directory of the two run directories (default: runs/demo)"
    )
    p_demo.add_argument("--overwrite", action="store_true", help="replace the demo's runs already in --out")
    p_demo.add_argument("--epochs", type=pos_int, default=3)
    p_demo.add_argument(
        "--sigma", type=nonneg_float, default=32.0, help="in-NINR noise std; default 32 (decay phase at lr 0.05)"
    )
    p_demo.add_argument("--seed", type=nonneg_int, default=0)
    p_demo.add_argument("--dataset", default="fashion-mnist")
    return {"train": cmd_train, "demo": cmd_demo}


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mlp", help=f"model name: {', '.join(MODELS.names())}; default: mlp")
    p.add_argument(
        "--model-arg",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model builder argument, e.g. width=512 (repeatable)",
    )
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        help=f"data set name: {', '.join(DATASETS.names())}; default: fashion-mnist",
    )
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files (else NINR_DATA_DIR, ...)")
    p.add_argument("--val-size", type=nonneg_int, default=0, help="validation examples carved from train")
    p.add_argument(
        "--nin",
        choices=["none", "input", "all"],
        default=None,
        help="shortcut: input = --method in-ninr, all = --method full-ninr",
    )
    p.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="NAME",
        help=f"regularization method, repeatable to compose: {', '.join(METHODS.names())}",
    )
    p.add_argument("--sigma", type=nonneg_float, default=None, help="noise std of the NINR methods")
    p.add_argument(
        "--param",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method hyperparameter, given to every chosen method that has it (repeatable); "
        "`ninr list methods` shows each method's keys and defaults",
    )
    p.add_argument("--lr", type=pos_float, default=0.05, help="SGD learning rate; default: 0.05")
    p.add_argument("--momentum", type=unit_float, default=0.0, help="SGD momentum; default: 0 (plain SGD)")
    p.add_argument("--batch-size", type=pos_int, default=64, help="default: 64")
    p.add_argument("--epochs", type=pos_int, default=5, help="default: 5")
    p.add_argument("--max-steps", type=pos_int, default=None, help="stop after this many SGD steps")
    p.add_argument("--seed", type=nonneg_int, default=0, help="the run's seed; default: 0")
    p.add_argument("--device", default="cpu", help="torch device; default: cpu")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        default="fp32",
        help="fp32 (default, the reference), bf16 autocast (needs a CPU/GPU with native bf16), or auto: bf16 "
        "where native, else fp32",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run directory to write (config.json, metrics.jsonl, checkpoint.pt); without it nothing is written",
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    again.add_argument(
        "--resume",
        action="store_true",
        help="--out holds this run: keep it if finished, else continue it from its last finished epoch",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar (shown when stderr is a terminal) or per-epoch lines"
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`TrainConfig` the ``train`` arguments describe."""
    names = list(args.method)
    if args.nin is not None and args.nin != "none":
        names.insert(0, NIN_TO_METHOD[args.nin])
    names = [n for n in names if n != "none"]
    params = dict(args.param)
    if args.sigma is not None:
        params["sigma"] = args.sigma
    specs = []
    used: set[str] = set()
    for name in names:
        cls = get_method(name)
        fields = set(getattr(cls, "__dataclass_fields__", {}))
        mine = {k: v for k, v in params.items() if k in fields}
        used |= set(mine)
        specs.append(MethodSpec(name, mine))
    unused = sorted(set(params) - used)
    if unused:
        raise ConfigError(f"`--param {unused[0]}` must be a hyperparameter of a chosen method, got {names or ['none']}")
    dataset_kwargs: dict[str, Any] = {}
    if args.dataset == "fashion-mnist":
        dataset_kwargs = {"val_size": args.val_size, **({"data_dir": args.data_dir} if args.data_dir else {})}
    return TrainConfig(
        dataset=args.dataset,
        dataset_kwargs=dataset_kwargs,
        model=args.model,
        model_kwargs=dict(args.model_arg),
        methods=tuple(specs),
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        seed=args.seed,
        device=args.device,
        precision=getattr(args, "precision", "fp32"),
    )


def train_spec(config: TrainConfig, *, out: str | None, progress: bool) -> RunSpec:
    """The one-run study of ``ninr train``: the ``train`` part's spec of ``config``, its files in ``out``."""
    methods = "+".join(m.name for m in config.methods) or "none"
    run = TrainRun(config, progress=progress)
    return RunSpec("train", "train", config.model, methods, config.seed, run, artifacts=out)


def cmd_train(args: argparse.Namespace) -> int:
    """``ninr train``: one run, stored as a one-run study in ``--out`` (the run directory), or only printed.

    ``--overwrite`` of a directory holding a run trains the new run, with its one-run store, in a hidden
    sibling directory and swaps it in whole when it has finished (:func:`ninr.train.rundir.replace_run_dir`):
    a failure or an interruption before that leaves the old run, with its store and evaluations, untouched;
    after it, they are gone with the old run.
    """
    config = config_from_args(args)
    check_precision(config.precision, config.device)  # before anything is written
    if args.out is None and (args.resume or args.overwrite):
        flag = "--resume" if args.resume else "--overwrite"
        raise ConfigError(f"`{flag}` needs `--out` (the run directory it keeps or replaces), got no --out")
    started = time.perf_counter()
    if args.out is None:
        spec = train_spec(config, out=None, progress=not args.quiet)
        records = run_planned(Task((spec,)))[0].records
    else:
        out = Path(args.out)
        store = ResultStore(out)
        part = store.read_study().get("part") if (out / STUDY).is_file() else None
        if part not in (None, "train"):
            raise ConfigError(
                f"`out` must be a run directory or a new directory, got {str(out)!r} which holds the store of "
                f"the {part!r} part of a study"
            )
        spec = train_spec(config, out=args.out, progress=not args.quiet)
        # --resume keeps the run where the directory holds this very run, finished, and continues it from its last
        # epoch checkpoint where it holds it unfinished; anything else trains afresh into a directory that must not
        # hold another run (unless --overwrite)
        keep = args.resume and store.has(spec.run_id) and (out / rundir.CHECKPOINT).is_file()
        if keep:
            _train_into_store(config, spec, store, keep=True)
        elif args.resume and _holds(out, run_id(resolve(config)[0])):
            info = single_info("train", [spec], {"hooks": [], "config": config.to_dict()}, "ninr train")
            run_part([spec], store, Executor(), info, redo=True, quiet=True, stack=False, run_fn=resume_planned)
        else:
            try:
                replacing = rundir.check_run_dir(out, overwrite=args.overwrite)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (--overwrite replaces it; --resume keeps it if it is this run)") from None
            if replacing:
                try:
                    _replace_run(config, out, progress=not args.quiet)
                except KeyboardInterrupt:
                    print(f"interrupted; {out} still holds its earlier run (the new one is discarded)", file=sys.stderr)
                    return 130
            else:
                _train_into_store(config, spec, store, keep=False)
        records = store.read(spec.run_id).records
    final = final_records(records)[-1]
    where = f", written to {args.out}" if args.out else ""
    epochs = sum(1 for r in records if "epoch" in r and "kind" not in r)
    print(
        f"run {run_id(resolve(config)[0])}: {final['run_status']}, test_acc {final.get('test_acc', float('nan')):.4f} "
        f"after {epochs} epoch(s), {time.perf_counter() - started:.1f}s{where}"
    )
    return 0


def _holds(out: Path, train_id: str) -> bool:
    """Whether the run directory ``out`` holds the run ``train_id`` (finished or not)."""
    return (out / rundir.CONFIG).is_file() and rundir.read_config(out)["run_id"] == train_id


def resume_planned(task: Task) -> list[RunOutput]:
    """The task function of ``ninr train --resume`` of an unfinished run: :func:`ninr.studies.executors.run_planned`
    for the ``train`` part's one spec, except that the run continues from its last epoch checkpoint
    (:func:`ninr.train.train` with ``resume=True``), on the same :data:`~ninr.studies.executors.RUN_THREADS`."""
    spec = task.specs[0]
    config: TrainConfig = spec.options.train
    with num_threads(RUN_THREADS):
        data = load_dataset(config.dataset, **dict(config.dataset_kwargs))
        shown = [EpochPrinter()] if spec.options.progress else []
        result = train(config, data=data, out_dir=spec.artifacts, resume=True, callbacks=shown)
    return [RunOutput(hooked_records(spec, [], result, data))]


def _train_into_store(config: TrainConfig, spec: RunSpec, store: ResultStore, *, keep: bool) -> None:
    """Run ``spec`` (its run directory is ``store``'s root) as the one-run study of ``ninr train``."""
    info = single_info("train", [spec], {"hooks": [], "config": config.to_dict()}, "ninr train")
    # one run that writes its own run directory: trained on its own, never in a stack
    run_part([spec], store, Executor(), info, resume=keep, redo=not keep, quiet=True, stack=False)


def _replace_run(config: TrainConfig, out: Path, *, progress: bool) -> None:
    """Train ``config`` as a new one-run study beside the run directory ``out``, then swap it in for ``out``."""
    staging = rundir.staging_dir(out)
    try:
        spec = train_spec(config, out=str(staging), progress=progress)
        _train_into_store(config, spec, ResultStore(staging), keep=False)
    except BaseException:
        rundir.discard(staging)
        raise
    rundir.replace_run_dir(staging, out)


def cmd_demo(args: argparse.Namespace) -> int:
    """``ninr demo``: two runs into ``--out``, which must be new or empty unless ``--overwrite``."""
    root = check_out_path("--out", args.out, directory=True)
    if not args.overwrite:
        refuse_non_empty("--out", root, "--overwrite replaces the demo's runs in it")
    data = load_dataset(args.dataset)
    rows = []
    for label, methods in (("none", ()), ("in-ninr", (MethodSpec("in-ninr", {"sigma": args.sigma}),))):
        config = TrainConfig(dataset=args.dataset, methods=methods, epochs=args.epochs, seed=args.seed)
        out = Path(args.out) / label
        print(f"== {label} -> {out}", file=sys.stderr)
        result = train(config, data=data, out_dir=out, overwrite=args.overwrite, callbacks=[EpochPrinter(label=label)])
        rows.append((label, result))
    print(f"\nclean test accuracy after {args.epochs} epoch(s), MLP 784-256-256-256-10, seed {args.seed}:")
    print(f"{'method':<10} {'test_acc':>9} {'train_loss':>11} {'s/epoch':>8}  run")
    for label, r in rows:
        per_epoch = sum(rec["epoch_time_s"] for rec in r.records) / max(len(r.records), 1)
        print(f"{label:<10} {r.final['test_acc']:>9.4f} {r.final['train_loss']:>11.4f} {per_epoch:>8.2f}  {r.out_dir}")
    return 0
