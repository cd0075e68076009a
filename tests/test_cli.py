"""The ``ninr`` command line, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ninr.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl", "summary.json"]
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
    assert f"run {meta['run_id']}: stopped" in stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--sigma", "-1"], "argument --sigma: must be a finite number >= 0, got -1"),
        (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
        (["--lr", "abc"], "argument --lr: must be a finite number > 0, got 'abc'"),
        (["--nin", "middle"], "argument --nin: invalid choice: 'middle'"),
        (["--model", "mpl"], "unknown model 'mpl'; did you mean 'mlp'?"),
        (["--method", "dropot"], "unknown method 'dropot'"),
        (["--param", "sigmaa=1"], "`--param sigmaa` must be a hyperparameter of a chosen method"),
        (["--dataset", "fashion"], "unknown dataset 'fashion'; did you mean 'fashion-mnist'?"),
    ],
)
def test_bad_arguments_exit_2_naming_argument_rule_and_value(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--dataset", "synthetic", "--max-steps", "1", "--epochs", "1"]
    code, _, stderr = run_cli(capsys, *base, *argv)
    assert code == 2
    assert expected in stderr


def test_existing_run_is_kept_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--max-steps", "2", "--epochs", "1", "--out", str(out), "--quiet"]
    assert run_cli(capsys, *args)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, stderr = run_cli(capsys, *args[:-3], "--seed", "3", "--out", str(out))
    assert code == 2 and "already holds a run" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


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
    ):
        assert word in stdout
    code, _, stderr = run_cli(capsys, "list", "modle")
    assert code == 2 and "did you mean 'model'" in stderr
