"""app.web.forms, pure: flat dotted params <-> ExperimentConfig, and the canonical query string.

The playground's links depend on this: a config written with config_to_query and read back with
parse/validate must be the same config, and equal setups must give equal links. The form opens
with the starting setup (app.ml.scenarios.START), so links say what differs from START; the
tests read START rather than restate it (its values are tuned elsewhere).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from app.ml.config import MAX_EPOCHS, MAX_LAYERS, ExperimentConfig
from app.ml.datasets import CATALOG
from app.ml.scenarios import START
from app.web import forms
from app.web.forms import (
    DEFAULTS,
    FIELD_NAMES,
    config_to_params,
    config_to_query,
    form_params,
    parse,
    validate,
)

CONFIGS = [
    pytest.param({}, id="api-defaults"),
    pytest.param(START.model_dump(mode="json"), id="start"),
    pytest.param({"baseline": True, "model": {"dropout": 0.2}}, id="twin"),
    pytest.param({"baseline": True, "model": {"dropout": 0.0}}, id="twin-asked-nothing-to-pair"),
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


def test_the_starting_setup_gives_an_empty_query():
    # the playground opens with START: its link is "/", and "/" means START
    assert config_to_params(START) == {}
    assert config_to_query(START) == ""
    assert validate({})[0] == START
    # the API's defaults are another setup: a link to them lists what differs from START
    api = ExperimentConfig()
    assert validate(dict(parse_qsl(config_to_query(api))))[0] == api
    assert ("baseline", "false") in parse_qsl(config_to_query(api))


def test_equal_setups_give_equal_links():
    a = ExperimentConfig.model_validate(
        {"train": {"epochs": 5, "lr": 0.0123}, "dataset": {"name": "circles"}, "name": "x"})
    b = ExperimentConfig.model_validate(
        {"name": "x", "dataset": {"name": "circles"}, "train": {"lr": 0.0123, "epochs": 5}})
    assert config_to_query(a) == config_to_query(b)
    # exactly the fields that differ from the form's defaults (START's), in form order
    flat = forms.config_to_flat(a.model_dump(exclude={"sweep"}))
    expected = [(k, flat[k]) for k in FIELD_NAMES if k in flat and flat[k] != DEFAULTS[k]]
    assert parse_qsl(config_to_query(a)) == expected
    assert ("train.lr", "0.0123") in expected and ("name", "x") in expected


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


def test_empty_hidden_means_no_hidden_layer_but_other_blanks_mean_the_start():
    config, errors = validate({"model.hidden": "", "train.epochs": "", "model.dropout": " "})
    assert errors == {}
    assert config.model.hidden == []
    assert config.train.epochs == START.train.epochs
    assert config.model.dropout == START.model.dropout
    assert "model.hidden=" in config_to_query(config).split("&")


def test_unknown_keys_are_ignored_and_default_sweep_is_dropped():
    assert parse({"colour": "red", "model.colour": "blue"}) == START.model_dump(exclude={"sweep"})
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
    assert by_name["dataset.name"].kind == "pictures"
    assert [p["value"] for p in by_name["dataset.name"].pictures] == list(CATALOG)
    assert by_name["train.epochs"].kind == "number" and by_name["train.epochs"].step == "1"
    assert by_name["train.epochs"].max == str(MAX_EPOCHS)  # bounds come from the config
    assert by_name["model.hidden"].kind == "layers" and by_name["model.hidden"].max_rows == \
        MAX_LAYERS
    assert by_name["baseline"].kind == "checkbox" and by_name["baseline"].label == \
        "compare with p = 0"
    # the form opens with the starting setup, field by field
    assert {n: f.default for n, f in by_name.items()} == {
        n: v for n, v in forms.config_to_flat(START.model_dump(exclude={"sweep"})).items()
    } | {n: f.default for n, f in by_name.items() if n.startswith("sweep.")}


def test_the_essentials_stay_and_the_rest_folds():
    sections = {s.key: s for s in forms.blank_sections()}
    shown = [f.name for s in sections.values() for f in s.essential]
    assert shown == ["dataset.name", "dataset.n_train", "dataset.noise", "model.hidden",
                     "model.dropout", "model.input_dropout", "train.epochs", "baseline"]
    assert sections["sweep"].essential == [] and sections[""].essential == []  # fold whole
    assert "learning rate" in sections["train"].more_title
    assert "optimizer" in sections["train"].more_title


def test_sliders_take_their_bounds_from_the_models():
    by_name = {f.name: f for s in forms.blank_sections() for f in s.fields}
    rate = by_name["model.dropout"].slider
    assert float(rate["min"]) == 0 and float(rate["max"]) == 1 - float(rate["step"])  # p < 1
    assert by_name["model.input_dropout"].slider == rate
    noise = by_name["dataset.noise"]
    assert (noise.slider["min"], noise.slider["max"]) == (noise.min, noise.max)
    # the training examples end at the chosen dataset's largest training split
    for name, info in CATALOG.items():
        [n_train] = [f for s in forms.filled_sections({"dataset.name": name}, {})
                     for f in s.fields if f.name == "dataset.n_train"]
        assert n_train.slider["max"] == n_train.max == str(min(5000, info.max_train)), name


@pytest.mark.parametrize(("hidden", "dropout", "rows", "same"), [
    ("64,32", "0.3", [("64", "0.3"), ("32", "0.3")], True),
    ("64,32", "0.1,0.2", [("64", "0.1"), ("32", "0.2")], False),
    ("8", "0.3,", [("8", "0.3")], True),
    ("", "0.5", [], True),
    ("8,8", "0.1,0.2,0.3", [("8", "0.1"), ("8", "0.2"), ("", "0.3")], False),  # kept to fix
])
def test_layer_rows_show_widths_with_their_rates(hidden, dropout, rows, same):
    [layers] = [f for s in forms.filled_sections({"model.hidden": hidden,
                                                  "model.dropout": dropout}, {})
                for f in s.fields if f.name == "model.hidden"]
    assert [(r["width"], r["rate"]) for r in layers.rows] == rows
    assert layers.same_rate is same
    assert layers.rate.name == "model.dropout"


def test_layer_rows_submit_one_truth():
    # what the form posts: a blank marker, then a width and a rate per row
    rows = [("model.hidden", ""), ("model.hidden", "64"), ("model.dropout", "0.3"),
            ("model.hidden", "32"), ("model.dropout", "0.3")]
    assert form_params(rows) == {"model.hidden": "64,32", "model.dropout": "0.3"}
    config, _ = validate(form_params(rows))
    assert config.model.hidden == [64, 32] and config.model.dropout == 0.3  # one rate
    differ = [*rows[:-1], ("model.dropout", "0.1")]
    assert validate(form_params(differ))[0].model.dropout == [0.3, 0.1]
    assert validate(form_params([("model.hidden", "")]))[0].model.hidden == []  # no row
    # a query's single text is read as written, lists and all
    assert form_params([("model.dropout", "0.3,")]) == {"model.dropout": "0.3,"}
    # a bad rate is kept (typed twice into linked rows, reported once)
    config, errors = validate(form_params([("model.hidden", ""), ("model.hidden", "8"),
                                           ("model.dropout", "1.5"), ("model.hidden", "8"),
                                           ("model.dropout", "1.5")]))
    assert config is None and "below 1" in errors["model.dropout"]


def test_the_twin_checkbox_and_the_sweep():
    # a checkbox posts its hidden "false" first, then "true" when ticked
    assert form_params([("baseline", "false"), ("baseline", "true")]) == {"baseline": "true"}
    assert validate(form_params([("baseline", "false")]))[0].baseline is False
    assert validate({"model.dropout": "0.2"})[0].paired  # START pairs
    # a sweep lists its own rates: START's twin is off unless asked for
    config, errors = validate({"sweep.dropout": "0,0.5"})
    assert errors == {} and config.baseline is False and config.n_runs == 2
    assert "baseline" not in config_to_params(config)
    assert round_trip(config) == config
    config, errors = validate({"sweep.dropout": "0,0.5", "baseline": "true"})
    assert config is None and "sweep lists its own rates" in errors["baseline"]
