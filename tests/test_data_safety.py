"""Nothing already written is lost, and no silent wrong answers.

* ``--overwrite`` (and ``train(..., overwrite=True)``) trains beside the old run and swaps the new one in whole
  when it has finished: a failure or an interruption leaves the old run, its store and evaluations, untouched.
* A run on data given in Python records the data's identity (in ``config.json`` and its run id); ``ninr eval``
  refuses data it cannot reload as trained; a registered data set keeps the config's run id.
* An explicit data directory is used alone.
* ``ninr eval`` refuses a diverged model (non-finite weights or outputs).
* ``ninr report`` names the runs whose files it could not read.
* Files get the mode the umask gives; JSON is strict (non-finite numbers are ``null``) and reads back as written.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib
import json
import math
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from ninr import fileio
from ninr.cli import main
from ninr.data import Dataset, load_dataset, register_dataset, write_idx
from ninr.errors import DataError
from ninr.studies import ResultStore, final_records
from ninr.train import TrainConfig, resolve, run_id, rundir, train
from ninr.train.callbacks import Callback

pytestmark = pytest.mark.usefixtures("one_thread")

fm: ModuleType = importlib.import_module("ninr.data.fashion_mnist")

TRAIN = ["train", "--dataset", "synthetic", "--max-steps", "2", "--epochs", "1", "--quiet"]
"""A two-step training run on the synthetic data set (about a second)."""

SMALL = {"n_train": 256, "n_test": 64}
"""A small synthetic data set for the Python-API runs."""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def hidden_siblings(path: Path) -> list[str]:
    """Staging or aside directories left beside ``path``."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def strict_json(text: str) -> Any:
    """Parse as a strict RFC 8259 parser does: the NaN / Infinity tokens are refused."""

    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory written once by ``ninr train --out`` (tests copy it before changing it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_dir(trained: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained run directory."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


# ----------------------------------------------------------------------------- overwriting is a swap


def _garbage_fashion_mnist(directory: Path) -> Path:
    """The four Fashion-MNIST file names holding truncated gzip data."""
    directory.mkdir(parents=True)
    for name in fm.FILES:
        (directory / name).write_bytes(gzip.compress(b"\0" * 64)[:20])
    return directory


def _interrupt_after_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C right after the new run's first epoch has been written to its metrics.jsonl."""
    write = rundir.append_jsonl

    def write_then_interrupt(path: Path, record: Any) -> None:
        write(path, record)
        if path.name == rundir.METRICS:
            raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "append_jsonl", write_then_interrupt)


@pytest.mark.parametrize("failure", ["truncated data file", "interrupted"])
def test_an_overwrite_that_does_not_finish_keeps_the_old_run(
    failure: str, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(capsys, "eval", str(run_dir), "--suite", "clean", "--quiet")[0] == 0
    before = snapshot(run_dir)
    if failure == "interrupted":
        _interrupt_after_first_epoch(monkeypatch)
        code, _, stderr = run_cli(capsys, *TRAIN, "--seed", "5", "--out", str(run_dir), "--overwrite")
        assert code == 130 and "still holds its earlier run" in stderr
    else:
        data_dir = _garbage_fashion_mnist(tmp_path / "fm")
        argv = ["train", "--dataset", "fashion-mnist", "--data-dir", str(data_dir), "--max-steps", "2", "--quiet"]
        code, _, stderr = run_cli(capsys, *argv, "--out", str(run_dir), "--overwrite")
        assert code == 1 and "truncated or corrupted" in stderr
    assert snapshot(run_dir) == before  # the old run, its store and its evaluation, byte for byte
    assert hidden_siblings(run_dir) == []


def test_python_overwrite_that_is_interrupted_keeps_the_old_run(tmp_path: Path) -> None:
    class Interrupt(Callback):
        def on_epoch_end(self, state: Any, record: dict[str, Any]) -> None:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    data = load_dataset("synthetic", **SMALL)
    config = TrainConfig(dataset="synthetic", dataset_kwargs=SMALL, epochs=1, max_steps=2)
    train(config, data=data, out_dir=out)
    before = snapshot(out)
    with pytest.raises(KeyboardInterrupt):
        train(config.replace(seed=1), data=data, out_dir=out, overwrite=True, callbacks=[Interrupt()])
    assert snapshot(out) == before and hidden_siblings(out) == []
    result = train(config.replace(seed=1), data=data, out_dir=out, overwrite=True)
    assert result.out_dir == out and json.loads((out / rundir.CONFIG).read_text())["config"]["seed"] == 1
    assert hidden_siblings(out) == []


def test_an_overwrite_replaces_the_old_run_with_its_store_and_evaluations(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (old_id,) = ResultStore(run_dir).run_ids()
    assert run_cli(capsys, "eval", str(run_dir), "--suite", "clean", "--quiet")[0] == 0
    assert run_cli(capsys, "report", str(run_dir))[0] == 0
    code, _, stderr = run_cli(capsys, *TRAIN, "--seed", "4", "--out", str(run_dir), "--overwrite")
    assert code == 0, stderr
    names = {p.name for p in run_dir.iterdir()}
    assert not names & {"eval", "robustness.jsonl", "report"}  # they were the old run's
    (new_id,) = ResultStore(run_dir).run_ids()
    assert new_id != old_id and ResultStore(run_dir).read_study()["run_ids"] == [new_id]
    assert [s["new"] for s in ResultStore(run_dir).sessions()] == [1]
    assert hidden_siblings(run_dir) == []


def test_an_overwrite_refuses_a_directory_that_also_holds_other_files(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir / "notes.txt").write_text("mine")
    before = snapshot(run_dir)
    code, _, stderr = run_cli(capsys, *TRAIN, "--seed", "4", "--out", str(run_dir), "--overwrite")
    assert code == 2 and "notes.txt" in stderr and "`out` must hold nothing but a run" in stderr
    assert snapshot(run_dir) == before


def test_replace_dir_swaps_whole_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, new = tmp_path / "run", tmp_path / "new"
    for directory, text in ((target, "old"), (new, "new")):
        directory.mkdir()
        (directory / "file").write_text(text)
    fileio.replace_dir(new, target)
    assert (target / "file").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    # without an atomic exchange: a failure between the two renames puts the old directory back
    monkeypatch.setattr(fileio, "exchange", lambda a, b: False)
    new.mkdir()
    (new / "file").write_text("newer")
    rename, calls = os.rename, []

    def second_rename_fails(src: Any, dst: Any) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk gone")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", second_rename_fails)
    with pytest.raises(OSError, match="disk gone"):
        fileio.replace_dir(new, target)
    assert (target / "file").read_text() == "new" and (new / "file").read_text() == "newer"
    monkeypatch.setattr(os, "rename", rename)
    fileio.replace_dir(new, target)
    assert (target / "file").read_text() == "newer" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_exchange_is_atomic_where_the_system_has_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    if not fileio.exchange(a, b):
        pytest.skip("no renameat2(RENAME_EXCHANGE) on this system: replace_dir uses two renames")
    assert (b / "x").read_text() == "a" and list(a.iterdir()) == []


# ----------------------------------------------------------------------------- data identity


def _split(name: str, lo: int, hi: int) -> Dataset:
    """Training examples ``lo:hi`` of the small synthetic set, as a data set given in Python."""
    base = load_dataset("synthetic", **SMALL)
    return Dataset(name, base.x_train[lo:hi], base.y_train[lo:hi], base.x_test, base.y_test, base.classes)


def _meta(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / rundir.CONFIG).read_text()))


def test_a_run_on_data_given_in_python_records_the_data_and_gets_its_own_id(tmp_path: Path) -> None:
    config = TrainConfig(model="mlp", epochs=1, max_steps=2)  # names fashion-mnist, which is not what it trains on
    first, second = _split("halves", 0, 128), _split("halves", 128, 256)
    a = train(config, data=first, out_dir=tmp_path / "a")
    b = train(config, data=second, out_dir=tmp_path / "b")
    assert a.run_id != b.run_id and run_id(resolve(config)[0]) not in (a.run_id, b.run_id)
    meta = _meta(tmp_path / "a")
    assert meta["run_id"] == a.run_id
    assert meta["data"] == {
        "registered": False,
        "name": "halves",
        "sha256": first.fingerprint,
        "num_classes": 10,
        "shapes": {"train": [128, 1, 28, 28], "test": [64, 1, 28, 28]},
    }
    assert first.fingerprint != second.fingerprint
    assert _split("halves", 0, 128).fingerprint == first.fingerprint  # a content hash, not an object's


def test_the_registered_data_set_keeps_the_config_s_run_id(tmp_path: Path) -> None:
    config = TrainConfig(dataset="synthetic", dataset_kwargs=SMALL, epochs=1, max_steps=2)
    expected = run_id(resolve(config)[0])
    loaded = load_dataset("synthetic", **SMALL)
    assert train(config, out_dir=tmp_path / "r").run_id == expected
    assert train(config, data=loaded).run_id == expected
    assert train(config, data=loaded.to("cpu")).run_id == expected
    meta = _meta(tmp_path / "r")
    assert meta["run_id"] == expected and meta["data"]["registered"] is True
    assert meta["data"]["sha256"] == loaded.fingerprint
    changed = dataclasses.replace(loaded, x_train=loaded.x_train.flip(0))
    assert train(config, data=changed).run_id != expected
    other = config.replace(dataset_kwargs={**SMALL, "seed": 1})  # names other data than it is given
    assert train(other, data=loaded).run_id != run_id(resolve(other)[0])


def test_eval_refuses_data_it_cannot_reload_until_it_is_registered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"safety-{tmp_path.name}"
    out = tmp_path / "run"
    train(TrainConfig(model="mlp", epochs=1, max_steps=2), data=_split(name, 0, 128), out_dir=out)
    before = snapshot(out)
    code, _, stderr = run_cli(capsys, "eval", str(out), "--suite", "clean", "--quiet")
    assert code == 2 and "trained on data given in Python" in stderr and "register_dataset" in stderr
    assert snapshot(out) == before  # refused before anything was written
    register_dataset(name, lambda: _split(name, 0, 128))
    code, _, stderr = run_cli(capsys, "eval", str(out), "--suite", "clean", "--quiet")
    assert code == 0, stderr
    records = ResultStore(out / "eval").records()
    assert records and {r["dataset"] for r in records} == {name}


def test_eval_refuses_a_registered_data_set_that_now_loads_other_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"safety-{tmp_path.name}"
    served = {"range": (0, 128)}
    register_dataset(name, lambda: _split(name, *served["range"]))
    out = tmp_path / "run"
    result = train(TrainConfig(dataset=name, epochs=1, max_steps=2), out_dir=out)
    assert result.run_id == run_id(resolve(TrainConfig(dataset=name, epochs=1, max_steps=2))[0])
    served["range"] = (128, 256)
    code, _, stderr = run_cli(capsys, "eval", str(out), "--suite", "clean", "--quiet")
    assert code == 2 and "must be evaluated on the data it was trained on" in stderr and "now loads" in stderr
    assert not (out / "eval").exists()


# ----------------------------------------------------------------------------- an explicit data directory


@pytest.fixture
def fake_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A complete fake Fashion-MNIST in the (redirected) Debian directory; no network, an empty cache.
    Yields the fake files' checksums."""
    arrays = {
        fm.TRAIN_IMAGES: torch.zeros((30, 6, 5), dtype=torch.uint8),
        fm.TRAIN_LABELS: (torch.arange(30) % 10).to(torch.uint8),
        fm.TEST_IMAGES: torch.full((10, 6, 5), 7, dtype=torch.uint8),
        fm.TEST_LABELS: (torch.arange(10) % 10).to(torch.uint8),
    }
    debian = tmp_path / "debian"
    debian.mkdir()
    for name, t in arrays.items():
        (debian / name).write_bytes(gzip.compress(write_idx(t)))

    def no_network(url: str) -> bytes:
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(fm, "DEBIAN_DIR", debian)
    monkeypatch.setattr(fm, "_fetch_url", no_network)
    monkeypatch.setenv("NINR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NINR_DATA_DIR", raising=False)
    fm._read_dir.cache_clear()
    yield {name: hashlib.sha256(write_idx(t)).hexdigest() for name, t in arrays.items()}
    fm._read_dir.cache_clear()


def _incomplete_copy(fake_sources: dict[str, str], tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    shutil.copytree(fm.DEBIAN_DIR, mine)
    (mine / fm.TEST_LABELS).unlink()
    return mine


def test_an_explicit_data_dir_is_used_alone(
    fake_sources: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = _incomplete_copy(fake_sources, tmp_path)
    assert fm.locate_fashion_mnist(checksums=fake_sources) == fm.DEBIAN_DIR  # nothing named: the Debian copy
    with pytest.raises(DataError) as info:
        fm.locate_fashion_mnist(mine, checksums=fake_sources)
    assert f"data_dir argument {mine} cannot be used: missing {fm.TEST_LABELS}" in str(info.value)
    monkeypatch.setenv("NINR_DATA_DIR", str(mine))
    with pytest.raises(DataError, match=f"NINR_DATA_DIR {mine} cannot be used: missing {fm.TEST_LABELS}"):
        fm.fashion_mnist(checksums=fake_sources)


def test_data_fetch_with_an_incomplete_data_dir_fails_naming_the_missing_file(
    fake_sources: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = _incomplete_copy(fake_sources, tmp_path)
    code, stdout, stderr = run_cli(capsys, "data", "fetch", "--data-dir", str(mine), "--no-download")
    assert code == 1 and "verified" not in stdout
    assert str(mine) in stderr and f"missing {fm.TEST_LABELS}" in stderr


# ----------------------------------------------------------------------------- a diverged model is not evaluated


def test_eval_refuses_a_model_with_non_finite_weights(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, meta = rundir.load_checkpoint(run_dir / rundir.CHECKPOINT)
    state["fc1.weight"][0, 0] = math.nan
    rundir.save_checkpoint(run_dir / rundir.CHECKPOINT, state, meta)
    code, stdout, stderr = run_cli(capsys, "eval", str(run_dir), "--suite", "clean", "--quiet")
    assert code == 2 and "weights are not finite" in stderr and "fc1.weight" in stderr
    assert "randomized" not in stderr and not (run_dir / "eval").exists() and stdout == ""


def test_eval_refuses_a_diverged_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert run_cli(capsys, *TRAIN, "--lr", "1e30", "--out", str(out))[0] == 0  # diverges at its first step
    assert json.loads((out / rundir.SUMMARY).read_text())["status"] == "diverged"
    code, _, stderr = run_cli(capsys, "eval", str(out), "--suite", "clean", "--quiet")
    assert code == 2 and "not finite" in stderr and "ended diverged" in stderr
    assert not (out / "eval").exists()


# ----------------------------------------------------------------------------- unreadable runs in a report


def test_report_names_the_runs_it_could_not_read(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_id_,) = ResultStore(run_dir).run_ids()
    path = ResultStore(run_dir).path(run_id_)
    path.write_text(path.read_text()[:100])  # torn
    with pytest.warns(UserWarning) as caught:
        code, _, stderr = run_cli(capsys, "report", str(run_dir))
    assert code == 0, stderr
    messages = [str(w.message) for w in caught]
    assert messages and not any("will be recomputed" in m for m in messages)
    assert any(str(path) in m and "counts as not finished" in m for m in messages)
    markdown = (run_dir / "report" / "report.md").read_text()
    assert f"1 run(s) could not be read and are left out of this section: {path}" in markdown
    assert ResultStore(run_dir).unreadable() == {run_id_: ResultStore(run_dir).unreadable()[run_id_]}


# ----------------------------------------------------------------------------- file modes


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_027")
def test_every_file_written_gets_the_mode_the_umask_gives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert run_cli(capsys, *TRAIN, "--out", str(out))[0] == 0
    assert run_cli(capsys, "eval", str(out), "--suite", "clean", "--quiet")[0] == 0
    assert run_cli(capsys, "report", str(out))[0] == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.json", "checkpoint.pt", "summary.json", "study.json", "report.html", "report.md"} <= names
    modes = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o640)}, modes


@pytest.mark.usefixtures("umask_027")
def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    fileio.atomic_write_bytes(path, b"1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o604)
    fileio.atomic_write_bytes(path, b"2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o604 and path.read_bytes() == b"2"


# ----------------------------------------------------------------------------- strict JSON


def test_json_text_is_strict_and_parse_json_gives_the_numbers_back() -> None:
    data = {"a/b": [1.0, math.nan, {"c~d": math.inf}], "e": -math.inf, "f": None, "g": "NaN"}
    text = fileio.json_text(data)
    parsed = strict_json(text)
    assert parsed["a/b"][1] is None and parsed["e"] is None and parsed["g"] == "NaN"
    back = fileio.parse_json(text)
    assert math.isnan(back["a/b"][1]) and back["a/b"][2] == {"c~d": math.inf} and back["e"] == -math.inf
    assert back["f"] is None and back["g"] == "NaN" and fileio.NONFINITE_KEY not in back
    assert math.isnan(fileio.parse_json('{"x": NaN}')["x"])  # files of Python's default encoder still read
    with pytest.raises(ValueError, match="not in the document"):
        fileio.parse_json('{"x": null, "_nonfinite": {"/y": "NaN"}}')


def test_a_diverged_run_writes_strict_json_that_reads_back_as_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_cli(capsys, *TRAIN, "--lr", "1e30", "--out", str(out))[0] == 0
    json_files = [p for p in out.rglob("*") if p.suffix in (".json", ".jsonl")]
    assert len(json_files) >= 6
    for path in json_files:
        lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        for line in lines:
            strict_json(line)
    summary = strict_json((out / rundir.SUMMARY).read_text())
    assert summary["final"]["test_acc"] is None and summary["_nonfinite"]["/final/test_acc"] == "NaN"
    assert math.isnan(rundir.read_json(out / rundir.SUMMARY)["final"]["test_acc"])
    assert math.isnan(rundir.read_jsonl(out / rundir.METRICS)[-1]["test_acc"])
    (final,) = final_records(ResultStore(out).records())
    assert final["run_status"] == "diverged" and math.isnan(final["test_acc"])
    code, stdout, _ = run_cli(capsys, "report", str(out))
    assert code == 0 and "| diverged |" in stdout
