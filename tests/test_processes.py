"""Processes: pool workers die with their sweep, two sessions on one store train each run once, a sweep killed at
random points and resumed stores the records of an uninterrupted one.

Processes are found through /proc (Linux): every process a test starts carries ``NINR_TEST_TAG=<random>`` in its
environment, which its children inherit (spawned pool workers and the multiprocessing resource tracker
included), so a process is found even after it was re-parented to init when its parent died. A zombie (dead,
not yet reaped) reads an empty environment and does not count. Elsewhere these tests are skipped: there is no
/proc to find the processes with (psutil is not a dependency of ninr).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ninr.studies.executors import Executor, run_planned
from ninr.studies.part import PARTS
from ninr.studies.preset import load_preset
from ninr.studies.session import run_specs, run_study
from ninr.studies.store import STALE_CLAIM_S, Claim, Claims, ResultStore, claimer_alive

HAS_PROC = Path("/proc/self/environ").is_file()
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="finding a process tree needs /proc (Linux)")

EXIT_BOUND_S = 10.0
"""How long the processes of a killed sweep may outlive it. A pool worker gets the parent-death signal at once
(Linux) and else sees its parent gone within PARENT_POLL_S = 0.5 s; it then exits with os._exit, no teardown. The
resource tracker exits when the last process holding its pipe (the workers) has. So a second is plenty on an idle
machine; the bound leaves 10x for a 2-core machine shared by several test runs (measured: see the test's print)."""
SPAWN_EXIT_BOUND_S = 60.0
"""The same for a sweep killed while its workers are still starting: a spawned worker runs its initializer (which
sees the parent gone) only after importing torch and ninr, which takes seconds, and several times longer on a
loaded 2-core machine."""

CLI = "import sys; from ninr.cli import main; sys.exit(main(sys.argv[1:]))"

FC_ONLY = """
name = "claims"
[table]
seeds = [0, 1, 2, 3]
[table.train]
dataset = "synthetic"
dataset_kwargs = { n_train = 96, n_test = 64, seed = 0 }
batch_size = 32
epochs = 1
eval_batch_size = 64
[table.arch.FC]
model = "mlp"
model_kwargs = { width = 16 }
[[table.variant]]
label = "None"
[[table.variant]]
label = "in-NINR"
methods = [{ name = "in-ninr", params = { sigma = 1.0 } }]
"""
"""8 tiny dense runs."""

FC_AND_CNN = """
name = "crash"
[table]
seeds = [0, 1, 2, 3]
[table.train]
dataset = "synthetic"
dataset_kwargs = { n_train = 512, n_test = 64, seed = 0 }
batch_size = 32
epochs = 3
eval_batch_size = 64
[table.arch.FC]
model = "mlp"
model_kwargs = { width = 16 }
[table.arch.CNN]
model = "cnn"
model_kwargs = { channels = [2, 4], hidden = 8 }
[[table.variant]]
label = "None"
[[table.variant]]
label = "in-NINR"
methods = [{ name = "in-ninr", params = { sigma = 1.0 } }]
"""
"""16 runs of about 0.4 s each; on 2 workers the 8 FC runs train as 2 stacks of 4 (their 4 run files are written
one after another when the stack returns), the 8 CNN runs one by one: 10 tasks."""


def _proc_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()[0]


def tagged(tag: str) -> dict[int, str]:
    """The live processes carrying ``NINR_TEST_TAG=tag``: pid -> command line."""
    marker = f"NINR_TEST_TAG={tag}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone, or not ours
        if marker in environ.split(b"\0") and _proc_state(int(entry.name)) not in (None, "Z", "X"):
            found[int(entry.name)] = cmdline.strip()
    return found


def wait_gone(tag: str, bound_s: float) -> tuple[float, dict[int, str]]:
    """Seconds until no process carries ``tag`` (or ``bound_s``), and those still there then."""
    start = time.monotonic()
    while True:
        left = tagged(tag)
        elapsed = time.monotonic() - start
        if not left or elapsed > bound_s:
            return elapsed, left
        time.sleep(0.05)


def start(args: list[str], tag: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "NINR_TEST_TAG": tag, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as fh:
        return subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT)


def sweep(preset: Path, out: Path, tag: str, log: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-c", CLI, "sweep", str(preset), "--out", str(out), "--workers", "2", "--quiet", *extra]
    return start(args, tag, log)


def run_files(store: Path) -> int:
    runs = store / "runs"
    return len(list(runs.glob("*.json"))) if runs.is_dir() else 0


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def kill_tree_and_check(proc: subprocess.Popen, tag: str, bound_s: float) -> float:
    """SIGKILL ``proc`` (a sweep), reap it, and assert that every process of its tree exits within ``bound_s``."""
    before = tagged(tag)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    elapsed, left = wait_gone(tag, bound_s)
    for pid in left:  # leave nothing behind, whatever the verdict
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running {elapsed:.1f}s after the sweep was killed: {left} (tree before: {before})"
    return elapsed


def records_by_id(store: ResultStore) -> dict[str, list[dict]]:
    ids = store.read_study()["run_ids"]
    return {r.run_id: r.records for r in store.results(ids)}


# ---------------------------------------------------------------- 1. pool workers exit with their parent


@needs_proc
@pytest.mark.slow  # a sweep and its two spawned workers import torch: 10 to 25 s on a shared 2-core machine
def test_pool_workers_exit_when_the_sweep_is_killed(tmp_path):
    """``kill -9`` of ``ninr sweep --workers 2`` mid-run: both workers and the resource tracker exit too."""
    preset = tmp_path / "claims.toml"
    preset.write_text(FC_ONLY)
    tag = secrets.token_hex(8)
    proc = sweep(preset, tmp_path / "out", tag, tmp_path / "log.txt", "--no-stack")
    try:
        wait_for(lambda: run_files(tmp_path / "out" / "table") >= 1 or proc.poll() is not None, 300, "a first run")
        tree = tagged(tag)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        workers = [pid for pid, cmd in tree.items() if "multiprocessing" in cmd and pid != proc.pid]
        assert len(workers) >= 2, tree  # two workers (and the resource tracker) besides the sweep
        elapsed = kill_tree_and_check(proc, tag, EXIT_BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"{len(tree)} processes of the killed sweep gone {elapsed:.2f}s after the kill (bound {EXIT_BOUND_S}s)")


@needs_proc
def test_exit_with_parent_polling_alone_ends_an_orphan(tmp_path):
    """The portable fallback (no parent-death signal): the watchdog thread sees the parent gone."""
    tag = secrets.token_hex(8)
    child = (
        "import os, sys, time; from ninr.studies.executors import exit_with_parent; "
        "exit_with_parent(int(sys.argv[1]), death_signal=False); print('ready', flush=True); time.sleep(300)"
    )
    parent = (
        "import subprocess, sys; "
        f"c = subprocess.Popen([sys.executable, '-c', {child!r}, str(__import__('os').getpid())], "
        "stdout=subprocess.PIPE); print(c.pid, c.stdout.readline().decode().strip(), flush=True); "
        "__import__('time').sleep(300)"
    )
    env = {**os.environ, "NINR_TEST_TAG": tag}
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()
        assert line[1:] == ["ready"], line
        assert int(line[0]) in tagged(tag)
        kill_tree_and_check(proc, tag, EXIT_BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()


# ---------------------------------------------------------------- 2. claims


def _fake_claim(store: ResultStore, run_id: str, **fields: Any) -> Path:
    """A claim file as another process would have written it (default: a live process on this machine, the init
    process, which outlives every test)."""
    mine = Claim.mine(run_id)
    content = {**mine.__dict__, "pid": 1, "started": None, "token": secrets.token_hex(8), **fields}
    path = store.claim_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_claim_is_exclusive_and_released_by_its_holder_only(tmp_path):
    store = ResultStore(tmp_path)
    first = store.claim("0123456789ab")
    assert first is not None and first.pid == os.getpid() and claimer_alive(first) is True
    assert store.claim("0123456789ab") is None  # held by a live claim, even of this very process
    assert store.claim_holder("0123456789ab") == first and not store.claimable("0123456789ab")
    other = Claim(**{**first.__dict__, "token": "0" * 16})
    assert not store.release_claim(other) and store.claim_path("0123456789ab").exists()
    assert store.release_claim(first) and not store.claim_path("0123456789ab").exists()
    assert store.claimable("0123456789ab") and store.claim("0123456789ab") is not None


@pytest.mark.parametrize(
    ("fields", "age_s", "taken"),
    [
        ({}, 0.0, False),  # a live process on this machine
        ({"pid": None}, 0.0, True),  # a process that has exited (pid filled in by the test)
        ({"started": 1}, 0.0, True),  # a live pid, but a process started at another time: the pid was reused
        ({"host": "elsewhere", "boot_id": "x"}, 0.0, False),  # another host: not checkable, fresh
        ({"host": "elsewhere", "boot_id": "x"}, STALE_CLAIM_S + 60, True),  # another host, not refreshed
        ({}, STALE_CLAIM_S + 60, True),  # a live process that stopped refreshing its claim (stopped, hung)
    ],
    ids=["live", "dead pid", "reused pid", "other host fresh", "other host stale", "live but stale"],
)
def test_a_stale_claim_is_taken_over_and_a_live_one_is_not(tmp_path, fields, age_s, taken):
    store = ResultStore(tmp_path)
    if fields.get("pid", 1) is None:
        fields = {**fields, "pid": _dead_pid()}
    path = _fake_claim(store, "0123456789ab", **fields)
    old = time.time() - age_s
    os.utime(path, (old, old))
    claim = store.claim("0123456789ab")
    assert (claim is not None) == taken
    if taken:
        assert claim is not None and store.claim_holder("0123456789ab") == claim


def test_two_takers_of_one_stale_claim_one_wins(tmp_path):
    """Both see the same dead claim; the takeover marker named after its token lets one of them replace it."""
    store = ResultStore(tmp_path)
    token = secrets.token_hex(8)
    _fake_claim(store, "0123456789ab", pid=_dead_pid(), token=token)
    (store.claims_dir / f"0123456789ab.takeover-{token}").touch()  # the other taker got there first
    assert store.claim("0123456789ab") is None
    assert store.claim_holder("0123456789ab").token == token  # untouched: the winner replaces it
    old = time.time() - 2 * 86400
    os.utime(store.claims_dir / f"0123456789ab.takeover-{token}", (old, old))
    assert [p.name for p in store.clean_tmp()] == [f"0123456789ab.takeover-{token}"]


def test_an_empty_claim_file_is_a_claim_being_written(tmp_path):
    store = ResultStore(tmp_path)
    store.claims_dir.mkdir(parents=True)
    store.claim_path("0123456789ab").touch()
    assert store.claim("0123456789ab") is None and store.claim_holder("0123456789ab") is None
    old = time.time() - STALE_CLAIM_S - 60
    os.utime(store.claim_path("0123456789ab"), (old, old))
    assert store.claim("0123456789ab") is not None  # never written: its creator died


def test_a_session_keeps_its_claims_fresh_and_releases_them_when_it_ends(tmp_path):
    store = ResultStore(tmp_path)
    with Claims(store, heartbeat_s=0.05) as claims:
        assert claims.acquire("0123456789ab") and claims.holds("0123456789ab")
        path = store.claim_path("0123456789ab")
        old = time.time() - 3600
        os.utime(path, (old, old))
        wait_for(lambda: time.time() - path.stat().st_mtime < 60, 10, "the heartbeat")
    assert not path.exists() and not store.claims_dir.exists()  # released, and the empty directory removed


def test_a_failing_session_releases_its_claims(fc_specs, tmp_path):
    store = ResultStore(tmp_path / "store")

    def fail(task: Any) -> Any:
        assert store.claim_path(task.specs[0].run_id).exists()  # claimed while it runs
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_specs(fc_specs, store, Executor(), stack=False, run_fn=fail)
    assert not store.claims_dir.exists() and store.sessions()[-1]["status"].startswith("failed")


class Counting:
    """A task function that counts the runs it trains."""

    def __init__(self) -> None:
        self.trained: list[str] = []

    def __call__(self, task: Any) -> Any:
        self.trained += [s.run_id for s in task.specs]
        return run_planned(task)


@pytest.fixture
def fc_specs(tmp_path):
    preset = tmp_path / "claims.toml"
    preset.write_text(FC_ONLY)
    loaded = load_preset(preset)
    return PARTS.get("table").expand(loaded.section("table"), loaded.name)[:3]


def test_a_session_waits_for_a_run_another_process_holds(fc_specs, tmp_path, monkeypatch):
    """The held run is finished by its holder meanwhile: the session counts it and does not train it."""
    monkeypatch.setattr("ninr.studies.session.CLAIM_POLL_S", 0.05)
    reference = ResultStore(tmp_path / "reference")
    run_specs(fc_specs, reference, Executor(), stack=False)
    store = ResultStore(tmp_path / "store")
    held = fc_specs[1].run_id
    path = _fake_claim(store, held)

    def holder_finishes() -> None:
        time.sleep(0.5)
        store.write(reference.read(held))
        path.unlink()

    finisher = threading.Thread(target=holder_finishes)
    finisher.start()
    counting = Counting()
    try:
        assert run_specs(fc_specs, store, Executor(), stack=False, run_fn=counting) == (2, 0)
    finally:
        finisher.join()
    assert sorted(counting.trained) == sorted(s.run_id for s in fc_specs if s.run_id != held)
    assert store.sessions()[-1]["by_others"] == 1 and store.sessions()[-1]["status"] == "completed"
    assert records_by_id_of(store, fc_specs) == records_by_id_of(reference, fc_specs)
    assert not list(store.claims_dir.glob("*.claim"))


def test_a_session_trains_a_run_whose_holder_gave_it_up(fc_specs, tmp_path, monkeypatch):
    """The holder releases its claim without a result (it failed or was interrupted): the session trains it."""
    monkeypatch.setattr("ninr.studies.session.CLAIM_POLL_S", 0.05)
    store = ResultStore(tmp_path / "store")
    path = _fake_claim(store, fc_specs[0].run_id)
    releaser = threading.Timer(0.5, path.unlink)
    releaser.start()
    counting = Counting()
    try:
        assert run_specs(fc_specs, store, Executor(), stack=False, run_fn=counting) == (3, 0)
    finally:
        releaser.join()
    assert counting.trained[-1] == fc_specs[0].run_id and len(counting.trained) == 3


def records_by_id_of(store: ResultStore, specs: list) -> dict[str, list[dict]]:
    return {r.run_id: r.records for r in store.results([s.run_id for s in specs])}


RESUMER = r"""
import os, sys, time
from pathlib import Path
from ninr.studies.executors import Executor, run_planned
from ninr.studies.part import PARTS
from ninr.studies.preset import load_preset
from ninr.studies.session import run_study

preset, out, side, go = sys.argv[1:5]


def counting(task):
    with open(side, "a", encoding="utf-8") as fh:  # one short O_APPEND write per task: lines never interleave
        fh.write("".join(f"{s.run_id} {os.getpid()}\n" for s in task.specs))
    time.sleep(0.3)  # each run lasts long enough for the two sessions to interleave
    return run_planned(task)


while not Path(go).exists():
    time.sleep(0.01)
summary = run_study(load_preset(preset), "table", out, Executor(), resume=True, run_fn=counting, stack=False)
print("SUMMARY", summary.line(), flush=True)
"""


@needs_proc
@pytest.mark.slow  # two processes import torch and train 8 runs: 10 to 30 s (the waiting logic: the tests above)
def test_two_processes_resuming_one_store_train_each_run_once(tmp_path):
    preset = tmp_path / "claims.toml"
    preset.write_text(FC_ONLY)
    script = tmp_path / "resumer.py"
    script.write_text(RESUMER)
    side, go, out = tmp_path / "trained.txt", tmp_path / "go", tmp_path / "shared"
    tag = secrets.token_hex(8)
    logs = [tmp_path / f"log{i}.txt" for i in range(2)]
    procs = [start([sys.executable, str(script), str(preset), str(out), str(side), str(go)], tag, log) for log in logs]
    try:
        time.sleep(0.5)
        go.touch()  # both start their sessions together (after their imports)
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    trained = [line.split() for line in side.read_text().splitlines()]
    ids = [run_id for run_id, _ in trained]
    by_pid = {pid: sum(1 for _, p in trained if p == pid) for pid in {p for _, p in trained}}
    print("runs trained per process:", by_pid, "|", " | ".join(t.strip().replace("\n", " / ") for t in texts))
    reference = run_study(load_preset(preset), "table", tmp_path / "reference", Executor(), quiet=True, stack=False)
    assert sorted(ids) == sorted(reference.store.read_study()["run_ids"])  # every run, each once
    assert records_by_id(ResultStore(out / "table")) == records_by_id(reference.store)
    assert not list((out / "table" / ".claims").glob("*.claim"))
    assert wait_gone(tag, EXIT_BOUND_S)[1] == {}


# ---------------------------------------------------------------- 4. crash test

KILL_SEED = 7
"""The seed of the kill points: session i is killed (SIGKILL) once it has written k_i new run files, k_i uniform in
{0, ..., 5}, plus d_i seconds, uniform in [0, 0.4): k = 0 kills it while its workers start or hold their first
tasks; the delay lands in a task, or between two run files of a stack (a part-finished stack)."""


@needs_proc
@pytest.mark.slow
def test_a_sweep_killed_at_random_points_and_resumed_stores_the_uninterrupted_records(tmp_path):
    preset = tmp_path / "crash.toml"
    preset.write_text(FC_AND_CNN)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    store = out / "table"
    rng = random.Random(KILL_SEED)
    points = [(rng.randrange(6), rng.uniform(0.0, 0.4)) for _ in range(3)]
    seen = []
    for i, (new_files, delay) in enumerate(points):
        tag = secrets.token_hex(8)
        before = run_files(store)
        proc = sweep(preset, out, tag, log, *(["--resume"] if i else []))
        try:
            wait_for(lambda: run_files(store) >= before + new_files or proc.poll() is not None, 300, "run files")  # noqa: B023
            time.sleep(delay)
            finished = proc.poll() is not None
            elapsed = 0.0 if finished else kill_tree_and_check(proc, tag, SPAWN_EXIT_BOUND_S)
        finally:
            if proc.poll() is None:
                proc.kill()
        seen.append((new_files, round(delay, 3), before, run_files(store), "finished" if finished else "killed"))
        print(
            f"kill point {i}: after {new_files} new file(s) + {delay:.3f}s: files {before} -> {run_files(store)}, "
            f"{'finished first' if finished else f'tree gone {elapsed:.2f}s after the kill'}"
        )
    tag = secrets.token_hex(8)
    final = sweep(preset, out, tag, log, "--resume")
    assert final.wait(timeout=600) == 0, log.read_text()
    assert wait_gone(tag, EXIT_BOUND_S)[1] == {}
    reference = run_study(load_preset(preset), "table", tmp_path / "reference", Executor(), quiet=True)
    assert records_by_id(ResultStore(store)) == records_by_id(reference.store)
    assert not list((store / ".claims").glob("*.claim"))
    assert any(s[-1] == "killed" for s in seen), seen
