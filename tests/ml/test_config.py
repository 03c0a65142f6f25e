"""The experiment config: defaults, and every limit rejected with the field to change named."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from app.ml.config import (
    MAX_LAYERS,
    MAX_PARAMS,
    MAX_RUNS,
    MAX_SWEEP_PARAMS,
    ExperimentConfig,
    describe_errors,
)
from app.ml.datasets import CATALOG
from app.ml.model import StackedMLP


def errors_of(payload: dict) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        ExperimentConfig.model_validate(payload)
    return describe_errors(info.value)


def fields_of(payload: dict) -> list[str]:
    return [e["field"] for e in errors_of(payload)]


def test_defaults_are_valid_and_follow_the_contract():
    config = ExperimentConfig()
    assert config.dataset.name == "moons"
    assert config.dataset.n_train == 200
    assert config.model.hidden == [64, 64]
    assert config.model.dropout == 0.5
    assert config.train.epochs == 100
    assert config.train.optimizer == "adam"
    assert config.sweep is None
    assert config.n_runs == 1
    assert config.task == "classification"
    assert ExperimentConfig.model_validate({}) == config
    # a stored config round-trips through JSON unchanged
    assert ExperimentConfig.model_validate_json(config.model_dump_json()) == config


def test_contract_example_is_valid():
    config = ExperimentConfig.model_validate({
        "name": "  demo  ",
        "dataset": {"name": "moons", "n_train": 200, "noise": 0.2, "seed": 0},
        "model": {"hidden": [64, 64], "activation": "relu", "dropout": 0.5, "input_dropout": 0.0},
        "train": {"epochs": 100, "batch_size": 32, "optimizer": "adam", "lr": 0.001,
                  "weight_decay": 0.0, "l1": 0.0, "seed": 0},
        "sweep": {"dropout": [0.0, 0.25, 0.5], "folds": 1, "repeats": 1},
    })
    assert config.name == "demo"
    assert config.n_runs == 3


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"model": {"dropout": 1.0}}, "model.dropout"),
        ({"model": {"dropout": -0.1}}, "model.dropout"),
        ({"model": {"dropout": [0.1, 1.0]}}, "model.dropout"),
        ({"model": {"hidden": [8, 8], "dropout": [0.1, 0.2, 0.3]}}, "model.dropout"),
        ({"model": {"input_dropout": 1.0}}, "model.input_dropout"),
        ({"model": {"hidden": [4] * (MAX_LAYERS + 1)}}, "model.hidden"),
        ({"model": {"hidden": [2000]}}, "model.hidden"),
        ({"model": {"hidden": [8, 0]}}, "model.hidden"),
        ({"model": {"hidden": [1000, 1000]}}, "model.hidden"),  # 1,006,002 parameters
        ({"model": {"activation": "swish"}}, "model.activation"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"epochs": 1001}}, "train.epochs"),
        ({"train": {"lr": 0}}, "train.lr"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"optimizer": "rmsprop"}}, "train.optimizer"),
        ({"dataset": {"name": "mnist"}}, "dataset.name"),
        ({"dataset": {"n_train": 9}}, "dataset.n_train"),
        ({"dataset": {"n_train": 5001}}, "dataset.n_train"),
        ({"dataset": {"name": "digits", "n_train": 2000}}, "dataset.n_train"),
        ({"dataset": {"label_noise": 0.6}}, "dataset.label_noise"),
        ({"dataset": {"n_train": 10}, "sweep": {"folds": 6}}, "sweep.folds"),
        ({"sweep": {"dropout": [0.1, 0.2, 0.3, 0.4, 0.5], "repeats": 13}}, "sweep"),
        ({"sweep": {"dropout": [0.1, 1.0]}}, "sweep.dropout"),
        ({"sweep": {"dropout": []}}, "sweep.dropout"),
        ({"model": {"hidden": [990, 990]}, "sweep": {"dropout": [0.0] * 9}}, "sweep"),
        ({"name": "x" * 81}, "name"),
        ({"model": {"hiden": [8]}}, "model.hiden"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_each_limit_is_rejected_naming_the_field(payload, field):
    errors = errors_of(payload)
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["message"]


def test_extra_fields_are_forbidden():
    [error] = errors_of({"train": {"epochs": 5, "epoch": 5}})
    assert error["field"] == "train.epoch"
    assert "not permitted" in error["message"]


def test_limit_messages_explain_the_limit():
    [too_big] = errors_of({"model": {"hidden": [1000, 1000]}})
    assert "1,006,002" in too_big["message"] and f"{MAX_PARAMS:,}" in too_big["message"]
    [digits] = errors_of({"dataset": {"name": "digits", "n_train": 2000}})
    assert str(CATALOG["digits"].max_train) in digits["message"]
    [runs] = errors_of({"sweep": {"dropout": [0.1, 0.2, 0.3, 0.4, 0.5], "repeats": 13}})
    assert "65" in runs["message"] and str(MAX_RUNS) in runs["message"]


def test_values_at_the_limits_are_accepted():
    ok = [
        {"model": {"dropout": 0.99, "input_dropout": 0.99}},
        {"model": {"dropout": 0.0}},
        {"model": {"hidden": [4] * MAX_LAYERS}},
        {"model": {"hidden": [1024]}},
        {"model": {"hidden": [990, 990]}},  # 986,042 parameters
        {"train": {"epochs": 1}},
        {"train": {"epochs": 1000}},
        {"dataset": {"name": "digits", "n_train": CATALOG["digits"].max_train}},
        {"dataset": {"n_train": 10}, "sweep": {"folds": 5}},
        {"sweep": {"dropout": [0.1, 0.2, 0.3, 0.4], "repeats": 16}},  # exactly MAX_RUNS
    ]
    for payload in ok:
        ExperimentConfig.model_validate(payload)


def test_layer_rates_and_run_count():
    config = ExperimentConfig.model_validate(
        {"model": {"hidden": [8, 8, 8], "dropout": 0.2},
         "sweep": {"dropout": [0.0, 0.5], "folds": 3, "repeats": 2}}
    )
    assert config.model.layer_rates() == [0.2, 0.2, 0.2]
    assert config.n_runs == 2 * 3 * 2
    listed = ExperimentConfig.model_validate({"model": {"hidden": [8, 4], "dropout": [0.1, 0.6]}})
    assert listed.model.layer_rates() == [0.1, 0.6]


def test_sine_is_regression():
    assert ExperimentConfig.model_validate({"dataset": {"name": "sine"}}).task == "regression"


@pytest.mark.parametrize("hidden", [[3], [64, 64], [10, 20, 30]])
@pytest.mark.parametrize("name", ["moons", "digits", "sine"])
def test_parameter_count_matches_the_built_network(hidden, name):
    """The budget is counted on the network the trainer actually builds."""
    info = CATALOG[name]
    config = ExperimentConfig.model_validate({"dataset": {"name": name},
                                              "model": {"hidden": hidden}})
    sizes = [info.n_features, *hidden, info.n_classes]
    model = StackedMLP(sizes, "relu", [[0.0] * len(hidden)], [0.0], [0])
    built = sum(p.numel() for p in model.parameters())
    assert config.model.n_params(info.n_features, info.n_classes) == built
    plain = torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])])
    assert built == sum(p.numel() for p in plain.parameters())


def test_baseline_pairs_a_run_with_its_p0_twin_and_only_when_there_is_dropout():
    assert ExperimentConfig().baseline is False and not ExperimentConfig().paired
    paired = ExperimentConfig.model_validate({"baseline": True})
    assert paired.paired and paired.n_runs == 2
    inputs_only = ExperimentConfig.model_validate(
        {"baseline": True, "model": {"dropout": 0.0, "input_dropout": 0.2}})
    assert inputs_only.paired and inputs_only.n_runs == 2
    nothing = ExperimentConfig.model_validate(
        {"baseline": True, "model": {"dropout": [0.0, 0.0]}})
    assert not nothing.paired and nothing.n_runs == 1  # the twin would be the run itself
    described = ExperimentConfig.model_fields["baseline"].description
    assert "run 1" in described and "p = 0" in described


def test_baseline_with_a_sweep_is_refused_naming_baseline():
    [error] = errors_of({"baseline": True, "sweep": {"dropout": [0.0, 0.5]}})
    assert error["field"] == "baseline" and "add 0" in error["message"]


def test_any_network_accepted_alone_is_accepted_with_its_twin():
    """The twin doubles the parameters trained, which stays far inside MAX_SWEEP_PARAMS for
    any network MAX_PARAMS allows: asking for the comparison never makes a config invalid."""
    assert 2 * MAX_PARAMS <= MAX_SWEEP_PARAMS
    widest = ExperimentConfig.model_validate({"model": {"hidden": [990, 990]}, "baseline": True})
    assert widest.n_runs == 2
