"""Reports from records alone: the comparison rule, the reference data, Markdown/CSV/HTML output.

Planted records (no training) with known means and stds are placed inside and outside the
poster's error bars; the table must label each one correctly.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import re
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from ninr.cli import main
from ninr.errors import DataError
from ninr.report import (
    build_report,
    compare,
    comparison_table,
    load_poster_reference,
    parse_reference_csv,
    sample_std,
    within_error_bars,
    write_report,
)
from ninr.report.comparison import agreement_counts, headline, outside_table
from ninr.report.reference import outside_results
from ninr.studies.store import ResultStore, RunResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def planted_records() -> list[dict]:
    """Final accuracies (fractions) per (arch, label, seed), chosen against the poster's numbers.

    FC None: poster 87.7 ± 2.6; ours 88.0, 90.0 -> 89.0 ± 1.414, |diff| 1.3 <= 2.95: within.
    FC L2: poster 89.9 ± 3.4; ours 80.0, 81.0 -> 80.5 ± 0.707, |diff| 9.4 > 3.47: outside.
    FC in-NINR (Decay): poster 89.1 ± 0.7; one seed 89.8 (std 0): |diff| 0.7 <= 0.7: within (boundary).
    CNN None: poster 91.0 ± 1.0; ours 91.5, 92.5 and a diverged seed: 92.0 ± 0.707, 1 diverged: within.
    CNN Mystery: no reference row.
    Intended phases: FC in-NINR (Decay) is meant to decay and does (in phase); CNN Mystery is meant to
    catapult and does in one seed of two; FC L2 names no phase.
    """
    expected = {"in-NINR (Decay)": "decay", "Mystery": "catapult"}
    plan = [
        ("FC", "None", [0.88, 0.90], [None, None]),
        ("FC", "L2", [0.80, 0.81], ["decay", "decay"]),
        ("FC", "in-NINR (Decay)", [0.898], ["decay"]),
        ("CNN", "None", [0.915, 0.925, math.nan], [None, None, "divergent"]),
        ("CNN", "Mystery", [0.5, 0.6], ["decay", "catapult"]),
    ]
    records = []
    for arch, label, values, phases in plan:
        for seed, (value, phase) in enumerate(zip(values, phases, strict=True)):
            status = "diverged" if math.isnan(value) else "completed"
            run_id = f"{len(records):012x}"
            common = {
                "run_id": run_id,
                "study": "planted",
                "part": "table",
                "arch": arch,
                "label": label,
                "seed": seed,
                "run_status": status,
                "expected_phase": expected.get(label),
            }
            records.append({**common, "epoch": 1, "step": 10, "test_acc": 0.5, "final": False})
            final = {**common, "epoch": 2, "step": 20, "test_acc": value, "final": True}
            if phase:
                final["phase"] = phase
            records.append(final)
    return records


def write_planted_store(root: Path) -> ResultStore:
    """A results directory holding the planted records as finished runs of a `table` part (no training)."""
    store = ResultStore(root / "table")
    by_run: dict[str, list[dict]] = {}
    for rec in planted_records():
        by_run.setdefault(rec["run_id"], []).append(rec)
    for run_id, recs in by_run.items():
        meta = {"versions": {"ninr": "0.1.0", "torch": "x"}, "machine": "Planted CPU, 2 cores, AVX2 (avx2)"}
        spec = {"arch": recs[0]["arch"], "label": recs[0]["label"], "options": {"train": {"precision": "fp32"}}}
        store.write(RunResult(run_id, spec, recs, 2.0, meta))
    store.write_study(
        {
            "preset": "planted",
            "description": "planted records",
            "source": "configs/planted.toml",
            "config_text": "name = 'planted'\n[table]\nseeds = 2\n",
            "part": "table",
            "title": "Clean accuracy compared with the poster",
            "seeds": [0, 1, 2],
            "run_ids": list(by_run),
        }
    )
    store.log_session({"label": "table", "elapsed_s": 12.5, "executor": "in-process", "new": len(by_run)})
    return store


# ---------------------------------------------------------------- the rule


def test_within_error_bars_is_the_combined_quadrature_rule():
    assert within_error_bars(89.0, 1.0, 87.7, 2.6)  # |1.3| <= 2.79
    assert not within_error_bars(80.5, 0.7, 89.9, 3.4)
    assert within_error_bars(90.0, 0.0, 87.0, 3.0)  # exactly on the bar counts
    assert within_error_bars(89.8, 0.0, 89.1, 0.7)  # boundary with float round-off (0.7000000000000028)
    assert not within_error_bars(91.0, 0.0, 89.0, 0.6)
    assert within_error_bars(1.0, 3.0, 5.0, 4.0) and not within_error_bars(1.0, 3.0, 6.01, 4.0)  # 3-4-5


def test_sample_std_matches_statistics_stdev():
    values = [88.1, 90.3, 86.0, 89.9]
    assert sample_std(values) == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert sample_std([88.0]) == 0.0 and sample_std([]) == 0.0


def test_planted_records_are_labelled_correctly():
    rows = {(r.arch, r.method): r for r in compare(planted_records())}
    fc_none = rows[("FC", "None")]
    assert fc_none.mean == pytest.approx(89.0) and fc_none.std == pytest.approx(math.sqrt(2))
    assert (fc_none.poster_mean, fc_none.poster_std) == (87.7, 2.6) and fc_none.within is True
    assert fc_none.phase == "n/a"
    assert rows[("FC", "L2")].within is False and rows[("FC", "L2")].phase == "decay"
    single = rows[("FC", "in-NINR (Decay)")]
    assert single.std == 0.0 and single.n_runs == 1 and single.within is True
    cnn = rows[("CNN", "None")]
    assert (cnn.n_runs, cnn.n_diverged) == (3, 1) and cnn.mean == pytest.approx(92.0) and cnn.within is True
    assert cnn.phase == "n/a 2, divergent 1"
    mystery = rows[("CNN", "Mystery")]
    assert (
        mystery.poster_mean is None
        and mystery.within is None
        and mystery.phase in ("decay 1, catapult 1", "catapult 1, decay 1")
    )
    assert list(rows) == [("FC", "None"), ("FC", "L2"), ("FC", "in-NINR (Decay)"), ("CNN", "None"), ("CNN", "Mystery")]


def test_all_diverged_row_has_no_mean():
    recs = [{"arch": "FC", "label": "None", "final": True, "run_status": "diverged", "test_acc": math.nan}]
    (row,) = compare(recs)
    assert row.mean is None and row.n_diverged == 1 and row.within is None


def test_comparison_table_cells_and_csv():
    reference = load_poster_reference()
    table = comparison_table(compare(planted_records(), reference), reference)
    md = table.to_markdown()
    assert "| FC | None | n/a | n/a | 2 | 0 | 89.0 ± 1.4 | 87.7 ± 2.6 | +1.3 | yes |" in md
    assert "| FC | L2 | decay | n/a | 2 | 0 | 80.5 ± 0.7 | 89.9 ± 3.4 | -9.4 | no |" in md
    assert "| FC | in-NINR (Decay) | decay | yes | 1 | 0 | 89.8 ± 0.0 | 89.1 ± 0.7 | +0.7 | yes |" in md
    assert "| CNN | None | n/a 2, divergent 1 | n/a | 3 | 1 | 92.0 ± 0.7 | 91.0 ± 1.0 | +1.0 | yes |" in md
    assert (
        "| CNN | Mystery | decay 1, catapult 1 | 1 of 2 (meant: catapult) | 2 | 0 | 55.0 ± 7.1 | n/a | n/a | n/a |"
        in md
    )
    assert "sqrt(std_ours² + std_poster²)" in table.note and "Diverged runs are excluded" in table.note
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert float(rows[0]["std"]) == pytest.approx(math.sqrt(2), rel=1e-12)  # unrounded in CSV
    assert rows[1]["within_error_bars"] == "no"
    assert [r["in_phase"] for r in rows] == ["n/a", "n/a", "yes", "n/a", "no"]


def test_a_row_without_phase_verdicts_is_not_counted_out_of_phase():
    recs = [{"arch": "FC", "label": "in-NINR (Decay)", "final": True, "test_acc": 0.8, "expected_phase": "decay"}]
    (row,) = compare(recs)
    assert row.in_phase is None and row.in_phase_text().startswith("n/a (no verdict")
    assert len(headline([row])) == 1, "no phase line without a verdict"
    judged = compare([{**recs[0], "phase": "decay"}])
    assert judged[0].in_phase is True and judged[0].in_phase_text() == "yes"


def test_headline_counts_cells_within_the_bars_and_rows_in_phase():
    rows = compare(planted_records())
    # Within: FC None, FC in-NINR (Decay), CNN None (Mystery has no reference); in phase: 1 of the 2 meant rows.
    assert headline(rows) == [
        "3 of 4 cells within the poster's error bars.",
        "1 of 2 rows in their intended phase in every run; not: CNN Mystery (decay 1, catapult 1).",
    ]
    decayed = [r if r.method != "Mystery" else replace(r, n_in_phase=2) for r in rows]
    assert headline(decayed)[1] == "2 of 2 rows in their intended phase in every run."
    assert headline([r for r in rows if r.expected_phase is None]) == ["2 of 3 cells within the poster's error bars."]


def test_differences_to_none_are_paired_by_seed_beside_the_posters():
    """Planted: FC None 88, 90 (seeds 0, 1); FC L2 80, 81: paired differences -8, -9, mean -8.5, sample std 0.707,
    t(0.975, 1) = 12.706 (t table) -> -8.5 ± 6.35 = [-14.85, -2.15]; the poster's L2 - None is 89.9 - 87.7 = +2.2:
    opposite sign, outside the interval. FC in-NINR (Decay): seed 0 only, 89.8 - 88 = +1.8 against the poster's
    +1.4: same sign, no interval. CNN Mystery has no poster row; the None rows are the baselines."""
    rows = {(r.arch, r.method): r for r in compare(planted_records())}
    l2 = rows[("FC", "L2")]
    assert l2.vs_none == pytest.approx((-8.0, -9.0))
    interval = l2.vs_none_interval
    assert interval is not None and interval.n == 2
    assert (interval.lo, interval.hi) == pytest.approx((-8.5 - 12.706 * 0.5, -8.5 + 12.706 * 0.5), abs=1e-3)
    assert l2.poster_vs_none == pytest.approx(2.2) and l2.sign_agrees is False and l2.size_agrees is False
    single = rows[("FC", "in-NINR (Decay)")]
    assert single.vs_none == pytest.approx((1.8,)) and single.vs_none_interval is None
    assert single.poster_vs_none == pytest.approx(1.4) and single.sign_agrees is True and single.size_agrees is None
    # CNN None's diverged seed 2 has no accuracy, so Mystery's two seeds pair with CNN None's seeds 0 and 1
    mystery = rows[("CNN", "Mystery")]
    assert mystery.vs_none == pytest.approx((50.0 - 91.5, 60.0 - 92.5)) and mystery.poster_vs_none is None
    assert rows[("FC", "None")].vs_none is None and rows[("FC", "None")].sign_agrees is None
    assert agreement_counts(list(rows.values())) == {"sign": 1, "sign_of": 2, "size": 0, "size_of": 1}


def test_the_table_note_counts_agreements_in_sign_and_size():
    reference = load_poster_reference()
    table = comparison_table(compare(planted_records(), reference), reference)
    md = table.to_markdown()
    assert "| -9.4 | no | -8.5 [-14.9, -2.1] | +2.2 | no | no |" in md
    assert "| +0.7 | yes | +1.8 (1 seed: no interval) | +1.4 | yes | n/a |" in md
    assert "| +1.3 | yes | baseline | n/a | n/a | n/a |" in md
    assert "the sign agrees with the poster's in 1 of 2 rows" in table.note and "in 0 of 1." in table.note
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert float(rows[1]["vs_none_mean"]) == pytest.approx(-8.5) and rows[1]["size_agrees"] == "no"


def test_a_zero_poster_difference_has_no_sign_and_an_exact_match_agrees_in_size():
    """CNN Dropout's poster difference to None is 91.0 - 91.0 = 0 (no sign); CNN L2's is 92.2 - 91.0 = +1.2. Ours
    are planted as 0 ± 1 and +1.2 ± 1 over three seeds, so both poster differences lie inside our intervals."""
    plan = {"None": (90.0, 91.0, 92.0), "Dropout": (89.0, 92.0, 92.0), "L2": (90.2, 93.2, 93.2)}
    recs = [
        {"arch": "CNN", "label": label, "seed": seed, "final": True, "test_acc": acc / 100}
        for label, values in plan.items()
        for seed, acc in enumerate(values)
    ]
    rows = {r.method: r for r in compare(recs)}
    assert rows["Dropout"].poster_vs_none == 0.0 and rows["Dropout"].sign_agrees is None
    assert rows["Dropout"].size_agrees is True and rows["L2"].size_agrees is True and rows["L2"].sign_agrees is True
    assert agreement_counts(list(rows.values())) == {"sign": 1, "sign_of": 1, "size": 2, "size_of": 2}


def test_outside_results_beside_our_none_rows():
    """Planted FC None 89.0 lies above the published MLPs of its size (86.8 to 88.33: Xiao et al.'s MLPClassifier
    rows with 100 hidden units and the README's 256-128-100), by 89.0 - 88.33 = 0.67 points; CNN None 92.0 lies
    inside the published two-convolution networks (87.6 to 92.5)."""
    table = outside_table(compare(planted_records()))
    assert "FC None: 89.0 % (95% interval 76.3 to 101.7, 2 seeds) lies 0.7 points above" in table.note
    assert "86.8 to 88.3 % (4 published results); its interval reaches the range" in table.note
    assert "CNN None: 92.0 % (95% interval 85.6 to 98.4, 2 seeds) lies inside" in table.note
    cells = {row[0]: row for row in table.cells}
    assert cells["MLPClassifier, relu, hidden [100]"][1:3] == ("87.1", "FC")
    assert cells["MLPClassifier, relu, hidden [100, 10]"][1] == "87.0" and cells["MLP 256-128-100"][1] == "88.33"
    assert cells["ResNet18 with augmentation"][2] == "context" and cells["ours: FC None"][1] == "89.0 ± 1.4 (2 seeds)"
    assert "arXiv:1708.07747" in table.note and "fashion-mnist-outside-results.md" in table.note
    assert [r.model for r in outside_results("CNN")] == [
        "2 conv + pooling (Keras)",
        "2 conv + ELU (PyTorch)",
        "2 conv, under 100k parameters",
    ]


# ---------------------------------------------------------------- reference data


def test_poster_reference_is_packaged_with_its_source():
    ref = load_poster_reference()
    assert len(ref.values) == 18
    assert "Noise Injection Node Regularization for Robust Learning" in ref.source
    assert ref.get("FC", "None").mean == 87.7 and ref.get("CNN", "CDT (0.4)").std == 6.4
    assert ref.get("FC", "nothing") is None


def test_reference_parser_rejects_bad_files():
    with pytest.raises(DataError, match="header"):
        parse_reference_csv("a,b\n1,2\n")
    with pytest.raises(DataError, match="row 2"):
        parse_reference_csv("arch,method,mean,std\nFC,None,x,1\n")
    with pytest.raises(DataError, match="std"):
        parse_reference_csv("arch,method,mean,std\nFC,None,1,-1\n")


# ---------------------------------------------------------------- the report


def test_report_builds_from_records_alone(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import ninr.train.run

    def no_training(*args, **kwargs):
        raise AssertionError("a report must not train")

    monkeypatch.setattr(ninr.train.run, "train", no_training)
    write_planted_store(tmp_path / "res")
    report = build_report(tmp_path / "res")
    (section,) = report.sections
    assert section.n_runs == 10 and section.wall_time_s == 12.5 and section.compute_time_s == 20.0
    assert [t.name for t in section.body.tables] == ["comparison", "poster_reference", "outside_reference"]
    assert [f.name for f in section.body.figures] == ["comparison", "curves"]
    assert all(f.png.startswith(PNG_MAGIC) for f in section.body.figures)
    assert any("1 diverged run(s) excluded" in n for n in section.body.notes)
    assert "3 of 4 cells within the poster's error bars." in section.body.notes

    paths = write_report(report, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "| FC | L2 | decay | n/a | 2 | 0 | 80.5 ± 0.7 | 89.9 ± 3.4 | -9.4 | no |" in md
    assert "| CNN | CDT (0.4) | 84.1 ± 6.4 |" in md  # the reference numbers
    assert "3 of 4 cells within the poster's error bars." in md and "1 of 2 rows in their intended phase" in md
    assert "![" in md and (tmp_path / "report" / "figures" / "table_comparison.png").exists()
    assert (tmp_path / "report" / "tables" / "table_comparison.csv").exists()
    assert "seeds | 0, 1, 2" in md and "wall time | 12.5 s over 1 session(s)" in md and "torch x" in md
    assert "| machine | Planted CPU, 2 cores, AVX2 (avx2) |" in md and "| precision | fp32 |" in md

    html = paths["html"].read_text()
    assert '<table id="table-comparison">' in html and '<table id="table-poster_reference">' in html
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert all(base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC) for src in images)
    # Self-contained: nothing is loaded from anywhere else.
    assert not re.search(r'(src|href)="(?!data:)', html) and "@import" not in html and "url(" not in html


def test_report_notes_unfinished_runs(tmp_path):
    pytest.importorskip("matplotlib")
    store = write_planted_store(tmp_path)
    info = store.read_study()
    store.write_study({**info, "run_ids": [*info["run_ids"], "ffffffffffff"]})
    (section,) = build_report(tmp_path).sections
    assert section.body.notes[0].startswith("Only 10 of 11 runs have finished")


def test_cli_report_rebuilds_without_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_planted_store(tmp_path / "res")
    assert main(["report", str(tmp_path / "res")]) == 0
    assert (tmp_path / "res" / "report" / "report.html").exists()
    assert (tmp_path / "res" / "report" / "records" / "table.csv").exists()
    assert "| FC | None | n/a | n/a | 2 | 0 | 89.0 ± 1.4 | 87.7 ± 2.6 | +1.3 | yes |" in capsys.readouterr().out
