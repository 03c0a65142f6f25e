"""app.web.forms, pure: flat dotted params <-> ExperimentConfig, and the canonical query string.

The playground's links depend on this: a config written with config_to_query and read back with
parse/validate must be the same config, and equal setups must give equal links.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from app.ml.config import MAX_EPOCHS, ExperimentConfig
from app.web import forms
from app.web.forms import FIELD_NAMES, config_to_params, config_to_query, parse, validate

CONFIGS = [
    pytest.param({}, id="defaults"),
    pytest.param({"name": "a & b = c, d? 100%", "dataset": {"name": "circles"},
                  "model": {"hidden": [128, 32], "dropout": 0.3}}, id="name-needs-quoting"),
    pytest.param({"name": "ünïcødé ✓"}, id="unicode-name"),
    pytest.param({"model": {"hidden": [8, 8], "dropout": [0.1, 0.2]}}, id="per-layer-rates"),
    pytest.param({"model": {"hidden": [8, 8, 8], "dropout": [0.5, 0.5, 0.5]}},
                 id="per-layer-equal-rates"),
    pytest.param({"model": {"hidden": [], "dropout": 0.0}}, id="no-hidden-layer"),
    pytest.param({"dataset": {"name": "sine", "noise": 0.05, "n_train": 300, "seed": 7},
                  "model": {"activation": "tanh", "input_dropout": 0.1},
                  "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.5,
                            "weight_decay": 1e-4, "l1": 1e-5, "seed": 3, "epochs": 7,
                            "batch_size": 16}}, id="regression-sgd-small-floats"),
    pytest.param({"dataset": {"label_noise": 0.1, "extra_features": 5},
                  "model": {"dropout": 0.0}}, id="noisy-data"),
    pytest.param({"train": {"lr": 1e-06}}, id="tiny-lr"),
    pytest.param({"sweep": {"dropout": [0, 0.5], "folds": 2, "repeats": 3}}, id="sweep-rates"),
    pytest.param({"sweep": {"dropout": [0.25]}}, id="sweep-one-rate"),
    pytest.param({"sweep": {"grid_step": 0.1, "low": 0.1, "high": 0.5, "target": "input"}},
                 id="sweep-grid"),
    pytest.param({"sweep": {"random_samples": 4, "weight_decay": [0, 0.001]}},
                 id="sweep-random-with-l2"),
    pytest.param({"sweep": {"folds": 3}}, id="cross-validation-only"),
]


def round_trip(config: ExperimentConfig) -> ExperimentConfig:
    params = dict(parse_qsl(config_to_query(config), keep_blank_values=True))
    back, errors = validate(params)
    assert errors == {}, errors
    return back


@pytest.mark.parametrize("raw", CONFIGS)
def test_query_round_trip_gives_the_same_config(raw):
    config = ExperimentConfig.model_validate(raw)
    back = round_trip(config)
    assert back.model_dump(mode="json") == config.model_dump(mode="json")
    assert config_to_query(back) == config_to_query(config)  # a fixed point


def test_query_round_trip_keeps_a_one_layer_rate_list():
    # a per-layer list of one rate is not "one rate for every layer": the link must say so
    config = ExperimentConfig.model_validate({"model": {"hidden": [16], "dropout": [0.3]}})
    assert round_trip(config).model.dropout == [0.3]
    assert validate({"model.hidden": "16", "model.dropout": "0.3"})[0].model.dropout == 0.3


@pytest.mark.parametrize("raw", CONFIGS)
def test_query_is_canonical_and_lists_only_non_defaults(raw):
    config = ExperimentConfig.model_validate(raw)
    params = config_to_params(config)
    # form order, whatever order the config was written in
    assert list(params) == [name for name in FIELD_NAMES if name in params]
    defaults = {f.name: f.default for s in forms.blank_sections() for f in s.fields}
    for name, text in params.items():
        assert text != defaults[name], name


def test_defaults_give_an_empty_query():
    assert config_to_params(ExperimentConfig()) == {}
    assert config_to_query(ExperimentConfig()) == ""
    assert validate({})[0] == ExperimentConfig()


def test_equal_setups_give_equal_links():
    a = ExperimentConfig.model_validate(
        {"train": {"epochs": 5, "lr": 0.01}, "dataset": {"name": "xor"}, "name": "x"})
    b = ExperimentConfig.model_validate(
        {"name": "x", "dataset": {"name": "xor", "n_train": 200}, "train": {"lr": 0.01,
                                                                              "epochs": 5}})
    assert config_to_query(a) == config_to_query(b)
    assert config_to_query(a) == "dataset.name=xor&train.epochs=5&train.lr=0.01&name=x"


def test_lists_are_comma_separated_with_spaces_allowed():
    config, errors = validate({"model.hidden": "64, 32", "model.dropout": "0.1,0.2"})
    assert errors == {}
    assert config.model.hidden == [64, 32]
    assert config.model.dropout == [0.1, 0.2]
    assert config.model.layer_rates() == [0.1, 0.2]
    assert parse({"model.hidden": " 64 ,32 ,"})["model"]["hidden"] == ["64", "32"]


def test_one_rate_applies_to_every_layer():
    config, _ = validate({"model.hidden": "8,8,8", "model.dropout": "0.3"})
    assert config.model.dropout == 0.3
    assert config.model.layer_rates() == [0.3, 0.3, 0.3]


def test_empty_hidden_means_no_hidden_layer_but_other_blanks_mean_default():
    config, errors = validate({"model.hidden": "", "train.epochs": "", "model.dropout": " "})
    assert errors == {}
    assert config.model.hidden == []
    assert config.train.epochs == ExperimentConfig().train.epochs
    assert config.model.dropout == ExperimentConfig().model.dropout
    assert "model.hidden=" in config_to_query(config).split("&")


def test_unknown_keys_are_ignored_and_default_sweep_is_dropped():
    assert parse({"colour": "red", "model.colour": "blue"}) == {}
    config, errors = validate({"sweep.folds": "1", "sweep.repeats": "1", "sweep.low": "0.1"})
    assert errors == {}
    assert config.sweep is None  # a sweep that asks for one run is no sweep
    config, _ = validate({"sweep.repeats": "2"})
    assert config.sweep is not None and config.n_runs == 2


def test_invalid_values_are_reported_by_field():
    config, errors = validate({"model.dropout": "1.0", "train.epochs": "0",
                               "dataset.name": "imagenet"})
    assert config is None
    assert set(errors) == {"model.dropout", "train.epochs", "dataset.name"}
    assert "below 1" in errors["model.dropout"]


def test_every_field_is_documented_and_has_a_form_control():
    sections = forms.blank_sections()
    names = [f.name for s in sections for f in s.fields]
    assert names == FIELD_NAMES and len(set(names)) == len(names)
    for s in sections:
        for f in s.fields:
            assert f.help and f.label, f.name
            assert f.value == f.default
            if f.kind == "select":
                assert f.default in f.options, f.name
    by_name = {f.name: f for s in sections for f in s.fields}
    assert by_name["dataset.name"].kind == "select"
    assert by_name["train.epochs"].kind == "number" and by_name["train.epochs"].step == "1"
    assert by_name["train.epochs"].max == str(MAX_EPOCHS)  # bounds come from the config
    assert by_name["model.hidden"].kind == "text"
