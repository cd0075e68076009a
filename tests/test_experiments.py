"""Experiments machinery: preset files, sweeps, run ids, executors, interrupt and resume, CLI.

The tiny preset (configs/tiny.toml: synthetic data, FC and CNN x {None, in-NINR} x 2 seeds, 5 SGD
steps) is the oracle: the in-process records (the FC runs trained as one stack of 4, the CNN runs one
by one: on the CPU convolutions do not stack) are the reference every other path must reproduce
exactly; records trained one by one (``stack=False``) agree with them to float tolerance.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ninr.cli import main
from ninr.errors import ConfigError
from ninr.studies import (
    RUN_HOOKS,
    DaskExecutor,
    Executor,
    PoolExecutor,
    Progress,
    ResultStore,
    RunHook,
    RunSpec,
    expand_grid,
    expand_preset,
    load_preset,
    make_executor,
    parse_preset,
    run,
    run_specs,
)
from ninr.studies.executors import run_planned
from ninr.studies.parts import PARTS
from ninr.studies.tasks import Task
from ninr.train import TrainConfig, resolve, run_id

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_specs() -> list[RunSpec]:
    return expand_preset(load_preset(TINY))["table"]


@pytest.fixture(scope="module")
def reference_store(tiny_specs, tmp_path_factory) -> ResultStore:
    """The uninterrupted in-process sweep of the tiny preset."""
    store = ResultStore(tmp_path_factory.mktemp("reference") / "table")
    assert run_specs(tiny_specs, store, Executor()) == (8, 0)
    return store


@pytest.fixture(scope="module")
def reference_records(reference_store) -> dict[str, list[dict]]:
    """Run id -> records of the reference sweep."""
    return _by_id(reference_store)


@pytest.fixture(scope="module")
def unstacked_records(tiny_specs, tmp_path_factory) -> dict[str, list[dict]]:
    """The same sweep with every run on its own (``stack=False``): what ``run(spec)`` gives."""
    store = ResultStore(tmp_path_factory.mktemp("unstacked") / "table")
    assert run_specs(tiny_specs, store, Executor(), stack=False) == (8, 0)
    assert all("stacked" not in r.meta for r in store.results())
    return {r.run_id: r.records for r in store.results()}


def _by_id(store: ResultStore) -> dict[str, list[dict]]:
    return {r.run_id: r.records for r in store.results()}


# ---------------------------------------------------------------- config and sweep


def test_tiny_preset_expands_to_the_grid(tiny_specs):
    assert [(s.arch, s.label, s.seed) for s in tiny_specs] == [
        (a, v, s) for a in ("FC", "CNN") for v in ("None", "in-NINR (Decay)") for s in (0, 1)
    ]
    assert len({s.run_id for s in tiny_specs}) == 8
    fc_ninr = tiny_specs[2]
    assert fc_ninr.train.model == "mlp" and fc_ninr.train.model_kwargs == {"width": 16}
    assert [m.name for m in fc_ninr.train.methods] == ["in-ninr"] and fc_ninr.phase == "decay"
    assert tiny_specs[4].train.model_kwargs == {"channels": [2, 4], "hidden": 8}


def test_run_id_is_the_train_run_id_of_the_resolved_config(tiny_specs):
    spec = tiny_specs[2]
    assert spec.run_id == run_id(resolve(spec.train)[0])
    # Spelling out a default hyperparameter resolves to the same config, hence the same id.
    explicit = TrainConfig.from_dict(
        {**spec.train.to_dict(), "methods": [{"name": "in-ninr", "params": {"sigma": 1.0, "per": "example"}}]}
    )
    assert RunSpec("table", "x", "A", "renamed", 0, explicit).run_id == spec.run_id
    with_hook = RunSpec("table", "tiny", "FC", "x", 0, spec.train, hooks=("h",))
    assert with_hook.run_id != spec.run_id


def test_spec_round_trips_through_a_dict(tiny_specs):
    spec = tiny_specs[5]
    again = RunSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.run_id == spec.run_id and again.labels() == spec.labels()


def _preset(text_sections: dict) -> dict:
    base = {"seeds": 2, "train": {"dataset": "synthetic", "epochs": 1, "max_steps": 1}}
    return {"name": "t", "table": {**base, **text_sections}}


def test_seed_count_and_defaults():
    preset = parse_preset(_preset({}))
    specs = expand_grid(preset.studies[0], "t")
    assert [(s.arch, s.label, s.seed) for s in specs] == [("mlp", "None", 0), ("mlp", "None", 1)]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"sedes": 1}, "did you mean 'seeds'"),
        ({"variant": [{"label": "x", "methods": ["in-ninrr"]}]}, "did you mean 'in-ninr'"),
        ({"variant": [{"label": "x", "methods": [{"name": "in-ninr", "params": {"sigma": -1.0}}]}]}, "`sigma` must be"),
        ({"variant": [{"label": "a"}, {"label": "b"}]}, "same resolved config"),
        ({"variant": [{"label": "a"}, {"label": "a", "train": {"lr": 0.1}}]}, "labels"),
        (
            {"variant": [{"label": "a", "per_arch": {"CNM": {}}}], "arch": {"CNN": {"model": "cnn"}}},
            "did you mean 'CNN'",
        ),
        ({"train": {"epochs": -1}}, "`epochs` must be"),
        ({"seeds": [0, 0]}, "without repeats"),
    ],
)
def test_bad_files_fail_before_training_with_a_named_key(section, message):
    data = _preset(section)
    with pytest.raises(ConfigError, match=message):
        preset = parse_preset(data)
        expand_preset(preset)


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="did you mean 'table'"):
        parse_preset({"name": "t", "tabel": {"seeds": 1}})


def test_per_arch_override_replaces_methods():
    data = _preset(
        {
            "arch": {"FC": {"model": "mlp"}, "CNN": {"model": "cnn"}},
            "variant": [
                {
                    "label": "n",
                    "methods": [{"name": "in-ninr", "params": {"sigma": 1.0}}],
                    "per_arch": {"CNN": {"methods": [{"name": "in-ninr", "params": {"sigma": 3.0}}]}},
                }
            ],
        }
    )
    specs = expand_preset(parse_preset(data))["table"]
    sigmas = {(s.arch, s.seed): s.resolved["methods"][0]["params"]["sigma"] for s in specs}
    assert sigmas == {("FC", 0): 1.0, ("FC", 1): 1.0, ("CNN", 0): 3.0, ("CNN", 1): 3.0}


def test_repository_presets_resolve():
    """quick and paper name the table study's 18 rows (methods not yet registered are skipped here)."""
    for name in ("quick", "paper"):
        preset = load_preset(ROOT / "configs" / f"{name}.toml")
        study = preset.study("table")
        assert [a.label for a in study.archs] == ["FC", "CNN"]
        labels = [v.label for v in study.variants]
        assert labels[:3] == ["None", "L2", "Dropout"] and len(labels) == 9
        assert study.hooks == ("phase", "robustness")
        phases = {v.label: v.phase for v in study.variants}
        assert phases["in-NINR (Catapult)"] == "catapult" and phases["full-NINR (Decay)"] == "decay"


# ---------------------------------------------------------------- run


def test_run_is_deterministic_and_tidy(tiny_specs, unstacked_records):
    spec = tiny_specs[3]
    records = run(spec)
    assert records == unstacked_records[spec.run_id]
    assert [r["epoch"] for r in records] == [1, 2] and [r["final"] for r in records] == [False, True]
    assert all("epoch_time_s" not in r for r in records)
    assert records[-1]["run_status"] == "stopped" and records[-1]["step"] == 5
    assert {r["label"] for r in records} == {"in-NINR (Decay)"} and records[0]["expected_phase"] == "decay"
    assert any(k.startswith("niw_norm/") for k in records[-1])


def test_diverged_run_is_recorded_with_its_phase():
    preset = parse_preset(_preset({"train": {"dataset": "synthetic", "epochs": 1, "max_steps": 3, "lr": 1e6}}))
    spec = expand_preset(preset)["table"][0]
    records = run(spec)
    assert records[-1]["run_status"] == "diverged" and records[-1]["phase"] == "divergent"


class _PhaseHook(RunHook):
    def __init__(self, spec: RunSpec) -> None:
        self.steps = 0

    def on_step_end(self, state) -> None:
        self.steps += 1

    def summary(self, result) -> dict:
        return {"phase": "decay", "hook_steps": self.steps}


def test_run_hook_adds_fields_to_the_final_record_without_changing_training(tiny_specs, unstacked_records):
    if "test-phase" not in RUN_HOOKS:
        RUN_HOOKS.add("test-phase", _PhaseHook)
    spec = tiny_specs[0]
    hooked = RunSpec(spec.part, spec.study, spec.arch, spec.label, spec.seed, spec.train, hooks=("test-phase",))
    records = run(hooked)
    assert records[-1]["phase"] == "decay" and records[-1]["hook_steps"] == 5
    strip = ("run_id", "phase", "hook_steps", "expected_phase")
    clean = [{k: v for k, v in r.items() if k not in strip} for r in records]
    assert clean == [{k: v for k, v in r.items() if k not in strip} for r in unstacked_records[spec.run_id]]


def test_phase_hook_classifies_ninr_runs_only(tiny_specs, unstacked_records):
    from ninr.dynamics import PHASES

    for spec in (tiny_specs[0], tiny_specs[2]):  # FC None, FC in-NINR
        hooked = RunSpec(spec.part, spec.study, spec.arch, spec.label, spec.seed, spec.train, spec.phase, ("phase",))
        records = run(hooked)
        same = [{k: v for k, v in r.items() if k != "run_id"} for r in records[:-1]]
        assert same == [{k: v for k, v in r.items() if k != "run_id"} for r in unstacked_records[spec.run_id][:-1]]
        final = records[-1]
        if spec.train.methods:
            assert final["phase"] in PHASES and final["phase_reason"] and final["niw_peak_ratio"] > 0
            assert final["phase_nodes"] == {final["phase_node"]: final["phase"]}  # in-NINR: one node, "fc1"
        else:
            assert "phase" not in final  # no NIWs: no NIN phase (the table shows n/a)


def test_unknown_hook_is_named_at_load_time():
    with pytest.raises(ConfigError, match="did you mean 'phase'"):
        expand_preset(parse_preset(_preset({"hooks": ["phaze"]})))


# ---------------------------------------------------------------- executors


def test_process_pool_gives_the_in_process_records(tiny_specs, reference_records, tmp_path):
    store = ResultStore(tmp_path / "table")
    with PoolExecutor(2) as pool:
        assert run_specs(tiny_specs, store, pool) == (8, 0)
        assert _by_id(store) == reference_records
        # A failing run stops the sweep but keeps every run that finished.
        failing = ResultStore(tmp_path / "failing")
        with pytest.raises(RuntimeError, match="injected"):
            run_specs(tiny_specs, failing, pool, run_fn=fail_on_cnn_ninr_seed_1)
    kept = _by_id(failing)
    assert tiny_specs[7].run_id not in kept and len(kept) >= 1
    assert all(kept[i] == reference_records[i] for i in kept)
    assert not list((tmp_path / "failing" / "runs").glob(".*.tmp"))


def fail_on_cnn_ninr_seed_1(task: Task) -> list:
    """A task function that fails on the task holding one run (module level: picklable for workers)."""
    if any((s.arch, s.label, s.seed) == ("CNN", "in-NINR (Decay)", 1) for s in task.specs):
        raise RuntimeError("injected failure")
    return run_planned(task)


def test_dask_local_cluster_gives_the_in_process_records(tiny_specs, reference_records, tmp_path):
    pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'ninr[dask]')")
    store = ResultStore(tmp_path / "table")
    with DaskExecutor(local_workers=1, processes=False) as dask:
        assert "LocalCluster" in dask.describe()
        assert run_specs(tiny_specs, store, dask) == (8, 0)
    assert _by_id(store) == reference_records


@pytest.mark.slow
def test_dask_worker_processes_give_the_in_process_records(tiny_specs, reference_records, tmp_path):
    pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'ninr[dask]')")
    store = ResultStore(tmp_path / "table")
    with make_executor(dask_local=2) as dask:
        assert run_specs(tiny_specs, store, dask) == (8, 0)
    assert _by_id(store) == reference_records


def test_stacked_and_one_by_one_records_agree_to_float_tolerance(reference_store, unstacked_records, tiny_specs):
    stacked = {r.run_id: r for r in reference_store.results()}
    assert stacked.keys() == unstacked_records.keys() == {s.run_id for s in tiny_specs}
    fc = [s.run_id for s in tiny_specs if s.arch == "FC"]
    assert [stacked[i].meta["stacked"] for i in fc] == [{"runs": 4, "index": k} for k in range(4)]
    assert all("stacked" not in r.meta for i, r in stacked.items() if i not in fc)  # CNN: one by one on the CPU
    for rid, alone in unstacked_records.items():
        rows = stacked[rid].records
        assert [r.keys() for r in rows] == [r.keys() for r in alone]
        for got, want in zip(rows, alone, strict=True):
            for key, value in want.items():
                expected = pytest.approx(value, rel=1e-4, abs=1e-6) if isinstance(value, float) else value
                assert got[key] == expected, (rid, key)


def _labels(tasks: list[Task]) -> list[tuple]:
    """``("FN0", "FN1", "stack")``: arch, row and seed of each run of a task, and whether it is a stack."""
    return [tuple(f"{s.arch[0]}{s.label[0]}{s.seed}" for s in t.specs) + ("stack",) * t.stacked for t in tasks]


def test_plan_groups_stacks_by_family_and_balances_them_over_workers(tiny_specs, caplog):
    import logging

    from ninr.studies import plan_tasks

    with caplog.at_level(logging.INFO, logger="ninr.train.stacking"):
        one = plan_tasks(tiny_specs)
    cnn = [("CN0",), ("CN1",), ("Ci0",), ("Ci1",)]
    assert _labels(one) == [("FN0", "FN1", "Fi0", "Fi1", "stack"), *cnn]
    assert "CNN | None | seed 0: one by one: model 'cnn' has convolutions" in caplog.text
    # Every worker gets its share of each stack (near-equal consecutive chunks), never more than max_stack.
    assert _labels(plan_tasks(tiny_specs, workers=2)) == [("FN0", "FN1", "stack"), ("Fi0", "Fi1", "stack"), *cnn]
    assert [len(t.specs) for t in plan_tasks(tiny_specs, workers=3)][:3] == [2, 1, 1]
    assert [len(t.specs) for t in plan_tasks(tiny_specs, workers=8)][:4] == [1, 1, 1, 1]
    assert [len(t.specs) for t in plan_tasks(tiny_specs, max_stack=3)][:2] == [2, 2]
    assert all(not t.stacked for t in plan_tasks(tiny_specs, stack=False))
    # Only runs with the same hooks and options share a stack.
    hooked = [RunSpec(s.part, s.study, s.arch, s.label, s.seed, s.train, s.phase, ("phase",)) for s in tiny_specs[:2]]
    mixed = plan_tasks([*hooked, *tiny_specs[2:4]])
    assert [[s.hooks for s in t.specs] for t in mixed] == [[("phase",)] * 2, [(), ()]]


def test_mixed_sweep_stacks_what_it_can_and_logs_why_the_rest_goes_one_by_one(tmp_path, caplog):
    """FC x {None, L2, Dropout, in-NINR, CDT} x 2 seeds with the phase hook: dropout runs go one by one."""
    import logging

    variants = [
        {"label": "None"},
        {"label": "L2", "methods": [{"name": "l2", "params": {"coefficient": 1e-3}}]},
        {"label": "Dropout", "methods": [{"name": "dropout", "params": {"rate": 0.3}}]},
        {"label": "in-NINR", "methods": [{"name": "in-ninr", "params": {"sigma": 2.0}}]},
        {"label": "CDT", "methods": [{"name": "cdt", "params": {"strength": 0.2}}]},
    ]
    train = {"dataset": "synthetic", "dataset_kwargs": {"n_train": 96, "n_test": 32}, "batch_size": 32, "epochs": 2}
    doc = {"table": {"seeds": 2, "hooks": ["phase"], "train": train, "variant": variants}}
    doc["table"]["arch"] = {"FC": {"model": "mlp", "model_kwargs": {"width": 16}}}
    specs = expand_preset(parse_preset(doc, name="mixed"))["table"]
    stacked, alone = ResultStore(tmp_path / "stacked"), ResultStore(tmp_path / "alone")
    with caplog.at_level(logging.INFO, logger="ninr.train.stacking"):
        assert run_specs(specs, stacked, Executor()) == (10, 0)
    assert "Dropout | seed 0: one by one: method(s) ['dropout'] have no stacked form" in caplog.text
    assert run_specs(specs, alone, Executor(), stack=False) == (10, 0)
    for spec in specs:
        got, want = stacked.read(spec.run_id), alone.read(spec.run_id)
        assert ("stacked" in got.meta) == (spec.label != "Dropout")
        if spec.label == "Dropout":
            assert got.records == want.records
            continue
        assert got.meta["stacked"]["runs"] == 8
        final, expected = got.records[-1], want.records[-1]
        assert final["test_acc"] == pytest.approx(expected["test_acc"], abs=1e-6)
        assert final.get("phase") == expected.get("phase")  # the phase hook ran on the stacked run too
        if "niw_peak_ratio" in expected:
            assert final["niw_peak_ratio"] == pytest.approx(expected["niw_peak_ratio"], rel=1e-4)


def test_stack_setting_in_the_preset_and_on_the_command_line(tmp_path):
    from ninr.studies import run_study

    for stack, stacked in ((None, True), (False, False)):
        doc = _preset({} if stack is None else {"stack": stack})
        assert parse_preset(doc).studies[0].stack is stack
        summary = run_study(parse_preset(doc), "table", tmp_path / str(stack), Executor(), quiet=True)
        assert [("stacked" in r.meta) for r in summary.store.results()] == [stacked, stacked]
    with pytest.raises(ConfigError, match=r"`\[table\].stack` must be true or false"):
        parse_preset(_preset({"stack": "yes"}))
    phases = {"name": "t", "phases": {"seeds": [0], "stack": True, "options": {"linear": {"steps": 5}}}}
    with pytest.raises(ConfigError, match=r"\[phases\].stack: the phases part trains its runs one by one"):
        expand_preset(parse_preset(phases))
    out = tmp_path / "res"
    assert main(["sweep", str(TINY), "--out", str(out), "--only", "table", "--quiet", "--no-stack"]) == 0
    assert all("stacked" not in r.meta for r in ResultStore(out / "table").results())
    assert ResultStore(out / "table").sessions()[-1]["stacks"] == 0


def test_make_executor_choices():
    assert type(make_executor()) is Executor and type(make_executor(workers=1)) is Executor
    with pytest.raises(ConfigError, match="choose one executor"):
        make_executor(workers=2, dask_local=2)


# ---------------------------------------------------------------- interrupt and resume


class FailOnNth:
    """Runs tasks normally until the ``n``-th, which raises (a kill in the middle of a task); logs each task."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0
        self.tasks: list[Task] = []

    def __call__(self, task: Task) -> list:
        self.calls += 1
        self.tasks.append(task)
        if self.calls == self.n:
            raise KeyboardInterrupt("killed during a task")
        return run_planned(task)


def test_interrupted_sweep_resumes_to_exactly_the_uninterrupted_records(tiny_specs, reference_records, tmp_path):
    # In-process plan: the 4 FC runs as one stack, then the 4 CNN runs one by one; the 4th task is killed.
    store = ResultStore(tmp_path / "table")
    with pytest.raises(KeyboardInterrupt):
        run_specs(tiny_specs, store, Executor(), run_fn=FailOnNth(4))
    assert len(store.run_ids()) == 6
    assert store.sessions()[-1]["status"] == "interrupted"
    with pytest.raises(ConfigError, match="--resume"):
        run_specs(tiny_specs, store, Executor())
    counting = FailOnNth(0)
    assert run_specs(tiny_specs, store, Executor(), resume=True, run_fn=counting) == (2, 6)
    assert counting.calls == 2  # nothing finished was recomputed
    assert _by_id(store) == reference_records
    records = store.records()
    assert len(records) == 16 and len({(r["run_id"], r["epoch"]) for r in records}) == 16
    assert run_specs(tiny_specs, store, Executor(), resume=True, run_fn=FailOnNth(1)) == (0, 8)


class KilledAfterWrites(ResultStore):
    """A store whose process is killed while writing the ``n``-th run file (nothing of it is written)."""

    def __init__(self, root: Path, n: int) -> None:
        super().__init__(root)
        self.n, self.writes = n, 0

    def write(self, result):
        self.writes += 1
        if self.writes == self.n:
            raise KeyboardInterrupt("killed between two run files of one stack")
        return super().write(result)


@pytest.mark.parametrize("invariant", [True, False], ids=["missing-runs-only", "whole-stack-again"])
def test_a_stack_interrupted_part_way_resumes_exactly(tiny_specs, reference_records, tmp_path, monkeypatch, invariant):
    """The FC stack's results arrive together; a kill after writing 2 of its 4 runs leaves a part-finished stack.

    Where a run's records do not depend on its stack (dense models on the CPU) the resumed session trains
    only the 2 missing runs, as a stack of 2; otherwise the whole stack again, writing only the missing runs.
    Either way: exactly the uninterrupted records, and the finished files are not rewritten.
    """
    import ninr.studies.tasks as tasks_mod

    if not invariant:
        monkeypatch.setattr(tasks_mod, "composition_invariant", lambda config: False)
    root = tmp_path / "table"
    with pytest.raises(KeyboardInterrupt):
        run_specs(tiny_specs, KilledAfterWrites(root, 3), Executor())
    store = ResultStore(root)
    fc = [s.run_id for s in tiny_specs if s.arch == "FC"]
    assert store.run_ids() == set(fc[:2])
    stamps = {i: store.path(i).stat().st_mtime_ns for i in fc[:2]}
    counting = FailOnNth(0)
    assert run_specs(tiny_specs, store, Executor(), resume=True, run_fn=counting) == (6, 2)
    first = counting.tasks[0]
    assert first.stacked and [s.run_id for s in first.specs] == (fc[2:] if invariant else fc)
    assert {i: store.path(i).stat().st_mtime_ns for i in fc[:2]} == stamps
    assert _by_id(store) == reference_records
    assert [store.read(i).meta["stacked"]["runs"] for i in fc] == ([4, 4, 2, 2] if invariant else [4] * 4)


def test_resume_relabels_renamed_rows_without_recomputing(tiny_specs, reference_records, tmp_path):
    store = ResultStore(tmp_path / "table")
    run_specs(tiny_specs[:2], store, Executor())
    renamed = [RunSpec(s.part, s.study, s.arch, "Baseline", s.seed, s.train) for s in tiny_specs[:2]]
    assert run_specs(renamed, store, Executor(), resume=True, run_fn=FailOnNth(1)) == (0, 2)
    assert {r["label"] for r in store.records()} == {"Baseline"}


# ---------------------------------------------------------------- progress and CLI


def test_progress_lines_without_a_terminal(tiny_specs, tmp_path):
    stream = io.StringIO()
    progress = Progress(4, done=2, stream=stream, bar=False)
    run_specs(tiny_specs[:2], ResultStore(tmp_path / "s"), Executor(), progress=progress)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[3/4] table FC | None | seed 0") and "ETA" in lines[0]
    assert lines[1].startswith("[4/4]") and "test_acc" in lines[1]
    quiet = io.StringIO()
    run_specs(tiny_specs[:1], ResultStore(tmp_path / "q"), Executor(), progress=Progress(1, quiet=True, stream=quiet))
    assert quiet.getvalue() == ""


def test_cli_sweep_then_resume(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["sweep", str(TINY), "--out", str(out), "--quiet"]) == 0
    store = ResultStore(out / "table")
    assert len(store.run_ids()) == 8 and (out / "table" / "records.csv").exists()
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(TINY), "--out", str(out), "--quiet"])
    assert exc.value.code == 2
    assert main(["sweep", str(TINY), "--out", str(out), "--quiet", "--resume"]) == 0
    assert store.sessions()[-1]["new"] == 0
    assert "table: 8 runs (0 new, 8 resumed)" in capsys.readouterr().err


def test_cli_reproduce_writes_the_report(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "res"
    assert main(["reproduce", "--preset", str(TINY), "--out", str(out), "--only", "table", "--quiet"]) == 0
    html = (out / "report" / "report.html").read_text()
    assert '<table id="table-comparison">' in html and "in-NINR (Decay)" in html
    assert (out / "report" / "records" / "table.csv").exists()
    assert "| FC | None |" in capsys.readouterr().out


def test_cli_unknown_preset_and_part(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--preset", "quik", "--out", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(TINY), "--only", "tabel", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_table_part_is_registered():
    assert "table" in PARTS and PARTS.get("table").report == "ninr.report.comparison:table_part_report"
