"""The p = 0 twin (`baseline`) in the engine: it costs run 0 nothing and differs only by dropout.

Oracles: the same config trained without the twin (run 0 must be that run), a plain p = 0
config trained alone (the twin must be that run), and the network the trainer builds for the
pair (both members start from the same weights). The command line streams both runs.

"The same numbers" is float32's precision, not the bit: with two members the evaluation sums
each member's rows in another order than with one, so a reported value (7 significant digits)
can differ in its last digit (measured: 1e-7 on a loss of 0.45, at HEAD as well). The training
itself (weights, data order, masks) is the same; the tolerance is 1e-5 in tests/ml/test_train.py
for members of a sweep, and 20 times tighter here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.ml.config import ExperimentConfig
from app.ml.model import StackedMLP
from app.ml.runs import plan_runs
from app.ml.train import train

ROOT = Path(__file__).resolve().parents[2]

PAIRS = {
    "xor_hidden": {
        "dataset": {"name": "xor", "n_train": 40, "noise": 0.25, "seed": 3},
        "model": {"hidden": [16, 16], "dropout": 0.5},
        "train": {"epochs": 6, "batch_size": 8, "lr": 0.01, "seed": 3},
    },
    "moons_layers_inputs_adamw": {
        "dataset": {"name": "moons", "n_train": 70, "noise": 0.3, "seed": 1, "label_noise": 0.1},
        "model": {"hidden": [12, 8, 6], "dropout": [0.2, 0.0, 0.6], "input_dropout": 0.1,
                  "activation": "tanh"},
        "train": {"epochs": 5, "batch_size": 16, "optimizer": "adamw", "lr": 0.01,
                  "weight_decay": 0.05, "l1": 0.001, "seed": 8},
    },
    "sine_sgd": {
        "dataset": {"name": "sine", "n_train": 50, "noise": 0.1, "seed": 2},
        "model": {"hidden": [16], "dropout": 0.3},
        "train": {"epochs": 5, "batch_size": 10, "optimizer": "sgd", "lr": 0.05, "seed": 4},
    },
}


def config_of(raw: dict, **change) -> ExperimentConfig:
    return ExperimentConfig.model_validate({**raw, **change})


def assert_same_numbers(got: list[dict] | dict, want: list[dict] | dict) -> None:
    """Equal to float32's precision: every epoch, every metric (see the module's note)."""
    rows = zip(got, want, strict=True) if isinstance(got, list) else [(got, want)]
    for a, b in rows:
        assert a == pytest.approx(b, rel=2e-6, abs=5e-7), (a, b)


@pytest.mark.parametrize("name", list(PAIRS))
def test_run_0_has_exactly_the_numbers_of_the_run_alone(name):
    paired = train(config_of(PAIRS[name], baseline=True))
    alone = train(config_of(PAIRS[name]))
    assert [r.spec.index for r in paired.runs] == [0, 1]
    run0, [single] = paired.runs[0], alone.runs
    assert run0.spec == single.spec
    assert len(run0.epochs) == len(single.epochs) == config_of(PAIRS[name]).train.epochs
    assert_same_numbers(run0.epochs, single.epochs)
    assert_same_numbers(run0.test, single.test)
    assert run0.confusion == single.confusion


@pytest.mark.parametrize("name", list(PAIRS))
def test_the_twin_has_exactly_the_numbers_of_a_p0_run_alone(name):
    """Same seed, same data, every rate at 0: the twin is the run a learner would get by
    setting every slider to 0, and nothing of run 0's dropout leaks into it."""
    raw = PAIRS[name]
    twin = train(config_of(raw, baseline=True)).runs[1]
    hidden = len(raw["model"]["hidden"])
    p0 = config_of({**raw, "model": {**raw["model"], "dropout": [0.0] * hidden,
                                     "input_dropout": 0.0}})
    [alone] = train(p0).runs
    assert_same_numbers(twin.epochs, alone.epochs)
    assert_same_numbers(twin.test, alone.test)
    assert twin.epochs[-1]["val_loss"] != run0_of(raw).epochs[-1]["val_loss"]


def run0_of(raw: dict):
    return train(config_of(raw)).runs[0]


@pytest.mark.parametrize("name", list(PAIRS))
def test_the_twin_starts_from_run_0s_initial_weights(name):
    config = config_of(PAIRS[name], baseline=True)
    specs = plan_runs(config)
    n_in, n_out = (2, 2) if config.task == "classification" else (1, 1)
    model = StackedMLP([n_in, *config.model.hidden, n_out], config.model.activation,
                       [s.layer_rates for s in specs], [s.input_rate for s in specs],
                       [s.seed for s in specs])
    run0, twin = model.member_as_sequential(0), model.member_as_sequential(1)
    weights0, weights1 = list(run0.parameters()), list(twin.parameters())
    assert len(weights0) == 2 * (len(config.model.hidden) + 1)
    for a, b in zip(weights0, weights1, strict=True):
        assert torch.equal(a, b)


def test_the_pair_starts_equal_in_training_too():
    """Through train() itself: at a learning rate too small to move the weights, the first
    epoch's eval-mode losses of run 0 and its twin agree; at another training seed they do
    not (the check can fail)."""
    raw = {**PAIRS["xor_hidden"], "train": {**PAIRS["xor_hidden"]["train"], "epochs": 1,
                                            "lr": 1e-9}}
    run0, twin = train(config_of(raw, baseline=True)).runs
    assert twin.epochs[0]["train_loss"] == pytest.approx(run0.epochs[0]["train_loss"], abs=1e-6)
    assert twin.epochs[0]["val_loss"] == pytest.approx(run0.epochs[0]["val_loss"], abs=1e-6)
    other = train(config_of({**raw, "train": {**raw["train"], "seed": 4}})).runs[0]
    assert abs(other.epochs[0]["val_loss"] - run0.epochs[0]["val_loss"]) > 1e-3


def test_snapshots_come_for_both_runs_of_a_pair():
    snaps = []
    train(config_of(PAIRS["xor_hidden"], baseline=True), on_snapshot=snaps.extend)
    runs = {run for run, _ in snaps}
    assert runs == {0, 1}
    last = {run: s for run, s in snaps if s["epoch"] == PAIRS["xor_hidden"]["train"]["epochs"]}
    assert last[0]["extent"] == last[1]["extent"]  # one plane: the two surfaces line up
    assert last[0]["p1"] != last[1]["p1"]


def test_the_command_line_streams_both_runs_of_a_pair(tmp_path):
    raw = {**PAIRS["xor_hidden"], "baseline": True}
    path = tmp_path / "pair.json"
    path.write_text(json.dumps(raw))
    proc = subprocess.run([sys.executable, "-m", "app", "train", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *epochs, done = [json.loads(line) for line in proc.stdout.splitlines()]
    n = raw["train"]["epochs"]
    assert len(epochs) == 2 * n
    for run in (0, 1):
        assert [e["epoch"] for e in epochs if e["run"] == run] == list(range(1, n + 1))
    expected = train(config_of(raw)).runs
    for run, result in enumerate(expected):
        streamed = [{k: v for k, v in e.items() if k not in ("event", "run", "ended_at")}
                    for e in epochs if e["run"] == run]
        assert_same_numbers(streamed, result.epochs)
    assert done["event"] == "done" and done["status"] == "done"
    assert [r["index"] for r in done["summary"]["runs"]] == [0, 1]
    assert [r["dropout"] for r in done["summary"]["sweep"]["rates"]] == [0.5, 0.0]
