"""The study pipeline's machinery: presets, run ids, the table part's runs and hooks, stacking plans, executors,
interrupt and resume of stacks, the CLI, and the migration of stores written under the earlier run-id scheme.

What every part keeps (executors agree, resume, reports from stores, unknown keys) is tested for every registered
part by tests/test_parts.py. The tiny preset (configs/tiny.toml: synthetic data, FC and CNN x {None, in-NINR} x 2
seeds, 5 SGD steps) is the oracle here: its in-process records (the FC runs trained as one stack of 4, the CNN runs
one by one: on the CPU convolutions do not stack) are the reference; records trained one by one (``stack=False``)
agree with them to float tolerance.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import time
from pathlib import Path

import pytest

from ninr import perf
from ninr.cli import main
from ninr.dynamics import PHASES
from ninr.errors import ConfigError
from ninr.methods.baselines import Dropout
from ninr.studies import (
    PARTS,
    RUN_HOOKS,
    DaskExecutor,
    Executor,
    PoolExecutor,
    Progress,
    ResultStore,
    RunHook,
    RunResult,
    RunSpec,
    final_records,
    load_preset,
    make_executor,
    parse_preset,
    plan_tasks,
    run_specs,
    run_study,
)
from ninr.studies.executors import run_planned
from ninr.studies.migrate import legacy_id
from ninr.studies.parts.table import TrainRun
from ninr.studies.preset import find_preset
from ninr.studies.session import plan_session
from ninr.studies.tasks import Task, stacking
from ninr.train import TrainConfig
from part_harness import FailOnNth, records_by_id

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"

pytestmark = pytest.mark.usefixtures("one_thread")


def expand(preset, part: str = "table") -> list[RunSpec]:
    """The runs of ``part`` in ``preset``."""
    return PARTS.get(part).expand(preset.section(part), preset.name)


@pytest.fixture(scope="module")
def tiny_specs() -> list[RunSpec]:
    return expand(load_preset(TINY))


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> Path:
    """The uninterrupted in-process study of the tiny preset (table and phases) with its ``study.json`` files."""
    out = tmp_path_factory.mktemp("reference")
    preset = load_preset(TINY)
    for part in ("table", "phases"):
        summary = run_study(preset, part, out, Executor(), quiet=True)
        assert (summary.new, summary.resumed) == (8, 0)
    return out


@pytest.fixture(scope="module")
def reference_store(tiny_results) -> ResultStore:
    return ResultStore(tiny_results / "table")


@pytest.fixture(scope="module")
def reference_records(reference_store) -> dict[str, str]:
    """Run id -> records (canonical JSON text) of the reference table."""
    return records_by_id(reference_store)


@pytest.fixture(scope="module")
def unstacked_records(tiny_specs, tmp_path_factory) -> dict[str, list[dict]]:
    """The same table with every run on its own (``stack=False``): what the part's ``run(spec)`` gives."""
    store = ResultStore(tmp_path_factory.mktemp("unstacked") / "table")
    assert run_specs(tiny_specs, store, Executor(), stack=False) == (8, 0)
    assert all("stacked" not in r.meta for r in store.results())
    return {r.run_id: r.records for r in store.results()}


def _table(**section) -> dict:
    """A one-part preset document: a table of 2 seeds of 1 step on synthetic data, with ``section``'s keys."""
    base = {"seeds": 2, "train": {"dataset": "synthetic", "epochs": 1, "max_steps": 1}}
    return {"name": "t", "table": {**base, **section}}


def _with(spec: RunSpec, **changes) -> RunSpec:
    """``spec`` with other labels or options (``hooks``, ``hook_options``, ``train`` go to its options)."""
    options = spec.options
    run_changes = {k: changes.pop(k) for k in ("hooks", "hook_options", "train") if k in changes}
    if run_changes:
        options = TrainRun(
            run_changes.get("train", options.train),
            run_changes.get("hooks", options.hooks),
            run_changes.get("hook_options", options.hook_options),
        )
    labels = {"study": spec.study, "arch": spec.arch, "label": spec.label, "phase": spec.phase, **changes}
    return RunSpec(spec.part, labels["study"], labels["arch"], labels["label"], spec.seed, options, labels["phase"])


# ---------------------------------------------------------------- presets


def test_tiny_preset_expands_to_the_grid(tiny_specs):
    assert load_preset(TINY).parts() == ["table", "phases"]
    assert [(s.arch, s.label, s.seed) for s in tiny_specs] == [
        (a, v, s) for a in ("FC", "CNN") for v in ("None", "in-NINR (Decay)") for s in (0, 1)
    ]
    assert len({s.run_id for s in tiny_specs}) == 8
    fc_ninr = tiny_specs[2]
    assert fc_ninr.options.train.model == "mlp" and fc_ninr.options.train.model_kwargs == {"width": 16}
    assert [m.name for m in fc_ninr.options.train.methods] == ["in-ninr"] and fc_ninr.phase == "decay"
    assert tiny_specs[4].options.train.model_kwargs == {"channels": [2, 4], "hidden": 8}
    assert all(s.options.hooks == () and s.options.train.seed == s.seed for s in tiny_specs)


def test_seed_count_and_defaults():
    specs = expand(parse_preset(_table()))
    assert [(s.arch, s.label, s.seed) for s in specs] == [("mlp", "None", 0), ("mlp", "None", 1)]
    assert [s.options.train.seed for s in specs] == [0, 1] and specs[0].phase is None
    assert [s.seed for s in expand(parse_preset(_table(seeds=[3, 7])))] == [3, 7]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"variant": [{"label": "x", "methods": ["in-ninrr"]}]}, "did you mean 'in-ninr'"),
        ({"variant": [{"label": "x", "methds": []}]}, r"\[table\]\.variant\[0\]: unknown key 'methds'"),
        ({"variant": [{"label": "x", "methods": [{"name": "in-ninr", "params": {"sigma": -1.0}}]}]}, "`sigma` must be"),
        ({"variant": [{"label": "a"}, {"label": "b"}]}, "same resolved config"),
        ({"variant": [{"label": "a"}, {"label": "a", "train": {"lr": 0.1}}]}, "labels"),
        ({"variant": [{"label": " "}]}, "`label` must be a non-empty string"),
        (
            {"variant": [{"label": "a", "per_arch": {"CNM": {}}}], "arch": {"CNN": {"model": "cnn"}}},
            "did you mean 'CNN'",
        ),
        ({"train": {"epochs": -1}}, "`epochs` must be"),
        ({"train": {"methods": ["in-ninr"]}}, "set `methods` on the variant"),
        ({"seeds": [0, 0]}, "without repeats"),
        ({"seeds": 0}, r"`\[table\]\.seeds` must be an integer >= 1"),
        ({"hooks": ["phaze"]}, r"\[table\]\.hooks: .*did you mean 'phase'"),
        ({"hooks": ["robustness"], "options": {"robustness": {"limt": 5}}}, r"\[table\.options\.robustness\]"),
        ({"stack": "yes"}, r"`\[table\]\.stack` must be true or false"),
    ],
)
def test_bad_files_fail_before_training_with_a_named_key(section, message):
    with pytest.raises(ConfigError, match=message):
        expand(parse_preset(_table(**section)))


def test_preset_level_errors_are_named(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'table'"):
        parse_preset({"name": "t", "tabel": {"seeds": 1}})
    with pytest.raises(ConfigError, match="no study part"):
        parse_preset({"name": "t", "description": "nothing to run"})
    with pytest.raises(ConfigError, match="`name` must be a non-empty string"):
        parse_preset({**_table(), "name": " "})
    with pytest.raises(ConfigError, match="did you mean 'table'"):
        parse_preset(_table()).select(["tabel"])
    assert parse_preset(_table()).select(None).parts() == ["table"]
    assert load_preset(TINY).select(["phases", "table", "phases"]).parts() == ["phases", "table"]
    with pytest.raises(ConfigError, match="readable TOML file"):
        load_preset(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[table\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_preset(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        find_preset("tinny")
    assert find_preset("tiny") == TINY and find_preset(str(TINY)) == TINY
    # A preset without a name key is named after its file.
    (tmp_path / "unnamed.toml").write_text("[table]\nseeds = 1\n")
    assert load_preset(tmp_path / "unnamed.toml").name == "unnamed"


def test_per_arch_override_replaces_methods_and_train_fields():
    in_ninr = [{"name": "in-ninr", "params": {"sigma": 1.0}}]
    variant = {
        "label": "n",
        "methods": in_ninr,
        "per_arch": {"CNN": {"methods": [{"name": "in-ninr", "params": {"sigma": 3.0}}], "train": {"lr": 0.2}}},
    }
    specs = expand(parse_preset(_table(arch={"FC": {"model": "mlp"}, "CNN": {"model": "cnn"}}, variant=[variant])))
    got = {(s.arch, s.seed): (s.options.train.methods[0].params["sigma"], s.options.train.lr) for s in specs}
    lr = TrainConfig().lr
    assert got == {("FC", 0): (1.0, lr), ("FC", 1): (1.0, lr), ("CNN", 0): (3.0, 0.2), ("CNN", 1): (3.0, 0.2)}


@pytest.mark.parametrize("name", ["quick", "standard", "paper", "tiny", "hep", "hep-gun-preset", "tiny-robustness"])
def test_repository_presets_resolve(name):
    preset = load_preset(find_preset(name))
    for part in preset.parts():
        stacking(part, preset.section(part))
        specs = expand(preset, part)
        assert specs and len({s.run_id for s in specs}) == len(specs), part
    if name == "standard":  # the paper protocol's rows and training settings, fewer epochs, at least 3 seeds
        table, paper = preset.section("table"), load_preset(find_preset("paper")).section("table")
        assert [(v.label, v.phase) for v in table.variants] == [(v.label, v.phase) for v in paper.variants]
        assert table.arch == paper.arch and len(table.seeds) >= 3
        mine = ("epochs", "precision")  # fewer epochs; bf16 where the CPU has it natively (the paper: fp32)
        assert {k: v for k, v in table.train.items() if k not in mine} == {
            k: v for k, v in paper.train.items() if k not in mine
        }
        assert table.train["epochs"] < paper.train["epochs"]
        assert table.train["precision"] == "auto" and paper.train.get("precision", "fp32") == "fp32"
    if name in ("quick", "standard", "paper"):
        table = preset.section("table")
        assert [a.label for a in table.archs] == ["FC", "CNN"]
        labels = [v.label for v in table.variants]
        assert labels[:3] == ["None", "L2", "Dropout"] and len(labels) == 9
        assert table.hooks == ("phase", "robustness")
        phases = {v.label: v.phase for v in table.variants}
        assert phases["in-NINR (Catapult)"] == "catapult" and phases["full-NINR (Decay)"] == "decay"


# ---------------------------------------------------------------- run ids


def test_labels_and_artifacts_do_not_change_the_run_id(tiny_specs):
    spec = tiny_specs[2]
    renamed = _with(spec, study="other", arch="A", label="renamed", phase="catapult")
    assert renamed.run_id == spec.run_id and renamed.labels() != spec.labels()
    elsewhere = RunSpec(spec.part, spec.study, spec.arch, spec.label, spec.seed, spec.options, artifacts="/tmp/x")
    assert elsewhere.run_id == spec.run_id
    # The part enters the id: the train part's run of the same config is another run.
    assert RunSpec("train", spec.study, spec.arch, spec.label, spec.seed, spec.options).run_id != spec.run_id


def test_resolved_defaults_do_not_change_the_run_id_and_every_setting_does(tiny_specs):
    spec = tiny_specs[2]
    explicit = TrainConfig.from_dict(
        {**spec.options.train.to_dict(), "methods": [{"name": "in-ninr", "params": {"sigma": 1.0, "per": "example"}}]}
    )
    assert explicit != spec.options.train and _with(spec, train=explicit).run_id == spec.run_id
    # Progress lines are not part of what a run computes.
    assert RunSpec("table", "t", "FC", "x", 0, TrainRun(spec.options.train, progress=True)).run_id == spec.run_id
    other_sigma = TrainConfig.from_dict(
        {**spec.options.train.to_dict(), "methods": [{"name": "in-ninr", "params": {"sigma": 2.0}}]}
    )
    other_data = TrainConfig.from_dict({**spec.options.train.to_dict(), "dataset_kwargs": {"n_train": 95}})
    changed = [
        _with(spec, train=other_sigma),
        _with(spec, train=other_data),
        _with(spec, hooks=("phase",)),
        _with(spec, hooks=("robustness",), hook_options={"robustness": {"limit": 5}}),
        _with(spec, hooks=("robustness",), hook_options={"robustness": {"limit": 6}}),
    ]
    assert len({spec.run_id, *(c.run_id for c in changed)}) == 1 + len(changed)
    assert spec.identity["data"] == {"dataset": "synthetic", "dataset_kwargs": {"n_train": 96, "n_test": 64, "seed": 0}}


def test_spec_dict_holds_labels_options_identity_and_id(tiny_specs):
    spec = tiny_specs[2]
    data = spec.to_dict()
    assert {k: data[k] for k in ("study", "part", "arch", "label", "phase", "seed")} == {
        "study": "tiny", "part": "table", "arch": "FC", "label": "in-NINR (Decay)", "phase": "decay", "seed": 0,
    }  # fmt: skip
    assert data["run_id"] == spec.run_id and data["identity"] == json.loads(json.dumps(spec.identity))
    assert data["options"]["train"]["methods"] == [{"name": "in-ninr", "params": {"sigma": 1.0}}]  # as written
    assert data["identity"]["options"]["train"]["methods"][0]["params"]["per"] == "example"  # resolved


# ---------------------------------------------------------------- the table part's runs and hooks


def test_run_is_deterministic_and_tidy(tiny_specs, unstacked_records):
    spec = tiny_specs[3]
    records = PARTS.get("table").run(spec)
    assert records == unstacked_records[spec.run_id]
    assert [r["epoch"] for r in records] == [1, 2] and [r["final"] for r in records] == [False, True]
    assert all("epoch_time_s" not in r for r in records)
    assert records[-1]["run_status"] == "stopped" and records[-1]["step"] == 5
    assert {r["label"] for r in records} == {"in-NINR (Decay)"} and records[0]["expected_phase"] == "decay"
    assert all(r["run_id"] == spec.run_id and r["study"] == "tiny" and r["seed"] == 1 for r in records)
    assert any(k.startswith("niw_norm/") for k in records[-1])


def test_an_architecture_sets_hook_options_for_its_runs_only():
    arch = {"FC": {"model": "mlp"}, "CNN": {"model": "cnn", "options": {"phase": {"every": 200}}}}
    base = _table(
        hooks=["phase"], arch={k: {"model": v["model"]} for k, v in arch.items()}, options={"phase": {"probe": 64}}
    )
    plain, tuned = expand(parse_preset(base)), expand(parse_preset({**base, "table": {**base["table"], "arch": arch}}))
    got = {(s.to_dict()["arch"], s.seed): dict(s.options.hook_options) for s in tuned}
    assert got[("FC", 0)] == {"phase": {"probe": 64}} and got[("CNN", 1)] == {"phase": {"probe": 64, "every": 200}}
    same = [a.run_id == b.run_id for a, b in zip(plain, tuned, strict=True)]
    assert same == [True, True, False, False]  # FC keeps its ids; the CNN's settings join its runs' ids
    bad = {**base["table"], "arch": {**arch, "CNN": {"model": "cnn", "options": {"phase": {"evry": 2}}}}}
    with pytest.raises(
        ConfigError, match=r"\[table.arch.CNN.options.phase\]: unknown key 'evry'; did you mean 'every'"
    ):
        expand(parse_preset({**base, "table": bad}))
    stray = {**base["table"], "arch": {**arch, "CNN": {"model": "cnn", "options": {"robustnes": {"limit": 2}}}}}
    with pytest.raises(ConfigError, match=r"\[table.arch.CNN.options\]: settings for 'robustnes', which is not"):
        expand(parse_preset({**base, "table": stray}))


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_runs_say_in_their_meta_what_they_computed_in(monkeypatch, native):
    monkeypatch.setattr(perf, "bf16_support", lambda device="cpu": native)
    specs = expand(
        parse_preset(_table(train={"dataset": "synthetic", "epochs": 1, "max_steps": 1, "precision": "auto"}))
    )
    expected = "bf16" if native else "fp32"
    alone = run_planned(Task((specs[0],), stacked=False))
    stacked = run_planned(Task(tuple(specs), stacked=True))
    assert [o.meta.get("precision") for o in [*alone, *stacked]] == [expected] * 3
    assert stacked[0].meta["stacked"] == {"runs": 2, "index": 0}


def test_diverged_run_is_recorded_with_its_phase():
    (spec, _) = expand(parse_preset(_table(train={"dataset": "synthetic", "epochs": 1, "max_steps": 3, "lr": 1e6})))
    records = PARTS.get("table").run(spec)
    assert records[-1]["run_status"] == "diverged" and records[-1]["phase"] == "divergent"


class _StepCounter(RunHook):
    """A hook counting SGD steps; it puts a made-up phase and the count in the final record."""

    def __init__(self, spec: RunSpec) -> None:
        self.steps = 0

    def on_step_end(self, state) -> None:
        self.steps += 1

    def summary(self, result) -> dict:
        return {"phase": "decay", "hook_steps": self.steps}


def test_run_hook_adds_fields_to_the_final_record_without_changing_training(tiny_specs, unstacked_records, monkeypatch):
    monkeypatch.setitem(RUN_HOOKS._items, "test-steps", _StepCounter)
    spec = tiny_specs[0]
    records = PARTS.get("table").run(_with(spec, hooks=("test-steps",)))
    assert records[-1]["phase"] == "decay" and records[-1]["hook_steps"] == 5
    strip = ("run_id", "phase", "hook_steps")
    clean = [{k: v for k, v in r.items() if k not in strip} for r in records]
    assert clean == [{k: v for k, v in r.items() if k not in strip} for r in unstacked_records[spec.run_id]]


def test_phase_hook_classifies_ninr_runs_only(tiny_specs, unstacked_records):
    for spec in (tiny_specs[0], tiny_specs[2]):  # FC None, FC in-NINR
        records = PARTS.get("table").run(_with(spec, hooks=("phase",)))
        training = [r for r in records if "kind" not in r]
        same = [{k: v for k, v in r.items() if k != "run_id"} for r in training[:-1]]
        assert same == [{k: v for k, v in r.items() if k != "run_id"} for r in unstacked_records[spec.run_id][:-1]]
        (final,) = final_records(records)
        curvature = [r for r in records if r.get("kind") == "curvature"]
        if spec.options.train.methods:
            assert final["phase"] in PHASES and final["phase_reason"] and final["k_max"] > 0
            assert final["phase_nodes"] == {final["phase_node"]: final["phase"]}  # in-NINR: one node, "fc1"
            assert curvature and {r["node"] for r in curvature} == {"fc1"} and curvature[0]["step"] == 0
            assert all(r["k"] >= 0 and not r["final"] for r in curvature)
        else:
            assert "phase" not in final and not curvature  # no NIWs: no NIN phase (the table shows n/a)


# ---------------------------------------------------------------- executors and stacks


def fail_on_cnn_ninr_seed_1(task: Task) -> list:
    """A task function that fails on the task holding one run (module level: picklable for workers)."""
    if any((s.arch, s.label, s.seed) == ("CNN", "in-NINR (Decay)", 1) for s in task.specs):
        raise RuntimeError("injected failure")
    return run_planned(task)


def test_a_failing_run_stops_a_pool_but_keeps_every_finished_run(tiny_specs, reference_records, pool, tmp_path):
    store = ResultStore(tmp_path / "failing")
    with pytest.raises(RuntimeError, match="injected"):
        run_specs(tiny_specs, store, pool, run_fn=fail_on_cnn_ninr_seed_1)
    kept = records_by_id(store)
    assert tiny_specs[7].run_id not in kept and len(kept) >= 1
    assert all(kept[i] == reference_records[i] for i in kept)
    assert not list(store.runs_dir.glob(".*.tmp"))
    assert store.sessions()[-1]["status"] == "failed: RuntimeError: injected failure"


_FAILING = threading.Event()


def fail_while_another_runs(task: Task) -> list:
    """FC | None | seed 1 fails while FC | None | seed 0 runs; that one finishes half a second after the failure."""
    spec = task.specs[0]
    if (spec.arch, spec.label, spec.seed) == ("FC", "None", 1):
        _FAILING.set()
        raise RuntimeError("injected failure")
    if (spec.arch, spec.label, spec.seed) == ("FC", "None", 0):
        _FAILING.wait(timeout=10)  # the two runs go to the two workers; the timeout only guards against a hang
        time.sleep(0.5)
    return run_planned(task)


def test_a_failing_run_on_dask_keeps_the_runs_executing_beside_it(tiny_specs, unstacked_records, tmp_path):
    pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'ninr[dask]')")
    _FAILING.clear()
    store = ResultStore(tmp_path / "table")
    with DaskExecutor(local_workers=2, processes=False) as dask, pytest.raises(RuntimeError, match="injected"):
        run_specs(tiny_specs[:3], store, dask, run_fn=fail_while_another_runs, stack=False)
    kept = store.run_ids()
    assert tiny_specs[0].run_id in kept and tiny_specs[1].run_id not in kept
    assert all(store.read(i).records == unstacked_records[i] for i in kept)
    assert store.sessions()[-1]["status"] == "failed: RuntimeError: injected failure"


@pytest.mark.slow
def test_dask_worker_processes_give_the_in_process_records(tiny_specs, reference_records, tmp_path):
    pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'ninr[dask]')")
    store = ResultStore(tmp_path / "table")
    with make_executor(dask_local=2) as dask:
        assert isinstance(dask, DaskExecutor) and "LocalCluster(2 processes)" in dask.describe()
        assert run_specs(tiny_specs, store, dask) == (8, 0)
    assert records_by_id(store) == reference_records


def assert_close_across_paths(got: dict, want: dict, key: str, *, n_test: int) -> None:
    """``got[key]`` as computed on another code path (stacked against one by one): the same float32 sums in other
    orders, so floats agree to rel 1e-4 (per-step rounding ~1e-6 relative over a few steps: the analysis and the
    measurements are at ``RTOL`` in tests/test_stacked.py), and an accuracy within one example of the set it counts
    (a prediction flips only where two logits lie within ~1e-6 of each other); anything else is equal."""
    value = want[key]
    if key.endswith("_acc") and isinstance(value, float) and not math.isnan(value):
        examples = want["examples"] if key == "train_acc" else n_test
        assert abs(got[key] - value) <= 1 / examples + 1e-12, key
    elif isinstance(value, float):
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True), key
    else:
        assert got[key] == value, key


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
            for key in want:
                assert_close_across_paths(got, want, key, n_test=64)  # configs/tiny.toml: n_test = 64


def _labels(tasks: list[Task]) -> list[tuple]:
    """``("FN0", "FN1", "stack")``: arch, row and seed of each run of a task, and whether it is a stack."""
    return [tuple(f"{s.arch[0]}{s.label[0]}{s.seed}" for s in t.specs) + ("stack",) * t.stacked for t in tasks]


def test_plan_groups_stacks_by_family_and_balances_them_over_workers(tiny_specs, caplog):
    with caplog.at_level(logging.INFO, logger="ninr.train.stacking"):
        one = plan_tasks(tiny_specs)
    cnn = [("CN0",), ("CN1",), ("Ci0",), ("Ci1",)]
    assert _labels(one) == [("FN0", "FN1", "Fi0", "Fi1", "stack"), *cnn]
    assert "CNN | None | seed 0: one by one: model 'cnn' has convolutions" in caplog.text
    assert "FC | None | seed 0 and 3 more: 1 stack(s) of 4 runs" in caplog.text
    # Every worker gets its share of each stack (near-equal consecutive chunks), never more than max_stack.
    assert _labels(plan_tasks(tiny_specs, workers=2)) == [("FN0", "FN1", "stack"), ("Fi0", "Fi1", "stack"), *cnn]
    assert [len(t.specs) for t in plan_tasks(tiny_specs, workers=3)][:3] == [2, 1, 1]
    assert [len(t.specs) for t in plan_tasks(tiny_specs, workers=8)][:4] == [1, 1, 1, 1]
    assert [len(t.specs) for t in plan_tasks(tiny_specs, max_stack=3)][:2] == [2, 2]
    assert all(not t.stacked for t in plan_tasks(tiny_specs, stack=False))
    # Only runs with the same hooks and hook settings share a stack.
    hooked = [_with(s, hooks=("phase",)) for s in tiny_specs[:2]]
    mixed = plan_tasks([*hooked, *tiny_specs[2:4]])
    assert [[s.options.hooks for s in t.specs] for t in mixed] == [[("phase",)] * 2, [(), ()]]
    with pytest.raises(ConfigError, match="`workers` must be"):
        plan_tasks(tiny_specs, workers=0)


def test_runs_without_a_training_config_to_stack_by_are_planned_one_by_one(tiny_specs, tmp_path):
    specs = expand(load_preset(TINY), "phases")
    assert not PARTS.get("phases").stackable() and PARTS.get("table").stackable()
    for stack in (True, False):
        tasks = plan_tasks(specs, workers=2, stack=stack)
        assert [t.specs for t in tasks] == [(s,) for s in specs] and not any(t.stacked for t in tasks)
    # A table run that writes its run directory trains on its own; the other FC runs still stack.
    first = tiny_specs[0]
    writing = RunSpec(
        first.part, first.study, first.arch, first.label, first.seed, first.options, artifacts=str(tmp_path)
    )
    tasks = plan_tasks([writing, *tiny_specs[1:4]])
    assert [(len(t.specs), t.stacked) for t in tasks] == [(3, True), (1, False)] and tasks[1].specs == (writing,)


def test_mixed_sweep_stacks_what_it_can_and_logs_why_the_rest_goes_one_by_one(tmp_path, caplog, monkeypatch):
    """FC x {None, L2, Dropout, in-NINR, CDT} x 2 seeds with the phase hook, Dropout declared without a stacked
    form (as a plugin's method may be; the built-in one stacks): the dropout runs go one by one."""
    monkeypatch.setattr(Dropout, "stackable", False)
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
    specs = expand(parse_preset(doc, name="mixed"))
    stacked, alone = ResultStore(tmp_path / "stacked"), ResultStore(tmp_path / "alone")
    with caplog.at_level(logging.INFO, logger="ninr.train.stacking"):
        assert run_specs(specs, stacked, Executor()) == (10, 0)
    assert "Dropout | seed 0: one by one: method(s) ['dropout'] have no stacked form" in caplog.text
    assert run_specs(specs, alone, Executor(), stack=False) == (10, 0)
    for spec in specs:
        got, want = stacked.read(spec.run_id), alone.read(spec.run_id)
        assert ("stacked" in got.meta) == (spec.label != "Dropout")
        if spec.label == "Dropout":
            assert got.records == want.records  # trained one by one in both stores: one kernel, the same bits
            continue
        assert got.meta["stacked"]["runs"] == 8
        (final,), (expected,) = final_records(got.records), final_records(want.records)
        assert_close_across_paths(final, expected, "test_acc", n_test=32)
        # The phase hook ran on the stacked run too. Its verdict compares statistics of the NIW trajectory (k_max
        # among them, checked below) with fixed thresholds; the paths' ~1e-6 relative difference moves a verdict
        # only for a statistic within ~1e-6 of its threshold, a chance of order 1e-6 per statistic.
        assert final.get("phase") == expected.get("phase")
        if "k_max" in expected:
            assert final["k_max"] == pytest.approx(expected["k_max"], rel=1e-3)


def test_stack_setting_in_the_preset_and_on_the_command_line(tmp_path):
    for stack, stacked in ((None, True), (True, True), (False, False)):
        preset = parse_preset(_table() if stack is None else _table(stack=stack))
        assert preset.section("table").stack is stack
        assert stacking("table", preset.section("table")) is stacked
        assert stacking("table", preset.section("table"), enabled=False) is False
        summary = run_study(preset, "table", tmp_path / str(stack), Executor(), quiet=True)
        assert [("stacked" in r.meta) for r in summary.store.results()] == [stacked, stacked]
    phases = parse_preset({"name": "t", "phases": {"seeds": [0], "stack": True, "options": {"linear": {"steps": 5}}}})
    with pytest.raises(ConfigError, match=r"\[phases\]\.stack: the phases part computes its runs one by one"):
        run_study(phases, "phases", tmp_path / "phases", Executor(), quiet=True)
    assert not (tmp_path / "phases").exists()
    out = tmp_path / "res"
    assert main(["sweep", str(TINY), "--out", str(out), "--only", "table", "--quiet", "--no-stack"]) == 0
    assert all("stacked" not in r.meta for r in ResultStore(out / "table").results())
    assert ResultStore(out / "table").sessions()[-1]["stacks"] == 0


def test_make_executor_choices():
    assert type(make_executor()) is Executor and type(make_executor(workers=1)) is Executor
    with pytest.raises(ConfigError, match="choose one executor"):
        make_executor(workers=2, dask_local=2)
    with pytest.raises(ConfigError, match="`workers` must be"):
        PoolExecutor(0)
    pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'ninr[dask]')")
    with pytest.raises(ConfigError, match="exactly one of `scheduler`"):
        DaskExecutor()


# ---------------------------------------------------------------- interrupt and resume of stacks


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
    counting = FailOnNth(None)
    assert run_specs(tiny_specs, store, Executor(), resume=True, run_fn=counting) == (6, 2)
    first = counting.tasks[0]
    assert first.stacked and [s.run_id for s in first.specs] == (fc[2:] if invariant else fc)
    assert {i: store.path(i).stat().st_mtime_ns for i in fc[:2]} == stamps
    assert records_by_id(store) == reference_records
    assert [store.read(i).meta["stacked"]["runs"] for i in fc] == ([4, 4, 2, 2] if invariant else [4] * 4)


def test_resume_relabels_renamed_rows_without_recomputing(tiny_specs, tmp_path):
    store = ResultStore(tmp_path / "table")
    run_specs(tiny_specs[:2], store, Executor())
    renamed = [_with(s, label="Baseline") for s in tiny_specs[:2]]
    assert run_specs(renamed, store, Executor(), resume=True, run_fn=FailOnNth(1)) == (0, 2)
    assert {r["label"] for r in store.records()} == {"Baseline"}
    assert {r.spec["label"] for r in store.results()} == {"Baseline"}


def test_redo_recomputes_and_replaces_finished_runs(tiny_specs, tmp_path):
    store = ResultStore(tmp_path / "table")
    run_specs(tiny_specs[:1], store, Executor())
    before = store.read(tiny_specs[0].run_id)
    counting = FailOnNth(None)
    assert run_specs(tiny_specs[:1], store, Executor(), redo=True, run_fn=counting) == (1, 0)
    assert counting.calls == 1 and store.read(tiny_specs[0].run_id).records == before.records


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


def test_a_stacked_task_prints_a_line_per_epoch_and_the_session_asks_for_it_unless_quiet(tiny_specs, capsys):
    fc = tuple(s for s in tiny_specs if s.arch == "FC")
    assert len(fc) > 1
    silent = run_planned(Task(fc, stacked=True))
    assert "epoch" not in capsys.readouterr().err
    shown = run_planned(Task(fc, stacked=True, progress=True))
    lines = [line for line in capsys.readouterr().err.splitlines() if "epoch" in line]
    epochs = fc[0].options.train.epochs
    assert len(lines) == epochs
    assert f"and {len(fc) - 1} more: epoch {epochs}/{epochs}, {len(fc)} runs" in lines[-1]
    # the same process and code path with one more observer callback: the same records
    assert [o.records for o in shown] == [o.records for o in silent]
    for progress in (True, False):
        tasks = plan_session(tiny_specs, Executor(), set(), progress=progress)
        assert {t.progress for t in tasks if t.stacked} == {progress}
        assert not any(t.progress for t in tasks if not t.stacked)


def test_cli_sweep_then_resume(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["sweep", str(TINY), "--out", str(out), "--quiet"]) == 0
    for part in ("table", "phases"):
        assert len(ResultStore(out / part).run_ids()) == 8 and (out / part / "records.csv").exists()
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(TINY), "--out", str(out), "--quiet"])
    assert exc.value.code == 2
    assert main(["sweep", str(TINY), "--out", str(out), "--quiet", "--resume"]) == 0
    assert ResultStore(out / "table").sessions()[-1]["new"] == 0
    err = capsys.readouterr().err
    assert "table: 8 runs (0 new, 8 resumed)" in err and "phases: 8 runs (0 new, 8 resumed)" in err


def test_cli_reproduce_writes_the_report_and_report_rebuilds_it(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="reports draw figures (pip install 'ninr[plot]')")
    out = tmp_path / "res"
    assert main(["reproduce", "--preset", str(TINY), "--out", str(out), "--only", "table", "--quiet"]) == 0
    html = (out / "report" / "report.html").read_text()
    assert '<table id="table-comparison">' in html and "in-NINR (Decay)" in html
    assert (out / "report" / "records" / "table.csv").exists()
    assert "| FC | None |" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    for name in ("tables/table_comparison.csv", "records/table.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (out / "report" / name).read_bytes(), name


# ---------------------------------------------------------------- ninr store migrate


def test_store_migrate_renames_legacy_runs_and_nothing_retrains(tiny_results, tmp_path, capsys):
    """The tiny preset's runs written under their earlier ids: migrated, they carry the current ids and records."""
    preset = load_preset(TINY)
    legacy_root = tmp_path / "legacy"
    for part in ("table", "phases"):
        reference = ResultStore(tiny_results / part)
        store = ResultStore(legacy_root / part)
        legacy_ids = []
        for spec in expand(preset, part):
            old = legacy_id(spec)
            assert old is not None and old != spec.run_id
            result = reference.read(spec.run_id)
            records = [{**r, "run_id": old} for r in result.records]
            store.write(RunResult(old, {**result.spec, "run_id": old}, records, result.wall_time_s, result.meta))
            legacy_ids.append(old)
        store.write_study({**reference.read_study(), "run_ids": legacy_ids})
    assert main(["store", "migrate", str(legacy_root), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("8 renamed, 0 already current, 0 not in the preset") == 2
    assert len(ResultStore(legacy_root / "table").run_ids() & {s.run_id for s in expand(preset)}) == 0
    assert main(["store", "migrate", str(legacy_root)]) == 0
    assert capsys.readouterr().out.count("8 renamed") == 2
    for part in ("table", "phases"):
        specs = expand(preset, part)
        store, reference = ResultStore(legacy_root / part), ResultStore(tiny_results / part)
        assert store.run_ids() == {s.run_id for s in specs}
        assert store.read_study()["run_ids"] == [s.run_id for s in specs]
        assert records_by_id(store) == records_by_id(reference)
        assert all(store.read(s.run_id).spec == json.loads(json.dumps(s.to_dict())) for s in specs)
        assert run_specs(specs, store, Executor(), resume=True, run_fn=FailOnNth(1)) == (0, 8)
    assert main(["store", "migrate", str(legacy_root)]) == 0
    assert capsys.readouterr().out.count("0 renamed, 8 already current") == 2
