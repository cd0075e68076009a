"""The README's code runs as written (a newcomer copies it first): its Python blocks, the commands of its shell
blocks, and every ``ninr.NAME(...)`` call its prose names."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from ninr.cli import build_parser, main
from ninr.cli.train import config_from_args
from ninr.methods import METHODS
from ninr.train import resolve

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
COMMANDS = [
    line.split("#", 1)[0].strip()
    for block in re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S)
    for line in block.splitlines()
    if line.startswith("ninr ")
]
CALLS = sorted(set(re.findall(r"`(?:with )?(ninr(?:\.\w+)+)\(", TEXT)))


def test_the_readme_has_python_blocks_commands_and_calls() -> None:
    assert BLOCKS and len(COMMANDS) >= 10 and CALLS


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(block: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out  # every block prints what it shows


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command: str) -> None:
    """Each command line is accepted by the parser as written; a ``ninr train`` line also builds and resolves its
    config, so its method names and ``--param`` keys are real."""
    parser, _ = build_parser()
    try:
        args = parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{command!r} does not parse (exit {exc.code})")
    if args.command == "train":
        resolve(config_from_args(args))


@pytest.mark.parametrize("call", CALLS)
def test_readme_calls_name_what_exists_after_importing_their_module(call: str) -> None:
    """``ninr.train.load_run(DIR)`` in the prose: ``import ninr.train`` then ``ninr.train.load_run`` exists."""
    parts = call.split(".")
    obj: Any = None
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        break
    assert callable(obj), call


def test_train_help_lists_the_methods_and_list_shows_their_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    """The README sends a newcomer to ``ninr train --help`` and ``ninr list methods`` for names and keys."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
    assert all(name in help_text for name in METHODS.names())
    assert "ninrlistmethods" in help_text
    assert main(["list", "methods"]) == 0
    listing = capsys.readouterr().out
    assert "parameters: sigma=1.0, distribution='gaussian'" in listing  # in-ninr's keys with their defaults
    assert "parameters: scale=0.01, distribution='gaussian', which='weights'" in listing


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_commands_that_write_refuse_an_output_with_earlier_results_as_the_readme_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ninr demo`` refuses a non-empty ``--out`` unless ``--overwrite``; ``ninr phases`` unless ``--resume``."""
    demo = ["demo", "--dataset", "synthetic", "--epochs", "1", "--out", str(tmp_path / "demo")]
    assert _exit_code(demo) == 0
    before = _files(tmp_path / "demo")
    assert sorted({Path(name).parts[0] for name in before}) == ["in-ninr", "none"]
    capsys.readouterr()
    assert _exit_code(demo) == 2
    err = capsys.readouterr().err
    assert "`--out` must be a new or empty directory" in err and "--overwrite" in err and "Traceback" not in err
    assert _files(tmp_path / "demo") == before
    assert _exit_code([*demo, "--overwrite", "--seed", "1"]) == 0
    assert json.loads((tmp_path / "demo" / "none" / "config.json").read_text())["config"]["seed"] == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    phases = ["phases", "--model", "linear", "--sigmas", "1", "--steps", "5", "--noise", "fixed", "--quiet"]
    capsys.readouterr()
    assert _exit_code([*phases, "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert "`--out` must be a new or empty directory" in err and "notes.txt" in err and "--resume" in err
    assert _files(other) == {"notes.txt": b"mine"}
