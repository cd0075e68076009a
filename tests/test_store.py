"""The results store: atomic per-run files, concurrent writers, orphaned temp files, CSV export."""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import time

import pytest

from ninr.errors import ConfigError
from ninr.studies.store import ResultStore, RunResult, find_stores, records_to_csv


def _result(i: int, n_records: int = 3) -> RunResult:
    run_id = f"{i:012x}"
    records = [
        {"run_id": run_id, "epoch": e, "test_acc": 0.5 + 0.01 * e, "final": e == n_records}
        for e in range(1, n_records + 1)
    ]
    return RunResult(run_id, {"label": f"row {i}", "seed": i}, records, wall_time_s=1.5, meta={"host": "h"})


def test_write_read_round_trip(tmp_path):
    store = ResultStore(tmp_path / "s")
    assert store.run_ids() == set() and store.records() == []
    result = _result(7)
    path = store.write(result)
    assert path == tmp_path / "s" / "runs" / "000000000007.json"
    assert store.read(result.run_id) == result and store.has(result.run_id)
    assert store.run_ids() == {result.run_id}
    assert store.write(result) == path and len(list(store.runs_dir.iterdir())) == 1  # idempotent


def test_results_follow_the_requested_order_and_skip_missing(tmp_path):
    store = ResultStore(tmp_path)
    for i in (3, 1, 2):
        store.write(_result(i))
    ids = [_result(i).run_id for i in (2, 9, 1)]
    assert [r.run_id for r in store.results(ids)] == [ids[0], ids[2]]
    assert [r.run_id for r in store.results()] == sorted(_result(i).run_id for i in (1, 2, 3))


def test_nan_survives_the_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    result = RunResult("abcdef123456", {}, [{"test_acc": math.nan, "final": True}])
    store.write(result)
    assert math.isnan(store.read("abcdef123456").records[0]["test_acc"])


@pytest.mark.parametrize("bad", ["../etc", "ABCDEF123456", "abc", "", "x" * 12])
def test_run_ids_are_checked_before_touching_the_disk(tmp_path, bad):
    with pytest.raises(ConfigError, match="run_id"):
        ResultStore(tmp_path).path(bad)


def test_temp_files_are_ignored_and_stale_ones_cleaned(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_result(1))
    stale = store.runs_dir / ".000000000002.json.abc.tmp"
    fresh = store.runs_dir / ".000000000003.json.def.tmp"
    stale.write_text('{"run_id": "000000000002", "records": [')  # a writer killed mid-write
    fresh.write_text("{")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert store.run_ids() == {_result(1).run_id}
    assert store.clean_tmp() == [stale]
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a live writer


def test_unreadable_run_file_is_skipped_with_a_warning(tmp_path):
    store = ResultStore(tmp_path)
    store.runs_dir.mkdir(parents=True)
    (store.runs_dir / "0123456789ab.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable run file"):
        assert store.run_ids() == set()
    assert not store.has("0123456789ab")


def _writer(root: str, start: int, count: int) -> None:
    store = ResultStore(root)
    for i in range(start, start + count):
        store.write(_result(i, n_records=40))


def test_two_processes_writing_one_store_do_not_corrupt_it(tmp_path):
    """Overlapping run ids from two processes: every file parses and holds one whole run, none is duplicated."""
    ctx = multiprocessing.get_context("fork")  # no torch work in the children: fork is safe and fast
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), start, 30)) for start in (0, 15)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = ResultStore(tmp_path)
    files = sorted(store.runs_dir.glob("*.json"))
    assert len(files) == 45 and not list(store.runs_dir.glob(".*.tmp"))
    for path in files:
        data = json.loads(path.read_text())
        assert data == json.loads(json.dumps(_result(int(path.stem, 16), n_records=40).__dict__))


def test_study_and_sessions(tmp_path):
    store = ResultStore(tmp_path / "table")
    assert store.read_study() == {} and store.sessions() == []
    store.write_study({"part": "table", "run_ids": ["000000000001"]})
    store.log_session({"new": 1})
    store.log_session({"new": 0})
    assert store.read_study()["part"] == "table"
    assert [s["new"] for s in store.sessions()] == [1, 0]
    assert [s.root for s in find_stores(tmp_path)] == [tmp_path / "table"]
    assert [s.root for s in find_stores(tmp_path / "table")] == [tmp_path / "table"]
    with pytest.raises(ConfigError, match="does not exist"):
        find_stores(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"study\.json"):
        find_stores(tmp_path / "empty")


def test_csv_export_is_the_union_of_columns(tmp_path):
    store = ResultStore(tmp_path)
    store.write(RunResult("000000000001", {}, [{"a": 1, "b": None}]))
    store.write(RunResult("000000000002", {}, [{"a": 2, "c": "x,y"}]))
    path = store.export_csv(tmp_path / "out.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows == [{"a": "1", "b": "", "c": ""}, {"a": "2", "b": "", "c": "x,y"}]
    assert records_to_csv([]) == "\n"


def test_csv_cells_holding_a_dict_or_list_are_json():
    text = records_to_csv([{"phase_nodes": {"out": "catapult", "fc1": "decay"}, "stds": [0.1, 0.2]}])
    row = next(csv.DictReader(io.StringIO(text)))
    assert json.loads(row["phase_nodes"]) == {"fc1": "decay", "out": "catapult"}
    assert json.loads(row["stds"]) == [0.1, 0.2]
