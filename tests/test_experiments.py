"""Experiments machinery: preset files, sweeps, run ids, executors, interrupt and resume, CLI.

The tiny preset (configs/tiny.toml: synthetic data, FC and CNN x {None, in-NINR} x 2 seeds, 5 SGD
steps) is the oracle: the in-process records are the reference every other path must reproduce
exactly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ninr.cli import main
from ninr.errors import ConfigError
from ninr.experiments import (
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
from ninr.experiments.parts import PARTS
from ninr.train import TrainConfig, resolve, run_id

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_specs() -> list[RunSpec]:
    return expand_preset(load_preset(TINY))["table"]


@pytest.fixture(scope="module")
def reference_records(tiny_specs, tmp_path_factory) -> dict[str, list[dict]]:
    """The uninterrupted in-process sweep of the tiny preset: run id -> records."""
    store = ResultStore(tmp_path_factory.mktemp("reference") / "table")
    assert run_specs(tiny_specs, store, Executor()) == (8, 0)
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


def test_run_is_deterministic_and_tidy(tiny_specs, reference_records):
    spec = tiny_specs[3]
    records = run(spec)
    assert records == reference_records[spec.run_id]
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


def test_run_hook_adds_fields_to_the_final_record_without_changing_training(tiny_specs, reference_records):
    if "test-phase" not in RUN_HOOKS:
        RUN_HOOKS.add("test-phase", _PhaseHook)
    spec = tiny_specs[0]
    hooked = RunSpec(spec.part, spec.study, spec.arch, spec.label, spec.seed, spec.train, hooks=("test-phase",))
    records = run(hooked)
    assert records[-1]["phase"] == "decay" and records[-1]["hook_steps"] == 5
    strip = ("run_id", "phase", "hook_steps", "expected_phase")
    clean = [{k: v for k, v in r.items() if k not in strip} for r in records]
    assert clean == [{k: v for k, v in r.items() if k not in strip} for r in reference_records[spec.run_id]]


def test_phase_hook_classifies_ninr_runs_only(tiny_specs, reference_records):
    from ninr.probes import PHASES

    for spec in (tiny_specs[0], tiny_specs[2]):  # FC None, FC in-NINR
        hooked = RunSpec(spec.part, spec.study, spec.arch, spec.label, spec.seed, spec.train, spec.phase, ("phase",))
        records = run(hooked)
        same = [{k: v for k, v in r.items() if k != "run_id"} for r in records[:-1]]
        assert same == [{k: v for k, v in r.items() if k != "run_id"} for r in reference_records[spec.run_id][:-1]]
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


def fail_on_cnn_ninr_seed_1(spec: RunSpec) -> list[dict]:
    """A run function that fails on one run (module level: picklable for workers)."""
    if (spec.arch, spec.label, spec.seed) == ("CNN", "in-NINR (Decay)", 1):
        raise RuntimeError("injected failure")
    return run(spec)


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


def test_make_executor_choices():
    assert type(make_executor()) is Executor and type(make_executor(workers=1)) is Executor
    with pytest.raises(ConfigError, match="choose one executor"):
        make_executor(workers=2, dask_local=2)


# ---------------------------------------------------------------- interrupt and resume


class FailOnNth:
    """Runs normally until the ``n``-th call, which raises (a kill in the middle of a run)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, spec: RunSpec) -> list[dict]:
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt("killed during run")
        return run(spec)


def test_interrupted_sweep_resumes_to_exactly_the_uninterrupted_records(tiny_specs, reference_records, tmp_path):
    store = ResultStore(tmp_path / "table")
    with pytest.raises(KeyboardInterrupt):
        run_specs(tiny_specs, store, Executor(), run_fn=FailOnNth(4))
    assert len(store.run_ids()) == 3
    assert store.sessions()[-1]["status"] == "interrupted"
    with pytest.raises(ConfigError, match="--resume"):
        run_specs(tiny_specs, store, Executor())
    counting = FailOnNth(0)
    assert run_specs(tiny_specs, store, Executor(), resume=True, run_fn=counting) == (5, 3)
    assert counting.calls == 5  # nothing finished was recomputed
    assert _by_id(store) == reference_records
    records = store.records()
    assert len(records) == 16 and len({(r["run_id"], r["epoch"]) for r in records}) == 16
    assert run_specs(tiny_specs, store, Executor(), resume=True, run_fn=FailOnNth(1)) == (0, 8)


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
