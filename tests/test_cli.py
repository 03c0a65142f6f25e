"""The command line in real subprocesses: `train CONFIG.json` (stdout lines, stderr, exit
status), `submit --server URL CONFIG.json` against a real server, and `python -m app` beside
the console script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
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


# -- submit: to a real server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server whose runs may last 4 s at most (DP_MAX_RUN_SECONDS): a long run fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path_factory.mktemp("submit")
    env = {**os.environ, "DP_WORKERS": "1", "DP_THREADS_PER_WORKER": "1",
           "DP_MAX_RUN_SECONDS": "4"}
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                             "--data-dir", str(data)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as res:
                if json.loads(res.read())["workers_ready"]:
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(15)


def run_submit(server: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "submit", "--server", server, path],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_submit_follows_the_run_and_prints_its_share_link(server, tmp_path):
    config = {"dataset": {"name": "moons", "n_train": 40}, "model": {"hidden": [8]},
              "train": {"epochs": 3, "batch_size": 16}, "sweep": {"dropout": [0.0, 0.5]}}
    proc = run_submit(server, write_config(tmp_path, config))
    assert proc.returncode == 0, proc.stderr
    link = proc.stdout.strip()
    assert link.startswith(f"{server}/e/") and "\n" not in link
    assert "6/6" in proc.stderr and "100%" in proc.stderr  # the progress bar, epoch by epoch
    exp = json.loads(urllib.request.urlopen(f"{server}/api/experiments/{link.rsplit('/', 1)[1]}")
                     .read())
    assert exp["status"] == "done" and len(exp["runs"]) == 2


def test_submit_of_a_refused_config_names_the_field_and_exits_2(server, tmp_path):
    proc = run_submit(server, write_config(tmp_path, {"model": {"dropout": 1.5}}))
    assert proc.returncode == 2
    assert "model.dropout:" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_submit_of_a_run_that_fails_exits_1(server, tmp_path):
    long = {"dataset": {"n_train": 2000}, "train": {"epochs": 1000}}  # over the 4 s limit
    proc = run_submit(server, write_config(tmp_path, long))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().startswith(f"{server}/e/")  # the link, to see what it did
    assert "failed" in proc.stderr


def test_submit_to_no_server_exits_1(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    proc = run_submit(f"http://127.0.0.1:{port}", write_config(tmp_path, {}))
    assert proc.returncode == 1 and "cannot reach" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_names_the_command_as_it_was_started():
    proc = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m app")
    assert all(cmd in proc.stdout for cmd in ("serve", "train", "submit"))


def test_the_readme_python_example_runs_from_a_folder_holding_an_app_py(tmp_path):
    """The notebook API's module name never collides with a folder's own app.py (the wheel's
    install is checked the same way in tests/test_install.py)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python (notebooks)", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(line[4:] for line in section.splitlines() if line.startswith("    "))
    (tmp_path / "app.py").write_text('raise SystemExit("the folder\'s own app.py was imported")\n')
    (tmp_path / "example.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # as an editable install puts it on the path
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    *_, last_row, best = proc.stdout.strip().splitlines()
    assert "'run': 1" in last_row and "'epoch': 20" in last_row and best in ("0.0", "0.5")


def test_the_python_api_says_so_when_another_app_module_came_first(tmp_path):
    (tmp_path / "app.py").write_text("VALUE = 1\n")
    code = "import app\nimport dropout_playground\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert "ImportError: a module named 'app' is already imported" in proc.stderr


def test_the_python_api_validates_and_trains(tmp_path):
    import dropout_playground as dp

    config = {"dataset": {"name": "sine", "n_train": 30}, "model": {"hidden": [8]},
              "train": {"epochs": 2}}
    assert dp.validate(config)["train"]["batch_size"] == 32  # defaults filled in
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = dp.train(path, threads=1)
    assert result.status == "done" and result.runs == 1
    assert [r["epoch"] for r in result.rows] == [1, 2] and "val_r2" in result.rows[0]
    assert result.summary["metric"] == "val_r2"
    with pytest.raises(ValueError, match="dataset.name"):
        dp.validate({"dataset": {"name": "imagenet"}})
