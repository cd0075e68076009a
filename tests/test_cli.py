"""The ``ninr`` command line, run in-process on tiny synthetic data (bad arguments: tests/test_bad_inputs.py).

``ninr train --out D`` is a one-run study of the ``train`` part (D is both the run directory and its store),
``ninr eval D`` a one-run study of the ``eval`` part in D/eval, ``ninr phases`` a one-part study in OUT/phases.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from ninr.cli import main
from ninr.studies import PARTS, ResultStore, final_records, load_preset, parse_preset
from ninr.studies.migrate import legacy_id
from ninr.studies.store import RunResult

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["train", "--dataset", "synthetic", "--max-steps", "2", "--epochs", "1", "--quiet"]
"""A two-step training run on the synthetic data set (about a second)."""

RUN_FILES = ["checkpoint.pt", "config.json", "metrics.jsonl", "summary.json"]
STORE_FILES = ["runs", "sessions.jsonl", "study.json"]


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


def sessions(store: Path) -> list[tuple[int, str]]:
    """``(new runs, status)`` of each session logged in the store at ``store``."""
    return [(int(s["new"]), str(s["status"])) for s in ResultStore(store).sessions()]


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


# ----------------------------------------------------------------------------- ninr train


def test_train_writes_a_run_directory_that_is_a_one_run_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli(
        capsys,
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "mlp",
        "--nin",
        "input",
        "--sigma",
        "0.5",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--seed",
        "0",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES + STORE_FILES)
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["methods"] == [
        {
            "name": "in-ninr",
            "params": {
                "sigma": 0.5,
                "distribution": "gaussian",
                "per": "example",
                "conv_mode": "additive",
                "niw_init": "layer",
                "phase": None,
            },
        }
    ]
    assert "epoch   1" in stderr and "|W_NI| fc1=" in stderr
    assert f"run {meta['run_id']}: stopped" in stdout and f"written to {out}" in stdout
    store = ResultStore(out)
    study = store.read_study()
    assert study["part"] == "train" and len(study["run_ids"]) == 1
    (final,) = final_records(store.records(study["run_ids"]))
    summary = json.loads((out / "summary.json").read_text())
    assert final["run_status"] == "stopped" and final["methods"] == "in-ninr" and final["model"] == "mlp"
    assert final["test_acc"] == pytest.approx(summary["final"]["test_acc"])
    assert sessions(out) == [(1, "completed")]


def test_train_without_out_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(capsys, *TRAIN)
    assert code == 0, stderr
    assert stdout.startswith("run ") and "written to" not in stdout
    assert list(tmp_path.iterdir()) == []


def test_train_into_a_run_directory_again_is_refused_resumed_or_overwritten(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run_dir)
    (run_id,) = ResultStore(run_dir).run_ids()
    # the same run again: refused, naming `out`, nothing changed
    code, _, stderr = run_cli(capsys, *TRAIN, "--out", str(run_dir))
    assert code == 2 and "`out` must be a new or empty directory" in stderr and "already holds a run" in stderr
    assert snapshot(run_dir) == before
    # another run into the same directory: refused, with --resume too (it is not the run the directory holds)
    for extra in ([], ["--resume"]):
        code, _, stderr = run_cli(capsys, *TRAIN, "--seed", "3", "--out", str(run_dir), *extra)
        assert code == 2 and "`out` must be a new or empty directory" in stderr
        assert snapshot(run_dir) == before
    # --resume keeps the finished run: nothing trains, the run's files are untouched
    code, stdout, stderr = run_cli(capsys, *TRAIN, "--out", str(run_dir), "--resume")
    assert code == 0, stderr
    assert stdout.startswith(f"run {json.loads((run_dir / 'config.json').read_text())['run_id']}: stopped")
    after = snapshot(run_dir)
    for name in [*RUN_FILES, f"runs/{run_id}.json"]:
        assert after[name] == before[name], name
    assert sessions(run_dir) == [(1, "completed"), (0, "completed")]
    # --overwrite replaces the run directory whole: a new run with a new one-run store
    code, _, stderr = run_cli(capsys, *TRAIN, "--out", str(run_dir), "--overwrite")
    assert code == 0, stderr
    assert sessions(run_dir) == [(1, "completed")]
    assert ResultStore(run_dir).run_ids() == {run_id}
    # and --overwrite with another config replaces the run directory's run
    code, _, stderr = run_cli(capsys, *TRAIN, "--seed", "3", "--out", str(run_dir), "--overwrite")
    assert code == 0, stderr
    assert json.loads((run_dir / "config.json").read_text())["config"]["seed"] == 3
    assert ResultStore(run_dir).read_study()["run_ids"] != [run_id]
    assert run_id not in ResultStore(run_dir).run_ids()  # the old run's store went with it
    assert [p.name for p in run_dir.parent.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_train_refuses_to_write_into_another_part_s_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "O"
    phases = ["phases", "--model", "linear", "--sigmas", "1", "--noise", "fixed", "--steps", "5", "--out", str(out)]
    assert run_cli(capsys, *phases, "--quiet")[0] == 0
    before = snapshot(out / "phases")
    code, _, stderr = run_cli(capsys, *TRAIN, "--out", str(out / "phases"))
    assert code == 2 and "holds the store of the 'phases' part" in stderr
    assert snapshot(out / "phases") == before


# ----------------------------------------------------------------------------- ninr report, ninr eval


def test_report_builds_from_a_train_directory(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(capsys, "report", str(run_dir))
    assert code == 0, stderr
    assert "Training runs: the last epoch (train)" in stdout and "| mlp | none | 0 | stopped |" in stdout
    markdown = (run_dir / "report" / "report.md").read_text()
    assert "Training runs" in markdown and "| mlp | none | 0 | stopped |" in markdown
    assert (run_dir / "report" / "report.html").stat().st_size > 0
    assert (run_dir / "report" / "records" / "train.csv").is_file()


def test_eval_stores_one_run_per_setting_and_merges_records(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trained_id = json.loads((run_dir / "config.json").read_text())["run_id"]
    args = ["eval", str(run_dir), "--suite", "clean", "--quiet"]
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 0, stderr
    assert "clean" in stdout and "robustness.jsonl" in stdout
    eval_store = ResultStore(run_dir / "eval")
    (eval_id,) = eval_store.run_ids()
    records = [json.loads(line) for line in (run_dir / "robustness.jsonl").read_text().splitlines()]
    # clean accuracy, then its calibration records (ece, nll, brier)
    assert [(r["condition"], r["metric"], r["trained_run_id"], r["run_id"]) for r in records] == [
        ("clean", m, trained_id, eval_id) for m in ("accuracy", "ece", "nll", "brier")
    ]
    assert 0 <= records[0]["value"] <= 1
    # the same settings again: the one evaluation is recomputed, not added
    assert run_cli(capsys, *args)[0] == 0
    assert eval_store.run_ids() == {eval_id}
    assert len((run_dir / "robustness.jsonl").read_text().splitlines()) == 4
    assert sessions(run_dir / "eval") == [(1, "completed"), (1, "completed")]
    # --resume keeps it
    assert run_cli(capsys, *args, "--resume")[0] == 0
    assert sessions(run_dir / "eval")[-1] == (0, "completed")
    # the report of the run directory now has the evaluation's section too
    code, stdout, _ = run_cli(capsys, "report", str(run_dir))
    assert code == 0 and "(train)" in stdout and "(eval" in stdout


# ----------------------------------------------------------------------------- ninr phases


def test_phases_stores_runs_refuses_a_second_call_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "O"
    args = ["phases", "--model", "linear", "--sigmas", "0.5", "3", "--steps", "20", "--out", str(out), "--quiet"]
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 0, stderr
    store = ResultStore(out / "phases")
    assert len(store.run_ids()) == 4  # two noise modes x two sigmas
    assert "| redrawn | 0.5 |" in stdout and "predicted boundaries" in stdout and "measured phases" in stdout
    assert (out / "report" / "report.md").is_file()
    before = snapshot(out / "phases" / "runs")
    code, _, stderr = run_cli(capsys, *args)
    assert code == 2 and "already holds 4 of the 4 runs" in stderr and "--resume" in stderr
    code, stdout, stderr = run_cli(capsys, *args, "--resume")
    assert code == 0, stderr
    assert "| redrawn | 0.5 |" in stdout
    assert snapshot(out / "phases" / "runs") == before
    assert sessions(out / "phases") == [(4, "completed"), (0, "completed")]


# ----------------------------------------------------------------------------- ninr list


def test_list_shows_every_registry(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(capsys, "list")
    assert code == 0
    for word in (
        "models:",
        "mlp",
        "cnn",
        "methods:",
        "in-ninr",
        "full-ninr",
        "distributions:",
        "gaussian",
        "datasets:",
        "parts:",
        "hooks:",
        "robustness",
        "sections:",
    ):
        assert word in stdout


def test_list_parts_shows_the_five_parts(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(capsys, "list", "parts")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0] == "parts:"
    assert [line.split()[0] for line in lines[1:]] == ["eval", "hep", "phases", "table", "train"]


# ----------------------------------------------------------------------------- ninr store migrate

PHASES_PRESET = """
name = "tiny-phases"

[phases]
seeds = [0]

[phases.options.linear]
sigmas = [0.5, 3.0]
steps = 20
"""

LEGACY_ID = {("redrawn", 0.5): "da0d4ae65c5c", ("fixed", 3.0): "7d5e64e97630"}
"""Ids two runs of PHASES_PRESET had under the earlier run-id scheme (computed by that scheme's code): stores
written then name their run files so."""

GRID_PRESET = """
name = "tiny-grid"

[table]
seeds = [0, 1]
HOOKS

[table.train]
dataset = "synthetic"
dataset_kwargs = { n_train = 64, n_test = 32 }
epochs = 1
max_steps = 2

[table.arch.FC]
model = "mlp"
model_kwargs = { width = 16 }

[[table.variant]]
label = "None"

[[table.variant]]
label = "in-NINR"
phase = "decay"
methods = [{ name = "in-ninr", params = { sigma = 1.0 } }]

[phases]
seeds = [0]

[phases.options.mlp]
sigmas = [4.0]
epochs = 1
train_examples = 64
dataset = "synthetic"
dataset_kwargs = { n_train = 128, n_test = 32 }
noise = ["fixed"]
"""


@pytest.mark.parametrize(
    ("hooks", "expected"),
    [
        ("hooks = []", ["9689d47bddb2", "4e5c95207955", "32c12cc69f89", "26a7e8348160", "7db57667b5e6"]),
        ('hooks = ["phase"]', ["a1089e227324", "2f16f5332f4f", "913161cab679", "bbd1e92b280e", "7db57667b5e6"]),
        (
            'hooks = ["robustness"]\n[table.options.robustness]\nstds = [0.1]',
            ["e63ab48fd7ae", "0b88dc1478b4", "9d68985891c6", "a0bfcf46e6b6", "7db57667b5e6"],
        ),
    ],
)
def test_legacy_ids_are_the_ones_the_earlier_scheme_gave(hooks: str, expected: list[str]) -> None:
    """Table runs without hooks, with a hook, with hook settings, and an MLP phase point: the ids the earlier
    scheme's code computed for these runs, which ``ninr store migrate`` must find to rename them."""
    preset = parse_preset(tomllib.loads(GRID_PRESET.replace("HOOKS", hooks)))
    specs = [s for part in preset.parts() for s in PARTS.get(part).expand(preset.section(part), preset.name)]
    assert [legacy_id(s) for s in specs] == expected


def test_store_migrate_renames_runs_of_the_earlier_scheme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = tmp_path / "tiny.toml"
    preset.write_text(PHASES_PRESET)
    out = tmp_path / "results"
    assert run_cli(capsys, "sweep", str(preset), "--out", str(out), "--quiet")[0] == 0
    store = ResultStore(out / "phases")
    current = store.read_study()["run_ids"]
    # the store as the earlier scheme wrote it: each run file, and its records, under the run's earlier id
    loaded = load_preset(preset)
    specs = PARTS.get("phases").expand(loaded.section("phases"), loaded.name)
    assert [s.run_id for s in specs] == current
    old_ids = {(s.options.noise, s.options.sigma): legacy_id(s) for s in specs}
    assert {k: old_ids[k] for k in LEGACY_ID} == LEGACY_ID
    for spec in specs:
        old_id = old_ids[(spec.options.noise, spec.options.sigma)]
        assert old_id is not None
        result = store.read(spec.run_id)
        records = [{**r, "run_id": old_id} for r in result.records]
        store.write(RunResult(old_id, result.spec, records, result.wall_time_s, result.meta))
        store.path(spec.run_id).unlink()
    before = snapshot(out / "phases")
    # a dry run says what it would do and changes nothing
    code, stdout, _ = run_cli(capsys, "store", "migrate", str(out), "--dry-run")
    assert code == 0 and f"(dry run) {out / 'phases'}: 4 renamed, 0 already current, 0 not in the preset" in stdout
    assert snapshot(out / "phases") == before
    code, stdout, _ = run_cli(capsys, "store", "migrate", str(out))
    assert code == 0 and "4 renamed" in stdout
    assert store.run_ids() == set(current)
    assert all(r["run_id"] == result.run_id for result in store.results(current) for r in result.records)
    # migrating again finds every run current; resuming the sweep trains nothing
    assert "0 renamed, 4 already current" in run_cli(capsys, "store", "migrate", str(out))[1]
    assert run_cli(capsys, "sweep", str(preset), "--out", str(out), "--quiet", "--resume")[0] == 0
    assert sessions(out / "phases") == [(4, "completed"), (0, "completed")]
