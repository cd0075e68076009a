"""The ``ninr`` command line: ``train``, ``demo``, ``list``, ``data fetch``.

Bad arguments exit with code 2 and a message naming the argument, the rule and the value; a
missing data set exits with code 1 and says how to get it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ninr.errors import ConfigError, DataError, NinrError

NIN_TO_METHOD = {"input": "in-ninr", "all": "full-ninr"}


def arg_type(rule: str, ok: Callable[[Any], bool], cast: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """An argparse ``type=``: parse with ``cast`` and check ``ok``; errors read "must be RULE, got VALUE"."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


nonneg_float = arg_type("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)
pos_float = arg_type("a finite number > 0", lambda v: math.isfinite(v) and v > 0)
unit_float = arg_type("a number in [0, 1)", lambda v: 0 <= v < 1)
pos_int = arg_type("an integer >= 1", lambda v: v >= 1, int)
nonneg_int = arg_type("an integer >= 0", lambda v: v >= 0, int)


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mlp", help="model name (see `ninr list`); default: mlp")
    p.add_argument(
        "--model-arg",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model builder argument, e.g. width=512 (repeatable)",
    )
    p.add_argument("--dataset", default="fashion-mnist", help="dataset name; default: fashion-mnist")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files (else NINR_DATA_DIR, ...)")
    p.add_argument("--val-size", type=nonneg_int, default=0, help="validation examples carved from train")
    p.add_argument(
        "--nin",
        choices=["none", "input", "all"],
        default=None,
        help="shortcut: input = --method in-ninr, all = --method full-ninr",
    )
    p.add_argument("--method", action="append", default=[], help="regularization method (repeatable to compose)")
    p.add_argument("--sigma", type=nonneg_float, default=None, help="noise std of the NINR methods")
    p.add_argument(
        "--param",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method hyperparameter, given to every chosen method that has it (repeatable)",
    )
    p.add_argument("--lr", type=pos_float, default=0.05, help="SGD learning rate; default: 0.05")
    p.add_argument("--momentum", type=unit_float, default=0.0, help="SGD momentum; default: 0 (plain SGD)")
    p.add_argument("--batch-size", type=pos_int, default=64, help="default: 64")
    p.add_argument("--epochs", type=nonneg_int, default=5, help="default: 5")
    p.add_argument("--max-steps", type=pos_int, default=None, help="stop after this many SGD steps")
    p.add_argument("--seed", type=nonneg_int, default=0, help="the run's seed; default: 0")
    p.add_argument("--device", default="cpu", help="torch device; default: cpu")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="fp32 (default, the reference) or bf16 autocast (needs a CPU/GPU with native bf16)",
    )
    p.add_argument("--out", default=None, help="run directory to write (config.json, metrics.jsonl, checkpoint.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def build_parser() -> argparse.ArgumentParser:
    """The ``ninr`` argument parser."""
    parser = argparse.ArgumentParser(prog="ninr", description="Noise injection for neural networks (NINR).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train one model")
    _add_train_args(p_train)
    p_demo = sub.add_parser("demo", help="train the MLP with and without in-NINR and compare")
    p_demo.add_argument("--out", default="runs/demo", help="parent directory of the two run directories")
    p_demo.add_argument("--epochs", type=pos_int, default=3)
    p_demo.add_argument(
        "--sigma", type=nonneg_float, default=32.0, help="in-NINR noise std; default 32 (decay phase at lr 0.05)"
    )
    p_demo.add_argument("--seed", type=nonneg_int, default=0)
    p_demo.add_argument("--dataset", default="fashion-mnist")
    p_list = sub.add_parser("list", help="list the registries (models, methods, distributions, ...)")
    p_list.add_argument("kind", nargs="?", default=None, help="only this registry")
    p_data = sub.add_parser("data", help="data set management")
    data_sub = p_data.add_subparsers(dest="data_command", required=True)
    p_fetch = data_sub.add_parser("fetch", help="make Fashion-MNIST available (verify checksums, cache)")
    p_fetch.add_argument("--data-dir", default=None)
    p_fetch.add_argument("--no-download", action="store_true")
    for module in PLUGINS:
        COMMANDS.update(importlib.import_module(module).register(sub))
    return parser


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`TrainConfig` the ``train`` arguments describe."""
    from ninr.methods import get as get_method
    from ninr.train import MethodSpec, TrainConfig

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


def cmd_train(args: argparse.Namespace) -> int:
    from ninr.perf import check_precision
    from ninr.train import EpochPrinter, train

    config = config_from_args(args)
    check_precision(config.precision, config.device)  # before anything is written
    callbacks = [] if args.quiet else [EpochPrinter()]
    result = train(config, out_dir=args.out, overwrite=args.overwrite, callbacks=callbacks)
    final = result.final
    where = f", written to {args.out}" if args.out else ""
    print(
        f"run {result.run_id}: {result.status}, test_acc {final.get('test_acc', float('nan')):.4f} "
        f"after {len(result.records)} epoch(s), {result.wall_time_s:.1f}s{where}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ninr.data import load_dataset
    from ninr.train import EpochPrinter, MethodSpec, TrainConfig, train

    data = load_dataset(args.dataset)
    rows = []
    for label, methods in (("none", ()), ("in-ninr", (MethodSpec("in-ninr", {"sigma": args.sigma}),))):
        config = TrainConfig(dataset=args.dataset, methods=methods, epochs=args.epochs, seed=args.seed)
        out = Path(args.out) / label
        print(f"== {label} -> {out}", file=sys.stderr)
        result = train(config, data=data, out_dir=out, overwrite=True, callbacks=[EpochPrinter(label=label)])
        rows.append((label, result))
    print(f"\nclean test accuracy after {args.epochs} epoch(s), MLP 784-256-256-256-10, seed {args.seed}:")
    print(f"{'method':<10} {'test_acc':>9} {'train_loss':>11} {'s/epoch':>8}  run")
    for label, r in rows:
        per_epoch = sum(rec["epoch_time_s"] for rec in r.records) / max(len(r.records), 1)
        print(f"{label:<10} {r.final['test_acc']:>9.4f} {r.final['train_loss']:>11.4f} {per_epoch:>8.2f}  {r.out_dir}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import ninr.data
    import ninr.functional
    import ninr.methods
    import ninr.models  # noqa: F401
    from ninr.experiments.parts import load_parts
    from ninr.experiments.run import load_hooks
    from ninr.registry import registries

    load_parts()
    load_hooks()
    regs = registries()
    kind_arg = args.kind[:-1] if args.kind and args.kind.endswith("s") and args.kind[:-1] in regs else args.kind
    kinds = [kind_arg] if kind_arg else sorted(regs)
    for kind in kinds:
        if kind not in regs:
            from ninr.errors import did_you_mean

            raise ConfigError(f"`kind` must be one of {sorted(regs)}, got {kind!r}{did_you_mean(kind, regs)}")
        print(f"{kind}s:")
        for name, doc in regs[kind].describe().items():
            print(f"  {name:<20} {doc}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from ninr.data import load_fashion_mnist_raw, locate_fashion_mnist

    where = locate_fashion_mnist(args.data_dir, download=not args.no_download)
    x_train, _, x_test, _ = load_fashion_mnist_raw(where, download=False)
    print(f"Fashion-MNIST verified in {where}: {len(x_train)} train, {len(x_test)} test images")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "demo": cmd_demo,
    "list": cmd_list,
    "data": cmd_data,
}

# Subcommands that live beside the code they drive. Each module defines
# ``register(subparsers) -> dict[str, handler]``: it adds its parsers and returns its handlers.
PLUGINS: tuple[str, ...] = ("ninr.experiments.cli", "ninr.hep.cli", "ninr.probes.cli", "ninr.robustness.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ninr`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        parser.exit(2, f"ninr {args.command}: error: {exc}\n")
    except DataError as exc:
        parser.exit(1, f"ninr {args.command}: data error: {exc}\n")
    except NinrError as exc:
        parser.exit(1, f"ninr {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted; finished epochs are in metrics.jsonl\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
