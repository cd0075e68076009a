"""The ``ninr`` command line: thin front ends over the library, one module per group of subcommands.

Bad arguments exit with code 2 and a message naming the argument, the rule and the value; a missing
data set, or a file that is not what it should be (a corrupted checkpoint), exits with code 1 and says so.
No traceback reaches the user for either.

The arguments several subcommands share are checked once, after parsing and before any handler runs
(:func:`ninr.cli.args.check_parsed`): ``--device`` must be a device this machine has, ``--out`` a path that
can be written (not under a file, in a writable directory).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ninr.cli import eval as eval_cmd
from ninr.cli import hep, phases, registries, studies, train
from ninr.cli.args import Handler, check_parsed
from ninr.errors import ConfigError, DataError, NinrError

SUBCOMMANDS = (train, registries, studies, hep, phases, eval_cmd)
"""Modules that each add their subcommands to the parser with ``register(subparsers) -> {name: handler}``."""


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The ``ninr`` argument parser and the handler of each subcommand."""
    parser = argparse.ArgumentParser(prog="ninr", description="Noise injection for neural networks (NINR).")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Handler] = {}
    for module in SUBCOMMANDS:
        handlers.update(module.register(sub))
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ninr`` console script."""
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        check_parsed(args)
        return handlers[args.command](args)
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
