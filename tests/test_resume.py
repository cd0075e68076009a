"""Epoch checkpoints and ``resume``: an interrupted run continued from its last epoch equals an uninterrupted one.

The claim is for one machine, thread count and code path: the resumed run is computed by the same kernels in the
same order as the uninterrupted run after that epoch, so records and weights are compared bit for bit (every
stream the run draws from is restored: model, optimizer, data order, method and noise-module generators, torch's
global generator). Across machines the usual float tolerance would apply (docs/design.md, "Bit-identity").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from ninr.cli import main
from ninr.data import load_dataset
from ninr.errors import ConfigError
from ninr.methods.base import METHODS, Method, build
from ninr.studies.store import ResultStore
from ninr.train import MethodSpec, TrainConfig, rundir, train
from ninr.train.callbacks import Callback, FitState
from ninr.train.run import resume_refusal

DATA_KWARGS = {"n_train": 96, "n_test": 64, "seed": 0}
BATCH = 32  # 3 steps per epoch


def _config(*methods: MethodSpec, **fields: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "dataset": "synthetic",
        "dataset_kwargs": DATA_KWARGS,
        "model": "mlp",
        "model_kwargs": {"width": 16},
        "batch_size": BATCH,
        "epochs": 3,
        "lr": 0.05,
        "momentum": 0.9,  # the optimizer holds a momentum buffer: it must be restored too
        "seed": 3,
    }
    return TrainConfig(methods=methods, **{**base, **fields})


class InterruptAt(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) at SGD step ``step``: here, inside epoch 2."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: FitState) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt


def _timeless(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records less the wall-clock field, which differs between identical runs."""
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in records]


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


METHOD_SETS = {
    "plain": (),
    "in-ninr+l2": (MethodSpec("in-ninr", {"sigma": 2.0}), MethodSpec("l2", {})),
    "full-ninr+dropout+gradient-noise": (
        MethodSpec("full-ninr", {"sigma": 1.0}),
        MethodSpec("dropout", {"rate": 0.2}),
        MethodSpec("gradient-noise", {"eta": 0.01}),
    ),
    "input-noise+weight-noise+activation-noise+cdt": (
        MethodSpec("input-noise", {}),
        MethodSpec("weight-noise", {}),
        MethodSpec("activation-noise", {}),
        MethodSpec("cdt", {}),
    ),
}
CALIBRATED = (MethodSpec("in-ninr", {"phase": "decay"}),)  # a pilot run and a Lanczos calibration at setup: ~50 s


@pytest.mark.parametrize(
    "methods",
    [*METHOD_SETS.values(), pytest.param(CALIBRATED, marks=pytest.mark.slow)],
    ids=[*METHOD_SETS, "in-ninr calibrated to the decay phase"],
)
def test_a_run_resumed_after_epoch_1_equals_the_uninterrupted_run(methods, tmp_path):
    config = _config(*methods)
    data = load_dataset("synthetic", **DATA_KWARGS)
    whole = train(config, data=data, out_dir=tmp_path / "whole")
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(config, data=data, out_dir=cut, callbacks=[InterruptAt(step=5)])  # step 5 of 9: inside epoch 2
    saved, meta = rundir.load_epoch_checkpoint(cut / rundir.EPOCH_CHECKPOINT)
    assert saved["info"]["epochs_done"] == 1 and saved["info"]["step"] == 3 and meta["run_id"] == whole.run_id
    assert not (cut / rundir.CHECKPOINT).exists()  # the run had not finished

    resumed = train(config, data=data, out_dir=cut, resume=True)
    assert resumed.run_id == whole.run_id and resumed.status == whole.status == "completed"
    assert _timeless(resumed.records) == _timeless(whole.records) and len(whole.records) == 3
    assert _same_state(resumed.model.state_dict(), whole.model.state_dict())
    on_disk = [rundir.load_checkpoint(d / rundir.CHECKPOINT)[0] for d in (cut, tmp_path / "whole")]
    assert _same_state(*on_disk) and not (cut / rundir.EPOCH_CHECKPOINT).exists()
    metrics = [_timeless(rundir.read_jsonl(d / rundir.METRICS)) for d in (cut, tmp_path / "whole")]
    assert metrics[0] == metrics[1] == _timeless(whole.records)  # the epoch-2 line is not written twice


def test_a_run_killed_after_a_metrics_line_but_before_its_checkpoint_recomputes_that_epoch(tmp_path):
    """metrics.jsonl is appended before epoch.pt is replaced: a kill between the two leaves one line too many, which
    a resumed run drops and computes again."""
    config = _config(MethodSpec("in-ninr", {"sigma": 2.0}))
    whole = train(config, out_dir=tmp_path / "whole")
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=cut, callbacks=[InterruptAt(step=5)])
    rundir.append_jsonl(cut / rundir.METRICS, {"epoch": 2, "test_acc": -1.0})  # the line of an epoch never saved
    resumed = train(config, out_dir=cut, resume=True)
    assert _timeless(rundir.read_jsonl(cut / rundir.METRICS)) == _timeless(whole.records)
    assert _timeless(resumed.records) == _timeless(whole.records)


def test_a_run_killed_after_its_last_epoch_resumes_with_nothing_left_to_train(tmp_path):
    """Killed after the last epoch's checkpoint, before checkpoint.pt: the resumed run trains no step."""
    config = _config(epochs=2)
    whole = train(config, out_dir=tmp_path / "whole")
    assert not (tmp_path / "whole" / rundir.EPOCH_CHECKPOINT).exists()  # a finished run holds its outputs only

    class StopAtTheEnd(Callback):
        def on_train_end(self, state: FitState) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path / "cut", callbacks=[StopAtTheEnd()])
    assert not (tmp_path / "cut" / rundir.CHECKPOINT).exists()
    steps: list[int] = []

    class Steps(Callback):
        def on_step_end(self, state: FitState) -> None:
            steps.append(state.step)

    again = train(config, out_dir=tmp_path / "cut", resume=True, callbacks=[Steps()])
    assert steps == [] and _timeless(again.records) == _timeless(whole.records)
    assert _same_state(again.model.state_dict(), whole.model.state_dict())


def test_a_run_interrupted_before_its_first_checkpoint_starts_again(tmp_path):
    config = _config(epochs=2)
    whole = train(config, out_dir=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path / "cut", callbacks=[InterruptAt(step=1)])
    assert not (tmp_path / "cut" / rundir.EPOCH_CHECKPOINT).exists()
    resumed = train(config, out_dir=tmp_path / "cut", resume=True)
    assert _timeless(resumed.records) == _timeless(whole.records)


def test_resume_refuses_another_run_no_run_and_overwrite(tmp_path):
    train(_config(epochs=1), out_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"`out` must hold run \w+ to resume it, .* which holds run"):
        train(_config(epochs=1, seed=4), out_dir=tmp_path / "run", resume=True)
    with pytest.raises(ConfigError, match="which holds no run"):
        train(_config(epochs=1), out_dir=tmp_path / "empty", resume=True)
    with pytest.raises(ConfigError, match="`resume` needs `out_dir`"):
        train(_config(epochs=1), resume=True)
    with pytest.raises(ConfigError, match="`resume` needs `out_dir`"):
        train(_config(epochs=1), out_dir=tmp_path / "run", resume=True, overwrite=True)


def test_resume_refuses_a_checkpoint_written_by_other_versions(tmp_path):
    config = _config()
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path / "cut", callbacks=[InterruptAt(step=5)])
    path = tmp_path / "cut" / rundir.EPOCH_CHECKPOINT
    saved, meta = rundir.load_epoch_checkpoint(path)
    rundir.save_epoch_checkpoint(path, saved, {**meta, "versions": {**meta["versions"], "torch": "0.0.1"}})
    with pytest.raises(ConfigError, match=r"was written by .*'torch': '0\.0\.1'.*would not compute"):
        train(config, out_dir=tmp_path / "cut", resume=True)


@dataclass(frozen=True)
class CountingMethod(Method):
    """A method that keeps a step counter of its own: no checkpoint holds it."""

    name: ClassVar[str] = "test-counting"
    resumable: ClassVar[bool] = True
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "calls", [0])


@dataclass(frozen=True)
class UndeclaredMethod(Method):
    """A plugin method that says nothing about its state."""

    name: ClassVar[str] = "test-undeclared"


@pytest.fixture
def test_methods(monkeypatch):
    monkeypatch.setitem(METHODS._items, CountingMethod.name, CountingMethod)
    monkeypatch.setitem(METHODS._items, UndeclaredMethod.name, UndeclaredMethod)


def test_which_methods_can_be_resumed():
    assert all(resume_refusal([build(n)]) is None for n in METHODS.names())  # every shipped method
    assert "keeps state besides its hyperparameters (calls)" in str(resume_refusal([CountingMethod()]))
    assert "does not declare `resumable = True`" in str(resume_refusal([UndeclaredMethod()]))


@pytest.mark.parametrize("name", [CountingMethod.name, UndeclaredMethod.name])
def test_resume_is_refused_for_a_method_whose_state_is_not_restored(name, test_methods, tmp_path):
    config = _config(MethodSpec(name, {}))
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path / "cut", callbacks=[InterruptAt(step=5)])
    with pytest.raises(ConfigError, match=rf"method '{name}' cannot be resumed exactly: .*--overwrite"):
        train(config, out_dir=tmp_path / "cut", resume=True)


# ---------------------------------------------------------------- the command line

ARGS = [
    "train",
    "--dataset",
    "synthetic",
    "--model-arg",
    "width=16",
    "--nin",
    "input",
    "--sigma",
    "2",
    "--momentum",
    "0.5",
    "--batch-size",
    "256",
    "--epochs",
    "3",
    "--quiet",
]
"""Synthetic defaults: 2048 training examples, so 8 steps per epoch."""


def _killed_after_first_checkpoint(monkeypatch) -> None:
    """Make the process stop as a kill would, right after epoch 1's checkpoint is on disk."""
    save = rundir.save_epoch_checkpoint

    def save_then_stop(path: Path, snapshot: dict, meta: dict) -> None:
        save(path, snapshot, meta)
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "save_epoch_checkpoint", save_then_stop)


def test_ninr_train_resume_continues_an_interrupted_run(tmp_path, monkeypatch, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as patch:
        _killed_after_first_checkpoint(patch)
        with pytest.raises(SystemExit) as stopped:
            main([*ARGS, "--out", str(tmp_path / "cut")])
    assert stopped.value.code == 130 and len(rundir.read_jsonl(tmp_path / "cut" / rundir.METRICS)) == 1
    with pytest.raises(SystemExit) as refused:  # without --resume the directory is someone's run
        main([*ARGS, "--out", str(tmp_path / "cut")])
    assert refused.value.code == 2 and "--resume keeps it if it is this run" in capsys.readouterr().err
    assert main([*ARGS, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    stores = [ResultStore(tmp_path / d) for d in ("whole", "cut")]
    records = [s.records() for s in stores]
    assert records[0] == records[1] and len(records[0]) == 3 and all(math.isfinite(r["test_acc"]) for r in records[0])
    weights = [rundir.load_checkpoint(tmp_path / d / rundir.CHECKPOINT)[0] for d in ("whole", "cut")]
    assert _same_state(*weights)
    assert not list((tmp_path / "cut" / ".claims").glob("*.claim"))  # released however each session ended
    # a finished run: --resume keeps it and trains nothing
    assert main([*ARGS, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    assert len(stores[1].sessions()) == 3 and stores[1].records() == records[0]


def test_ninr_train_resume_of_another_config_is_refused(tmp_path, capsys):
    assert main([*ARGS, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    with pytest.raises(SystemExit) as refused:
        main([*ARGS, "--epochs", "2", "--out", str(tmp_path / "run"), "--resume"])
    assert refused.value.code == 2 and "already holds a run" in capsys.readouterr().err
