"""The exported script against the engine as its oracle.

Each case exports one run, runs the script in a subprocess that cannot import `app` (so it
really is standalone), and compares every epoch's metrics and the test metrics with
`train.train` for the same run.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.ml.config import ExperimentConfig
from app.ml.export import script_for
from app.ml.runs import plan_runs
from app.ml.train import epoch_fields, train

TOL = 1e-4  # float32 sums done in another order (nn.Linear vs the stacked baddbmm) drift a little
ALLOWED_IMPORTS = {"__future__", "json", "math", "dataclasses", "functools", "typing",  # stdlib
                   "numpy", "torch", "sklearn"}

# Runs the script as `python script.py` would, except that `import app` fails: the project is
# installed in the venv, so without this an accidental import would go unnoticed.
NO_APP = ("import runpy, sys; sys.modules['app'] = None; "
          "runpy.run_path(sys.argv[1], run_name='__main__')")

# name -> (config, run to export)
CASES = {
    "moons_adam_input_dropout": ({
        "dataset": {"name": "moons", "n_train": 120, "noise": 0.25, "seed": 3},
        "model": {"hidden": [32, 16], "dropout": 0.5, "input_dropout": 0.2},
        "train": {"epochs": 12, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "seed": 7},
    }, 0),
    "sine_sgd_l1": ({
        "dataset": {"name": "sine", "n_train": 100, "noise": 0.1, "seed": 1},
        "model": {"hidden": [32, 32], "activation": "tanh", "dropout": [0.1, 0.3]},
        "train": {"epochs": 12, "batch_size": 10, "optimizer": "sgd", "lr": 0.05,
                  "momentum": 0.9, "weight_decay": 0.001, "l1": 0.0005, "seed": 2},
    }, 0),
    # run 11: rate 0.4, weight decay 0.01, fold 2, whose training rows leave a pixel constant
    # that its held-out rows do not (the fold's statistics must be taken as the engine takes them)
    "digits_cv_sweep": ({
        "dataset": {"name": "digits", "n_train": 40, "seed": 4, "extra_features": 2},
        "model": {"hidden": [24, 24], "activation": "gelu"},
        "train": {"epochs": 10, "batch_size": 16, "lr": 0.01, "seed": 5},
        "sweep": {"dropout": [0.0, 0.4], "weight_decay": [0.0, 0.01], "folds": 3},
    }, 11),
    # run 3: rate 0.3, second repeat: its own draw of the data (dataset.seed + 1) and seed + 1
    "moons_data_repeats": ({
        "dataset": {"name": "moons", "n_train": 60, "noise": 0.3, "seed": 2},
        "model": {"hidden": [16, 16]},
        "train": {"epochs": 8, "batch_size": 16, "lr": 0.01, "seed": 4},
        "sweep": {"dropout": [0.0, 0.3], "repeats": 2, "repeat_seeds": "both"},
    }, 3),
    # run 1: the p = 0 twin of a baseline pair (run 0 drops hidden units and inputs)
    "xor_baseline_twin": ({
        "dataset": {"name": "xor", "n_train": 40, "noise": 0.25, "seed": 2},
        "model": {"hidden": [16, 16], "dropout": 0.5, "input_dropout": 0.1},
        "train": {"epochs": 8, "batch_size": 8, "lr": 0.01, "weight_decay": 0.001, "seed": 3},
        "baseline": True,
    }, 1),
    "digits_adamw": ({
        "dataset": {"name": "digits", "n_train": 200, "seed": 0, "label_noise": 0.1},
        "model": {"hidden": [64], "dropout": 0.3},
        "train": {"epochs": 10, "batch_size": 32, "optimizer": "adamw", "lr": 0.003,
                  "weight_decay": 0.05, "seed": 1},
    }, 0),
}


def _case(name: str) -> tuple[ExperimentConfig, int]:
    raw, run = CASES[name]
    return ExperimentConfig.model_validate(raw), run


def _start_script(source: str, tmp_path) -> subprocess.Popen:
    """Start the script in its own process (it runs while the engine trains here)."""
    path = tmp_path / "script.py"
    path.write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen([sys.executable, "-c", NO_APP, str(path)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _output_lines(proc: subprocess.Popen) -> list[dict]:
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0])
    return names


def _max_diff(got: dict, want: dict) -> float:
    """Largest |got - want| over the metrics (None, a diverged value, must match None)."""
    assert list(got) == list(want)
    worst = 0.0
    for key, value in want.items():
        if value is None or got[key] is None:
            assert got[key] is value is None, key
            continue
        worst = max(worst, abs(got[key] - value))
    return worst


@pytest.mark.parametrize("case", list(CASES))
def test_script_reproduces_the_engine(case, tmp_path):
    config, run = _case(case)
    source = script_for(config, run)
    assert "import app" not in source and "from app" not in source
    assert _imported_modules(source) <= ALLOWED_IMPORTS

    proc = _start_script(source, tmp_path)
    expected = train(config).runs[run]
    *epochs, done = _output_lines(proc)
    assert len(epochs) == len(expected.epochs) == config.train.epochs
    worst = 0.0
    for got, want in zip(epochs, expected.epochs, strict=True):
        assert list(got) == epoch_fields(config.task)  # same fields, same order
        assert got["epoch"] == want["epoch"]
        worst = max(worst, _max_diff(got, want))
    assert done["event"] == "done"
    worst = max(worst, _max_diff(done["test"], expected.test))
    print(f"{case}: run {run}, max |script - engine| = {worst:.2e}")  # noqa: T201 (pytest -s)
    assert worst <= TOL


def test_the_cross_validation_case_exports_the_run_it_means():
    config, run = _case("digits_cv_sweep")
    spec = plan_runs(config)[run]
    assert (spec.layer_rates, spec.weight_decay, spec.fold) == ((0.4, 0.4), 0.01, 2)


def test_header_names_the_run():
    config, run = _case("digits_cv_sweep")
    source = script_for(config, run)
    assert "This script trains run 11 (counting from 0) of the 12 runs" in source
    assert "hidden dropout p=0.4; input dropout p=0.0; weight decay 0.01" in source
    assert "SEED = 5 " in source and "LAYER_RATES = [0.4, 0.4] " in source
    assert "WEIGHT_DECAY = 0.01 " in source
    assert "FOLDS = 3 " in source and "FOLD = 2 " in source


def test_the_twin_script_trains_without_dropout_and_says_so():
    config, run = _case("xor_baseline_twin")
    source = script_for(config, run)
    assert "This script trains run 1 (counting from 0) of the 2 runs" in source
    assert "the p=0 twin of run 0" in " ".join(source.split())
    assert "LAYER_RATES = [0.0, 0.0] " in source and "INPUT_RATE = 0.0 " in source
    assert "SEED = 3 " in source and "DATA_SEED = 2 " in source
    assert "WEIGHT_DECAY = 0.001 " in source
    assert "twin" not in script_for(config, 0).split("SEED =")[0].split("CONFIG = ")[1]


def test_run_0_of_a_pair_exports_the_script_of_the_run_alone():
    """Apart from the config's own `baseline` line and the header's count of runs, the script
    of run 0 is the script of the same config without the twin, line for line."""
    config, _ = _case("xor_baseline_twin")
    alone = config.model_copy(update={"baseline": False})
    paired, single = script_for(config, 0).splitlines(), script_for(alone, 0).splitlines()
    differ = [(a, b) for a, b in zip(paired, single, strict=True) if a != b]
    assert differ == [('  "baseline": true', '  "baseline": false'),
                      ("# This script trains run 0 (counting from 0) of the 2 runs:",
                       "# This script trains the only run:")]


def test_run_out_of_range_names_the_valid_runs():
    config, _ = _case("digits_cv_sweep")
    with pytest.raises(ValueError, match="run 12 is out of range: .* 12 runs, numbered 0 to 11"):
        script_for(config, 12)


@pytest.mark.parametrize("run", [-1, 1, 5])
def test_run_out_of_range(run):
    config, _ = _case("digits_adamw")
    with pytest.raises(ValueError, match=r"run .* out of range: this experiment has 1 run"):
        script_for(config, run)


@pytest.mark.parametrize("name", ['quotes """ and \'\'\' end\\', "line\nbreak", "naïve ✓"])
def test_any_name_gives_valid_python(name):
    config = ExperimentConfig.model_validate({**CASES["digits_adamw"][0], "name": name})
    source = script_for(config)
    ast.parse(source)
    namespace: dict = {}
    config_line = source.index("CONFIG = json.loads(")
    exec(source[config_line:source.index('""")', config_line) + 4], {"json": json}, namespace)
    assert namespace["CONFIG"] == config.model_dump(mode="json")


def test_every_run_of_other_shapes_compiles_with_its_own_settings():
    """Shapes the cases above do not run: no hidden layer, rates per layer, swept targets."""
    shapes = [
        {"model": {"hidden": [], "input_dropout": 0.3}},
        {"model": {"hidden": [8, 8, 8], "dropout": [0.0, 0.5, 0.0], "activation": "sigmoid"}},
        {"model": {"hidden": [8], "dropout": 0.0}, "sweep": {"folds": 4}},
        {"model": {"hidden": [8, 8]}, "sweep": {"grid_step": 0.3, "target": "input"}},
        {"model": {"hidden": [8, 8]}, "sweep": {"random_samples": 2, "target": "layer2"}},
    ]
    for shape in shapes:
        config = ExperimentConfig.model_validate(shape)
        for spec in plan_runs(config):
            source = script_for(config, spec.index)
            compile(source, "script.py", "exec")
            assert f"LAYER_RATES = {list(spec.layer_rates)} " in source
            assert f"INPUT_RATE = {float(spec.input_rate)!r} " in source
            assert f"SEED = {spec.seed} " in source


def test_scripts_pass_the_projects_linter():
    """The script is meant to be read: it keeps the project's style (print aside: it reports)."""
    pytest.importorskip("ruff")
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    for name in CASES:
        config, run = _case(name)
        done = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--config", str(pyproject), "--ignore",
             "T201", "--stdin-filename", "script.py", "-"],
            input=script_for(config, run), capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, f"{name}:\n{done.stdout}{done.stderr}"
