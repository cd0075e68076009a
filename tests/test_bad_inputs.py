"""The catalogue of bad inputs: one row per bad input, each refused with a message that names the argument.

A command-line row is the ``ninr`` argument list, the exit code it must end with (2 for a bad argument, 1 for a
file that is not what it should be) and a fragment its message must contain; it must print no traceback, and
every file that was there before must be there, unchanged, afterwards (most rows also write nothing at all). A
library row is the call, the exception type it must raise and a fragment of the message.

Placeholders in a command line: ``{run}`` a fresh copy of a trained run directory, ``{tmp}`` the row's own
directory (also the working directory), ``{file}`` a regular file, ``{ro}`` a read-only directory, ``{tiny}`` a
one-run phases preset, ``{notrain}`` a table preset that names no data set, ``{configs}`` the checkout's
``configs/``, ``{absent_cuda}`` a CUDA device this machine does not have.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ninr.cli import main
from ninr.errors import ConfigError, DataError
from ninr.robustness import evaluate
from ninr.robustness.attacks import attack, check_epsilons
from ninr.robustness.corruptions import corrupt
from ninr.studies import PARTS, make_executor, parse_preset
from ninr.train import TrainConfig, load_run, rundir

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--dataset", "synthetic", "--max-steps", "1", "--epochs", "1", "--quiet"]
"""A one-step training run on the synthetic data set: the rows add the one bad argument."""

TINY_PHASES = """
name = "tiny"

[phases]
seeds = [0]

[phases.options.linear]
sigmas = [0.5]
steps = 5
noise = ["fixed"]
"""

NO_DATASET = """
name = "notrain"

[table]
seeds = 1
"""

ABSENT_CUDA = f"cuda:{torch.cuda.device_count()}"
"""A CUDA device index one past the last this machine has: absent with or without CUDA."""

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


class Evil:
    """A pickle that asks to run code when loaded (``print``, harmless if it ever ran)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this checkpoint ran code",))


def truncate_checkpoint(run: Path) -> None:
    data = (run / rundir.CHECKPOINT).read_bytes()
    (run / rundir.CHECKPOINT).write_bytes(data[: len(data) // 2])


def evil_checkpoint(run: Path) -> None:
    torch.save({"model": {}, "meta": Evil()}, run / rundir.CHECKPOINT)


def corrupt_config(run: Path) -> None:
    (run / rundir.CONFIG).write_text('{"run_id": ')


@dataclass(frozen=True)
class Ctx:
    """The files a row works on (see the module docstring)."""

    tmp: Path
    run: Path
    file: Path

    def format(self) -> dict[str, str]:
        return {
            "tmp": str(self.tmp),
            "run": str(self.run),
            "file": str(self.file),
            "ro": str(self.tmp / "ro"),
            "tiny": str(self.tmp / "tiny.toml"),
            "notrain": str(self.tmp / "notrain.toml"),
            "configs": str(ROOT / "configs"),
            "absent_cuda": ABSENT_CUDA,
        }


@dataclass(frozen=True)
class Bad:
    """One bad input: a command line (exit code) or a library call (exception type), and its message."""

    call: tuple[str, ...] | Callable[[Ctx], Any]
    expect: int | type[BaseException]
    fragment: str
    setup: Callable[[Path], None] | None = None
    """Prepares the run copy ``{run}`` (e.g. truncates its checkpoint)."""
    absent: tuple[str, ...] = ()
    """Text the message must not contain."""
    writes: bool = False
    """The command may add files before it fails (what was there must still be there, unchanged)."""
    patch: tuple[tuple[str, str, Any], ...] = ()
    """``(module, attribute, value)`` set for the row."""
    needs: str | None = None
    """A module the row needs (skipped without it)."""


def cli(*argv: str) -> tuple[str, ...]:
    return tuple(argv)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()


def _images(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def _nan_images() -> torch.Tensor:
    x = _images()
    x[3, 0, 1, 2] = float("nan")
    return x


def _expand(text_or_data: dict[str, Any]) -> Any:
    preset = parse_preset(text_or_data)
    return [s for p in preset.parts() for s in PARTS.get(p).expand(preset.section(p), preset.name)]


ROWS: dict[str, Any] = {
    # ------------------------------------------------------------------ ninr train: argument types and names
    "train --sigma -1": Bad(cli(*TRAIN, "--sigma", "-1"), 2, "argument --sigma: must be a finite number >= 0, got -1"),
    "train --batch-size 0": Bad(
        cli(*TRAIN, "--batch-size", "0"), 2, "argument --batch-size: must be an integer >= 1, got 0"
    ),
    "train --lr abc": Bad(cli(*TRAIN, "--lr", "abc"), 2, "argument --lr: must be a finite number > 0, got 'abc'"),
    "train --nin middle": Bad(cli(*TRAIN, "--nin", "middle"), 2, "argument --nin: invalid choice: 'middle'"),
    "train --model mpl": Bad(cli(*TRAIN, "--model", "mpl"), 2, "unknown model 'mpl'; did you mean 'mlp'?"),
    "train --method dropot": Bad(cli(*TRAIN, "--method", "dropot"), 2, "unknown method 'dropot'"),
    "train two NINR methods": Bad(cli(*TRAIN, "--method", "in-ninr", "--method", "full-ninr"), 2, "cannot be combined"),
    "train --param rate=1.5": Bad(cli(*TRAIN, "--method", "dropout", "--param", "rate=1.5"), 2, "`rate` must be"),
    "train --param sigmaa=1": Bad(
        cli(*TRAIN, "--param", "sigmaa=1"), 2, "`--param sigmaa` must be a hyperparameter of a chosen method"
    ),
    "train --dataset fashion": Bad(
        cli(*TRAIN, "--dataset", "fashion"), 2, "unknown dataset 'fashion'; did you mean 'fashion-mnist'?"
    ),
    "train --resume without --out": Bad(cli(*TRAIN, "--resume"), 2, "`--resume` needs `--out`"),
    "train --overwrite without --out": Bad(cli(*TRAIN, "--overwrite"), 2, "`--overwrite` needs `--out`"),
    "train --resume --overwrite": Bad(
        cli(*TRAIN, "--out", "x", "--resume", "--overwrite"),
        2,
        "argument --overwrite: not allowed with argument --resume",
    ),
    "train --epochs 0": Bad(cli(*TRAIN, "--epochs", "0"), 2, "argument --epochs: must be an integer >= 1, got 0"),
    "train --device foo": Bad(
        cli(*TRAIN, "--device", "foo"),
        2,
        "`--device` must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got 'foo'",
    ),
    "train --device cuda (none here)": pytest.param(
        Bad(cli(*TRAIN, "--device", "cuda"), 2, "`--device` must be a device this machine has, got 'cuda'"),
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
    ),
    "train --device absent cuda index": Bad(
        cli(*TRAIN, "--device", "{absent_cuda}"), 2, "`--device` must be a device this machine has"
    ),
    # ------------------------------------------------------------------ ninr train: where it writes
    "train --out under a file": Bad(
        cli(*TRAIN, "--out", "{file}/run"), 2, "`--out` must be a path that does not lie under a file"
    ),
    "train --out a file": Bad(cli(*TRAIN, "--out", "{file}"), 2, "out` must be a directory"),
    "train --out read-only": pytest.param(
        Bad(cli(*TRAIN, "--out", "{ro}/run"), 2, "`--out` must be a path in a writable directory"),
        marks=pytest.mark.skipif(ROOT_USER, reason="root writes into a directory without write permission"),
    ),
    "train --out on a read-only file system": pytest.param(
        Bad(cli(*TRAIN, "--out", "/sys/ninr-test-run"), 2, "`--out` must be a path in a writable directory"),
        marks=pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sysfs is Linux's"),
    ),
    # ------------------------------------------------------------------ ninr eval
    "eval a missing run": Bad(cli("eval", "{tmp}/missing", "--suite", "clean"), 2, "`run_dir` must be a run directory"),
    "eval --severities 7": Bad(
        cli("eval", "{run}", "--severities", "7"), 2, "argument --severities: must be an integer in 1..5, got 7"
    ),
    "eval --suite cleen": Bad(
        cli("eval", "{run}", "--suite", "cleen"), 2, "unknown suite 'cleen'; did you mean 'clean'?"
    ),
    "eval --shift-dataset fashon": Bad(
        cli("eval", "{run}", "--suite", "shift", "--shift-dataset", "fashon"),
        2,
        "unknown dataset 'fashon'; did you mean 'fashion-mnist'?",
    ),
    "eval --device foo": Bad(cli("eval", "{run}", "--suite", "clean", "--device", "foo"), 2, "`--device` must be"),
    "eval --device absent cuda index": Bad(
        cli("eval", "{run}", "--suite", "clean", "--device", "{absent_cuda}"),
        2,
        "`--device` must be a device this machine has",
    ),
    "eval --out under a file": Bad(
        cli("eval", "{run}", "--suite", "clean", "--out", "{file}/records.jsonl"),
        2,
        "`--out` must be a path that does not lie under a file",
    ),
    # a damaged run directory is a data problem (exit 1); the evaluation's store may be started before the
    # checkpoint is read, but the run's own files stay as they were
    "eval a truncated checkpoint": Bad(
        cli("eval", "{run}", "--suite", "clean", "--quiet"),
        1,
        "checkpoint.pt is not a ninr checkpoint: it is truncated or corrupted",
        setup=truncate_checkpoint,
        absent=("Traceback",),
        writes=True,
    ),
    "eval a checkpoint that asks to run code": Bad(
        cli("eval", "{run}", "--suite", "clean", "--quiet"),
        1,
        "checkpoint.pt is not a ninr checkpoint: it asks to import",
        setup=evil_checkpoint,
        absent=("weights_only", "this checkpoint ran code"),
        writes=True,
    ),
    "eval a corrupted config.json": Bad(
        cli("eval", "{run}", "--suite", "clean", "--quiet"),
        1,
        "config.json is not a run's config: not valid JSON",
        setup=corrupt_config,
    ),
    # ------------------------------------------------------------------ ninr sweep / reproduce / report / store
    "sweep a missing file": Bad(cli("sweep", "{tmp}/missing.toml"), 2, "`config` must be a readable TOML file"),
    "sweep --only tabel": Bad(
        cli("sweep", "{configs}/tiny.toml", "--only", "tabel", "--out", "{tmp}/res"),
        2,
        "`only` must be a part of preset 'tiny', got 'tabel'",
    ),
    "sweep --workers 0": Bad(
        cli("sweep", "{tiny}", "--workers", "0"), 2, "argument --workers: must be an integer >= 1"
    ),
    "sweep --out a file": Bad(cli("sweep", "{tiny}", "--out", "{file}"), 2, "`--out` must be a directory"),
    "sweep --out under a file": Bad(
        cli("sweep", "{tiny}", "--out", "{file}/res"), 2, "`--out` must be a path that does not lie under a file"
    ),
    "sweep --scheduler unreachable": Bad(
        cli("sweep", "{tiny}", "--scheduler", "tcp://127.0.0.1:1", "--out", "{tmp}/res"),
        2,
        "`scheduler` must be the address of a running Dask scheduler (tcp://HOST:PORT), got 'tcp://127.0.0.1:1'",
        patch=(("ninr.studies.executors", "SCHEDULER_TIMEOUT_S", 1.0),),
        needs="distributed",
    ),
    "sweep --scheduler malformed": Bad(
        cli("sweep", "{tiny}", "--scheduler", "nonsense", "--out", "{tmp}/res"),
        2,
        "`scheduler` must be the address of a running Dask scheduler (tcp://HOST:PORT), got 'nonsense'",
        needs="distributed",
    ),
    "sweep a table that names no data set": Bad(
        cli("sweep", "{notrain}", "--out", "{tmp}/res"), 2, "[table.train]: `dataset` is required"
    ),
    "reproduce --preset quik": Bad(
        cli("reproduce", "--preset", "quik", "--out", "{tmp}/res"),
        2,
        "`preset` must name a file in configs/, got 'quik'; did you mean 'quick'",
    ),
    "report a missing store": Bad(cli("report", "{tmp}/nowhere"), 2, "`store` must be a results directory"),
    "store migrate a missing store": Bad(
        cli("store", "migrate", "{tmp}/nowhere"), 2, "`store` must be a results directory"
    ),
    "list modle": Bad(cli("list", "modle"), 2, "`kind` must be one of"),
    # ------------------------------------------------------------------ ninr phases, ninr hep
    "phases --steps with mlp": Bad(
        cli("phases", "--model", "mlp", "--steps", "20", "--out", "{tmp}/O"),
        2,
        "`--steps` applies to --model linear",
    ),
    "phases --epochs with linear": Bad(
        cli("phases", "--model", "linear", "--epochs", "2", "--out", "{tmp}/O"),
        2,
        "`--epochs` applies to --model mlp only, got --model linear",
    ),
    "phases --sigmas 0": Bad(
        cli("phases", "--sigmas", "0", "--out", "{tmp}/O"), 2, "argument --sigmas: must be a finite number > 0, got 0"
    ),
    "phases repeated sigmas": Bad(
        cli("phases", "--sigmas", "1", "1", "--out", "{tmp}/O"), 2, "must be free of repeated sigmas"
    ),
    "phases --out a file": Bad(
        cli("phases", "--sigmas", "1", "--steps", "5", "--out", "{file}"), 2, "`--out` must be a directory"
    ),
    "hep train --epochs 0": Bad(
        cli("hep", "train", "--config", "{configs}/hep-quick.toml", "--out", "{tmp}/h", "--epochs", "0"),
        2,
        "argument --epochs: must be an integer >= 1, got 0",
    ),
    "hep generate --out a file": Bad(
        cli("hep", "generate", "--config", "{configs}/hep-quick.toml", "--out", "{file}"),
        2,
        "`--out` must be a directory",
    ),
    # ------------------------------------------------------------------ library calls
    "load_run of a truncated checkpoint": Bad(
        lambda c: load_run(c.run), DataError, "is not a ninr checkpoint: it is truncated", setup=truncate_checkpoint
    ),
    "load_run of a checkpoint that asks to run code": Bad(
        lambda c: load_run(c.run),
        DataError,
        "is not a ninr checkpoint: it asks to import",
        setup=evil_checkpoint,
        absent=("weights_only",),
    ),
    "read_config of a corrupted config.json": Bad(
        lambda c: rundir.read_config(c.run), DataError, "is not a run's config: not valid JSON", setup=corrupt_config
    ),
    "TrainConfig epochs 0": Bad(lambda c: TrainConfig(epochs=0), ConfigError, "`epochs` must be an integer >= 1"),
    "TrainConfig device foo": Bad(lambda c: TrainConfig(device="foo"), ConfigError, "`device` must be a torch device"),
    "a table without a data set": Bad(
        lambda c: _expand({"name": "t", "table": {"seeds": 1}}), ConfigError, "[table.train]: `dataset` is required"
    ),
    "make_executor malformed scheduler": Bad(
        lambda c: make_executor(scheduler="nonsense"),
        ConfigError,
        "`scheduler` must be the address of a running Dask scheduler",
        needs="distributed",
    ),
    "corrupt NaN images": Bad(
        lambda c: corrupt(_nan_images(), "gaussian-noise", 1),
        ConfigError,
        "`x` must be images with finite values in [0, 1], got 1 NaN value(s)",
    ),
    "corrupt infinite images": Bad(
        lambda c: corrupt(_images().index_fill_(0, torch.tensor([5]), float("inf")), "gaussian-noise", 1),
        ConfigError,
        "`x` must be images with finite values in [0, 1]",
    ),
    "attack int32 labels": Bad(
        lambda c: attack("fgsm", _model(), _images(), torch.zeros(64, dtype=torch.int32), [0.1]),
        ConfigError,
        "`y` must be an int64 tensor of shape (64,), got a tensor of dtype int32 and shape (64,)",
    ),
    "attack labels of the wrong length": Bad(
        lambda c: attack("fgsm", _model(), _images(), torch.zeros(63, dtype=torch.int64), [0.1]),
        ConfigError,
        "`y` must be an int64 tensor of shape (64,), got a tensor of dtype int64 and shape (63,)",
    ),
    "evaluate int32 labels": Bad(
        lambda c: evaluate(_model(), (_images(), torch.zeros(64, dtype=torch.int32)), "clean"),
        ConfigError,
        "labels` must be an int64 tensor of shape (64,), got a tensor of dtype int32",
    ),
    "epsilons empty": Bad(lambda c: check_epsilons([]), ConfigError, "`epsilons` must be a number or a non-empty list"),
    "epsilons text": Bad(lambda c: check_epsilons("0.1"), ConfigError, "`epsilons` must be a number or a non-empty"),
    "epsilon negative": Bad(
        lambda c: check_epsilons([0.1, np.float32(-0.5)]),
        ConfigError,
        "`epsilon` must be a finite number >= 0, got -0.5",
    ),
    "epsilon a bool": Bad(lambda c: check_epsilons([True]), ConfigError, "`epsilon` must be a finite number >= 0"),
}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``: a file's bytes, ``None`` for a directory."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture
def ctx(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    (tmp_path / "afile").write_text("a file, not a directory\n")
    (tmp_path / "tiny.toml").write_text(TINY_PHASES)
    (tmp_path / "notrain.toml").write_text(NO_DATASET)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    monkeypatch.chdir(tmp_path)
    yield Ctx(tmp_path, run, tmp_path / "afile")
    (tmp_path / "ro").chmod(0o755)  # so that pytest can remove it


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_bad_input_is_refused_with_a_message_naming_it(
    row: Bad, ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if row.needs is not None and importlib.util.find_spec(row.needs) is None:
        pytest.skip(f"{row.needs} not installed")
    for module, name, value in row.patch:
        monkeypatch.setattr(sys.modules[module], name, value)
    if row.setup is not None:
        row.setup(ctx.run)
    if callable(row.call):
        assert isinstance(row.expect, type)
        with pytest.raises(row.expect) as exc:
            row.call(ctx)
        message = str(exc.value)
    else:
        before = snapshot(ctx.tmp)
        argv = [a.format(**ctx.format()) for a in row.call]
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, message = capsys.readouterr()
        assert code == row.expect, f"exit {code}, expected {row.expect}:\n{out}\n{message}"
        assert "Traceback" not in message
        after = snapshot(ctx.tmp)
        lost = {k for k, v in before.items() if k not in after or after[k] != v}
        assert not lost, f"changed or removed: {sorted(lost)}"
        if not row.writes:
            assert sorted(after) == sorted(before), f"written: {sorted(set(after) - set(before))}"
    assert row.fragment in message, message
    for text in row.absent:
        assert text not in message, message


# ----------------------------------------------------------------------------- what the fixes accept


def test_epsilons_of_any_numeric_type_are_taken() -> None:
    eps32 = float(np.float32(0.03))  # the float32 value, exactly
    assert check_epsilons(np.float32(0.03)) == [eps32]
    assert check_epsilons(torch.tensor(0.03)) == [eps32]
    assert check_epsilons(np.array(0.25)) == [0.25]
    assert check_epsilons([np.float64(0.1), torch.tensor(0.5, dtype=torch.float64), np.int64(0), 1]) == [
        0.1,
        0.5,
        0.0,
        1.0,
    ]
    assert check_epsilons(torch.tensor([0.0, 0.5], dtype=torch.float64)) == [0.0, 0.5]
    x, y = _images(8), torch.zeros(8, dtype=torch.int64)
    # an attack given a NumPy epsilon returns one adversarial batch, within that epsilon of the input
    eps: Any = np.float32(0.03)
    adv = attack("fgsm", _model(), x, y, eps)
    assert adv.shape == (1, *x.shape)
    # up to the rounding of x + eps to float32: float32 values in [0.5, 1) are 2**-24 apart
    assert float((adv[0] - x).abs().max()) <= eps32 + 2**-24


def test_a_table_that_names_its_data_set_per_architecture_is_accepted() -> None:
    specs = _expand(
        {
            "name": "t",
            "table": {
                "seeds": 1,
                "train": {"epochs": 1},
                "arch": {"FC": {"model": "mlp", "dataset": "synthetic"}},
            },
        }
    )
    assert [s.options.train.dataset for s in specs] == ["synthetic"]
