"""`python -m app train CONFIG.json` in a real subprocess: stdout lines, stderr, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main

ROOT = Path(__file__).resolve().parents[1]

CLASSIFICATION_FIELDS = {"epoch", "train_loss", "val_loss", "train_acc", "val_acc",
                         "val_precision", "val_recall", "val_f1"}
REGRESSION_FIELDS = {"epoch", "train_loss", "val_loss", "train_r2", "val_r2"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def write_config(tmp_path: Path, config: dict | str) -> str:
    path = tmp_path / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return str(path)


def test_train_streams_one_json_line_per_epoch_then_done(tmp_path):
    config = {"dataset": {"name": "moons", "n_train": 40},
              "model": {"hidden": [8]},
              "train": {"epochs": 3, "batch_size": 16},
              "sweep": {"dropout": [0.0, 0.5]}}
    proc = run_cli(write_config(tmp_path, config))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    *epochs, done = lines
    assert len(epochs) == 2 * 3
    for row in epochs:
        assert row["event"] == "epoch"
        assert set(row) >= CLASSIFICATION_FIELDS
        assert row["run"] in (0, 1)
        assert 0 <= row["val_acc"] <= 1 and row["train_loss"] > 0
    for run in (0, 1):
        assert [r["epoch"] for r in epochs if r["run"] == run] == [1, 2, 3]
    assert done["event"] == "done"
    assert done["status"] == "done"
    assert [r["index"] for r in done["summary"]["runs"]] == [0, 1]
    assert {r["dropout"] for r in done["summary"]["sweep"]["rates"]} == {0.0, 0.5}
    # the final metrics in the summary are the last streamed epoch's
    last_of_run0 = [r for r in epochs if r["run"] == 0][-1]
    assert done["summary"]["runs"][0]["final"]["val_loss"] == last_of_run0["val_loss"]
    # the progress bar went to stderr, not stdout
    assert "6/6" in proc.stderr and "100%" in proc.stderr
    assert "%|" not in proc.stdout


def test_train_regression_reports_r2(tmp_path):
    config = {"dataset": {"name": "sine", "n_train": 30},
              "model": {"hidden": [8], "dropout": 0.0}, "train": {"epochs": 2}}
    proc = run_cli(write_config(tmp_path, config))
    assert proc.returncode == 0, proc.stderr
    *epochs, done = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["epoch"] for row in epochs] == [1, 2]
    for row in epochs:
        assert set(row) >= REGRESSION_FIELDS and row["run"] == 0
        assert "val_acc" not in row
    assert done["event"] == "done" and done["summary"]["metric"] == "val_r2"


@pytest.mark.parametrize(
    ("config", "field"),
    [({"model": {"dropout": 1.5}}, "model.dropout"),
     ({"dataset": {"name": "imagenet"}}, "dataset.name")],
)
def test_invalid_config_exits_2_naming_the_field(tmp_path, config, field):
    proc = run_cli(write_config(tmp_path, config))
    assert proc.returncode == 2
    assert f"{field}:" in proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_invalid_json_exits_2(tmp_path):
    proc = run_cli(write_config(tmp_path, '{"model": {"dropout": 0.5'))
    assert proc.returncode == 2
    assert "not valid JSON" in proc.stderr
    assert proc.stdout == ""


def test_binary_file_exits_2(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"\xff\xfe{\x00")
    proc = run_cli(str(path))
    assert proc.returncode == 2
    assert "not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [('{"train": {"epochs": 0}}', "train.epochs:"),
     ('{"dataset": {"name": "digits", "n_train": 2000}}', "dataset.n_train:"),
     ('{"model": {"hidden": [8], "dropout": [0.1, 0.2]}}', "model.dropout:"),
     ("[1, 2]", "config:"),
     ("not json", "not valid JSON"),
     ("", "not valid JSON")],
)
def test_more_invalid_configs_in_process(tmp_path, capsys, text, message):
    """The same entry point called in-process (cheaper than a subprocess per case)."""
    assert main(["train", write_config(tmp_path, text)]) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert out == ""


def test_missing_file_exits_2(tmp_path):
    proc = run_cli(str(tmp_path / "nope.json"))
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr and "nope.json" in proc.stderr
    assert proc.stdout == ""
