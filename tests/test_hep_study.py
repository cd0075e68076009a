"""The study end to end on a tiny synthetic events file (no Pythia): records, table, resume, CLI, configs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from ninr.errors import ConfigError
from ninr.hep.config import DetectorConfig, DetectorShift, GenerationConfig, shift_effects
from ninr.hep.events import toy_candidates
from ninr.hep.gun import GunConfig
from ninr.hep.study import (
    MethodEntry,
    RootInputs,
    StudyConfig,
    effect_test_set,
    load_study_config,
    prepare_data,
    study_config_from_dict,
    train_one,
)
from ninr.report import build_report
from ninr.report.hep import rejection_table, summary_rows
from ninr.studies import ResultStore, final_records
from ninr.studies.executors import Executor
from ninr.studies.parts.hep import config_to_tables, study_specs
from ninr.studies.session import run_part, single_info

HAS_H5PY = importlib.util.find_spec("h5py") is not None
needs_h5py = pytest.mark.skipif(not HAS_H5PY, reason="h5py not installed (pip install 'ninr[hep]')")
REPO = Path(__file__).resolve().parents[1]


def test_quick_preset_parses_and_names_every_method() -> None:
    config = load_study_config(REPO / "configs" / "hep-quick.toml")
    assert config.model == "resnet18" and config.model_kwargs == {"width": 8}
    assert config.simulation.image_shape == (2, 16, 16)
    labels = [m.label for m in config.methods]
    assert labels[:3] == ["none", "l2", "dropout"] and "full-ninr-correlated" in labels
    assert config.generation.common_settings == ("PartonLevel:MPI = off",)


def test_unknown_keys_and_tables_are_errors_with_suggestions() -> None:
    with pytest.raises(ConfigError, match=r"\[simulation\] has no setting 'em_cell'; did you mean 'em_cells'"):
        study_config_from_dict({"simulation": {"em_cell": 8}})
    with pytest.raises(ConfigError, match=r"unknown table \[sudy\]"):
        study_config_from_dict({"sudy": {}})
    with pytest.raises(ConfigError, match="`methods` must be a non-empty list with distinct labels"):
        StudyConfig(methods=(MethodEntry("a", "none"), MethodEntry("a", "none")))


def tiny_config(events: Path, methods: tuple[MethodEntry, ...]) -> StudyConfig:
    return StudyConfig(
        generation=GenerationConfig(n_signal_events=0, n_background_events=0),
        simulation=DetectorConfig(em_cells=8, had_cells=2),
        shift=DetectorShift(),
        methods=methods,
        model_kwargs={"width": 4},
        seeds=(0,),
        epochs=2,
        batch_size=32,
        events=str(events),
    )


@needs_h5py
def test_study_trains_every_method_and_reports_both_test_sets(tmp_path: Path) -> None:
    from ninr.hep.datasets import write_events

    methods = (
        MethodEntry("none", "none"),
        MethodEntry("in-ninr", "in-ninr", {"sigma": 0.5, "per": "pixel"}),
        MethodEntry("full-ninr-correlated", "full-ninr", {"sigma": 0.5, "per": "pixel", "distribution": "correlated"}),
    )
    config = tiny_config(tmp_path / "ev.h5", methods)
    write_events(tmp_path / "ev.h5", toy_candidates(120), config.generation)
    out = tmp_path / "out"
    specs = study_specs(config, "hep", artifacts=str(out))
    assert [(s.label, s.seed) for s in specs] == [(m.label, 0) for m in methods]
    store = ResultStore(out / "hep")
    info = single_info("hep", specs, {"study": "tiny"}, "test")
    summary = run_part(specs, store, Executor(), info, quiet=True, stack=False)
    assert (summary.total, summary.new, summary.resumed) == (3, 3, 0)
    records = final_records(store.records([s.run_id for s in specs]))
    assert [(r["method"], r["test_set"]) for r in records] == [
        (m.label, ts) for m in methods for ts in ("simulation", "data")
    ]
    for r in records:
        assert r["status"] == r["run_status"] == "completed" and r["n_test"] == 36
        assert 0 <= r["auc"] <= 1 and r["rejection@70"] >= 1
        assert r["rejection@70"] == (math.inf if r["bkg_eff@70"] == 0 else pytest.approx(1 / r["bkg_eff@70"]))
        assert len(r["roc_bkg_eff"]) == len(r["roc_signal_eff"]) == 20
    # the synthetic task (isolated photon vs photon pair + hadron) is learnable even in two epochs
    assert max(r["auc"] for r in records if r["test_set"] == "simulation") > 0.8
    for m in methods:
        config_json = json.loads((out / "runs" / f"{m.label}-seed0" / "config.json").read_text())
        assert config_json["config"]["model_kwargs"] == {"width": 4}
    table = rejection_table(records)
    assert [row[0] for row in table.cells] == [m.label for m in methods]
    report = build_report(out)
    assert [s.body.part for s in report.sections] == ["hep"]
    assert report.sections[0].body.tables[0].to_markdown() == table.to_markdown()
    # a rerun resumes: finished runs are read back, not trained again
    again = run_part(specs, store, Executor(), info, resume=True, quiet=True, stack=False)
    assert (again.new, again.resumed) == (0, 3)
    assert final_records(store.records([s.run_id for s in specs])) == records


def test_table_aggregates_seeds_side_by_side() -> None:
    base = {"auc": 0.9, "rejection@70": 10.0, "method": "none", "efficiencies": [0.7]}
    recs = [
        {**base, "seed": s, "test_set": ts, "rejection@70": v}
        for s, (ts, v) in enumerate([("simulation", 10.0), ("simulation", 20.0), ("data", 4.0), ("data", 6.0)])
    ]
    recs = [dict(r, seed=r["seed"] % 2) for r in recs]
    rows = summary_rows(recs, (0.7,))
    assert rows[0]["simulation/rejection@70"] == pytest.approx((15.0, math.sqrt(50.0)))
    assert rows[0]["data/rejection@70"] == pytest.approx((5.0, math.sqrt(2.0)))
    table = rejection_table(recs)
    assert table.headers == (
        "method", "seeds", "simulation AUC", "simulation 1/εB@70%", "data AUC", "data 1/εB@70%",
    )  # fmt: skip
    # a spread of zero is not shown; a mean over seeds is shown with its sample std
    assert "| none | 2 | 0.900 | 15.0 ± 7.1 | 0.900 | 5.0 ± 1.4 |" in table.to_markdown()


@needs_h5py
def test_cli_train_and_generate_reuse_or_refuse_the_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ninr.cli import main
    from ninr.hep.datasets import write_events

    toml = tmp_path / "study.toml"
    toml.write_text(
        "[generation]\nn_signal_events = 0\nn_background_events = 0\n"
        "[simulation]\nem_cells = 8\nhad_cells = 2\n"
        "[study]\nmodel_kwargs = { width = 4 }\nseeds = [0]\nepochs = 1\n"
        '[[methods]]\nlabel = "none"\nname = "none"\n'
    )
    config = load_study_config(toml)
    write_events(tmp_path / "out" / "events.h5", toy_candidates(60), config.generation)
    assert main(["hep", "generate", "--config", str(toml), "--out", str(tmp_path / "out")]) == 0
    assert "nothing to do" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["hep", "train", "--config", str(toml), "--out", str(out)]) == 0
    assert "| none | 1 |" in capsys.readouterr().out
    store = ResultStore(out / "hep")
    assert len(store.run_ids()) == 1 and (out / "runs" / "none-seed0" / "config.json").is_file()
    assert (out / "report" / "report.md").is_file()
    # a second call keeps the finished run: the session trains nothing
    assert main(["hep", "train", "--config", str(toml), "--out", str(out)]) == 0
    assert "| none | 1 |" in capsys.readouterr().out
    assert [(s["new"], s["status"]) for s in store.sessions()] == [(1, "completed"), (0, "completed")]
    other = dataclasses.replace(config.generation, seed=99)
    write_events(tmp_path / "elsewhere.h5", toy_candidates(10), other)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "hep",
                "train",
                "--config",
                str(toml),
                "--out",
                str(tmp_path / "o2"),
                "--events",
                str(tmp_path / "elsewhere.h5"),
            ]
        )
    assert exc.value.code == 1 and "different config (differs in seed: 99 -> 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["hep", "train", "--config", str(toml), "--out", str(tmp_path / "o3"), "--methods", "nnoe"])
    assert exc.value.code == 2 and "did you mean 'none'" in capsys.readouterr().err


def effect_config(**study: object) -> StudyConfig:
    """A tiny particle-gun study (no Pythia, no files) whose "simulation" has no cell noise."""
    return StudyConfig(
        generation=GunConfig(n_signal_events=40, n_background_events=40),
        simulation=DetectorConfig(
            window_eta=0.2, window_phi=0.2, em_cells=8, had_cells=2, em_cell_noise_gev=0.0, had_cell_noise_gev=0.0
        ),
        shift=DetectorShift(extra_crosstalk=0.01, extra_dead_cell_fraction=0.01),
        methods=(MethodEntry("none", "none"),),
        model_kwargs={"width": 4},
        seeds=(0,),
        epochs=1,
        batch_size=32,
        **study,  # type: ignore[arg-type]
    )


def test_single_effect_test_sets_hold_each_effect_alone() -> None:
    config = effect_config(single_effect_tests=True)
    data = prepare_data(config)
    names = list(data.extra_test_sets)
    assert names == [effect_test_set(e) for e in shift_effects(config.simulation, config.shift)]
    assert names[0] == "data: energy scale only" and "data: shower width only" in names
    x_sim, y_sim = data.dataset.x_test, data.dataset.y_test
    for x, y in data.extra_test_sets.values():
        assert x.shape == x_sim.shape and torch.equal(y, y_sim)
    # the sets share the "simulation" test draws: without cell noise, energy scale alone is the simulation images
    # times the scale (float32 products: within a few 2^-24 relative)
    x_scale, _ = data.extra_test_sets["data: energy scale only"]
    s = config.shift
    torch.testing.assert_close(x_scale[:, 0], s.energy_scale * x_sim[:, 0], rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(x_scale[:, 1], s.energy_scale * s.had_scale * x_sim[:, 1], rtol=1e-6, atol=1e-12)
    assert not torch.equal(data.extra_test_sets["data: shower width only"][0], x_sim)
    assert set(data.info["effect_detectors"]) == set(names)
    assert not prepare_data(effect_config()).extra_test_sets  # off by default


def test_the_switch_is_left_out_of_run_ids_while_off() -> None:
    off, on = effect_config(), effect_config(single_effect_tests=True)
    assert "single_effect_tests" not in off.to_dict() and on.to_dict()["single_effect_tests"] is True
    ids_off, ids_on = ({s.run_id for s in study_specs(c, "hep")} for c in (off, on))
    assert ids_off.isdisjoint(ids_on)  # other records (more test sets): other runs
    assert study_config_from_dict(config_to_tables(on)) == on
    with pytest.raises(ConfigError, match="`single_effect_tests` must be true or false"):
        effect_config(single_effect_tests="yes")
    with pytest.raises(ConfigError, match="`single_effect_tests` must be false with"):
        effect_config(single_effect_tests=True, root=RootInputs("a.root", "b.root"))


@pytest.mark.slow  # ~15 s: one short training, then every test set scored with its bootstrap
def test_each_effect_alone_is_one_record_per_test_set() -> None:
    config = effect_config(single_effect_tests=True)
    data = prepare_data(config)
    records = train_one(config, config.methods[0], 0, data)
    assert [r["test_set"] for r in records] == ["simulation", "data", *data.extra_test_sets]
    assert all(r["n_test"] == len(data.dataset.y_test) and 0 <= r["auc"] <= 1 for r in records)


def test_excluded_origins_leave_the_data_before_the_split(monkeypatch: pytest.MonkeyPatch) -> None:
    # the gun's candidates are "hard" (photons) and "decay" (pi0/eta photons): exclude the decays and only the
    # signal is left, split as before; the setting joins the ids only when set
    config = effect_config(exclude_origins=["decay"])
    assert config.exclude_origins == ("decay",) and "exclude_origins" not in effect_config().to_dict()
    assert study_config_from_dict(config_to_tables(config)) == config
    everything = prepare_data(effect_config())
    only_signal = prepare_data(config)
    n_signal = int(everything.dataset.y_train.sum() + everything.dataset.y_test.sum())
    assert len(only_signal.dataset.y_train) + len(only_signal.dataset.y_test) == n_signal
    assert bool((only_signal.dataset.y_train == 1).all()) and bool((only_signal.dataset.y_test == 1).all())
    ids = ({s.run_id for s in study_specs(c, "hep")} for c in (effect_config(), config))
    assert next(ids).isdisjoint(next(ids))
    for bad, match in (
        (["hard"], "`exclude_origins` must be one of"),
        (["isr", "isr"], "`exclude_origins` must be a list without repeats"),
    ):
        with pytest.raises(ConfigError, match=match):
            effect_config(exclude_origins=bad)
    with pytest.raises(ConfigError, match="`exclude_origins` must be empty with"):
        effect_config(exclude_origins=["isr"], root=RootInputs("a.root", "b.root"))
