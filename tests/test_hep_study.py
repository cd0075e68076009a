"""The study end to end on a tiny synthetic events file (no Pythia): records, table, resume, CLI, configs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest

from ninr.errors import ConfigError
from ninr.hep.config import DetectorConfig, DetectorShift, GenerationConfig
from ninr.hep.events import toy_candidates
from ninr.hep.report import markdown_table, summary_rows
from ninr.hep.study import MethodEntry, StudyConfig, load_study_config, run_hep_study, study_config_from_dict

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
    records = run_hep_study(config, out_dir=tmp_path / "out")
    assert [(r["method"], r["test_set"]) for r in records] == [
        (m.label, ts) for m in methods for ts in ("simulation", "data")
    ]
    for r in records:
        assert r["status"] == "completed" and r["n_test"] == 36
        assert 0 <= r["auc"] <= 1 and r["rejection@70"] >= 1
        assert r["rejection@70"] == (math.inf if r["bkg_eff@70"] == 0 else pytest.approx(1 / r["bkg_eff@70"]))
        assert len(r["roc_bkg_eff"]) == len(r["roc_signal_eff"]) == 20
    # the synthetic task (isolated photon vs photon pair + hadron) is learnable even in two epochs
    assert max(r["auc"] for r in records if r["test_set"] == "simulation") > 0.8
    out = tmp_path / "out"
    assert (out / "table.md").read_text() == markdown_table(records, config.signal_efficiencies)
    assert (out / "roc.png").stat().st_size > 0 and (out / "runs" / "none-seed0" / "config.json").exists()
    assert json.loads((out / "study_config.json").read_text())["model_kwargs"] == {"width": 4}
    # a rerun resumes: finished runs are read back, not trained again
    again = run_hep_study(config, out_dir=out)
    assert again == records
    assert len((out / "records.jsonl").read_text().splitlines()) == len(records)


def test_table_aggregates_seeds_side_by_side() -> None:
    base = {"auc": 0.9, "rejection@70": 10.0, "method": "none"}
    recs = [
        {**base, "seed": s, "test_set": ts, "rejection@70": v}
        for s, (ts, v) in enumerate([("simulation", 10.0), ("simulation", 20.0), ("data", 4.0), ("data", 6.0)])
    ]
    recs = [dict(r, seed=r["seed"] % 2) for r in recs]
    rows = summary_rows(recs, (0.7,))
    assert rows[0]["simulation/rejection@70"] == pytest.approx((15.0, math.sqrt(50.0)))
    table = markdown_table(recs, (0.7,))
    assert "| none | 2 | 0.900 ± 0.000 | 15.0 ± 7.1 | 0.900 ± 0.000 | 5.0 ± 1.4 |" in table


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
    assert main(["hep", "train", "--config", str(toml), "--out", str(tmp_path / "out")]) == 0
    assert "| none | 1 |" in capsys.readouterr().out
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
