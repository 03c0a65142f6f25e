"""Run planning: rates x repeats x folds with the right seeds, and k-fold index parts; settings
(runs that differ only by fold or seed) with the rates their runs trained at; the metric table."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.config import ExperimentConfig
from app.ml.runs import (
    METRICS,
    SNAPSHOT_RUNS,
    epoch_fields,
    fold_indices,
    lower_is_better,
    metric_fields,
    metric_unit,
    plan_runs,
    rate_label,
    setting_key,
    settings_of,
    snapshot_runs,
    twin_of,
)


@pytest.mark.parametrize(("n", "folds"), [(10, 2), (40, 3), (41, 5), (100, 10), (7, 7)])
def test_fold_parts_are_disjoint_cover_and_balanced(n, folds):
    parts = fold_indices(n, folds, seed=3)
    assert len(parts) == folds
    joined = np.concatenate(parts)
    assert len(joined) == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))  # disjoint and covering
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for p in parts:
        np.testing.assert_array_equal(p, np.sort(p))


def test_fold_parts_depend_on_the_seed_only():
    a, b, c = fold_indices(50, 5, 1), fold_indices(50, 5, 1), fold_indices(50, 5, 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # shuffled: the first part is not simply the first rows
    assert not np.array_equal(a[0], np.arange(10))


def test_single_run_uses_the_model_rates():
    config = ExperimentConfig.model_validate(
        {"model": {"hidden": [8, 8], "dropout": [0.1, 0.4], "input_dropout": 0.2},
         "train": {"seed": 9}})
    [run] = plan_runs(config)
    assert run.index == 0
    assert run.dropout == [0.1, 0.4]
    assert run.layer_rates == (0.1, 0.4)
    assert run.input_rate == 0.2
    assert (run.fold, run.repeat, run.seed) == (0, 0, 9)


def test_sweep_plans_rates_times_repeats_times_folds():
    config = ExperimentConfig.model_validate(
        {"dataset": {"n_train": 60},
         "model": {"hidden": [8, 8, 8], "dropout": 0.9, "input_dropout": 0.1},
         "train": {"seed": 5},
         "sweep": {"dropout": [0.0, 0.3, 0.6], "folds": 3, "repeats": 2}})
    runs = plan_runs(config)
    assert len(runs) == 3 * 2 * 3 == config.n_runs
    assert [r.index for r in runs] == list(range(18))
    expected = [(rate, repeat, fold)
                for rate in (0.0, 0.3, 0.6) for repeat in range(2) for fold in range(3)]
    assert [(r.dropout, r.repeat, r.fold) for r in runs] == expected
    for r in runs:
        assert r.layer_rates == (r.dropout,) * 3  # the swept rate replaces every layer's
        assert r.input_rate == 0.1  # input dropout is not swept
        assert r.seed == 5 + r.repeat


def plan(config: dict) -> list:
    return plan_runs(ExperimentConfig.model_validate(config))


def check_settings_partition(specs, settings) -> None:
    """Every run is in exactly one setting, and the runs of a setting differ only by fold
    and seed: same swept value, weight decay and rates trained at."""
    assert sorted(i for s in settings for i in s.runs) == [r.index for r in specs]
    for s in settings:
        group = [specs[i] for i in s.runs]
        assert {setting_key(r.dropout, r.weight_decay) for r in group} == {s.key}
        assert {(r.layer_rates, r.input_rate) for r in group} == {
            (group[0].layer_rates, group[0].input_rate)}
        assert s.dropout == group[0].dropout and s.weight_decay == group[0].weight_decay
    assert len({s.key for s in settings}) == len(settings)


def test_single_run_label_is_what_it_trained_at():
    [run] = plan({"model": {"hidden": [8, 8], "dropout": [0.1, 0.4], "input_dropout": 0.2}})
    assert rate_label(run) == "p = 0.1/0.4, inputs 0.2"
    [run] = plan({"model": {"hidden": [8, 8], "dropout": 0.5}})
    assert rate_label(run) == "p = 0.5"
    assert rate_label(run, n_layers=0) == "no dropout"
    [linear] = plan({"model": {"hidden": [], "dropout": 0.5}})  # no hidden unit to drop
    assert rate_label(linear) == "no dropout"
    [linear] = plan({"model": {"hidden": [], "input_dropout": 0.3}})
    assert rate_label(linear) == "inputs p = 0.3"
    [[setting]] = [settings_of(plan({"model": {"dropout": 0.25}}))]
    assert (setting.label, setting.runs, setting.dropout) == ("p = 0.25", (0,), 0.25)


def test_a_sweep_of_one_layer_labels_every_layers_rate():
    specs = plan({"model": {"hidden": [8, 8, 8], "dropout": 0.5},
                  "sweep": {"dropout": [0.2, 0.4], "target": "layer2", "repeats": 2}})
    settings = settings_of(specs)
    check_settings_partition(specs, settings)
    assert [s.label for s in settings] == ["p = 0.5/0.2/0.5", "p = 0.5/0.4/0.5"]
    assert [s.runs for s in settings] == [(0, 1), (2, 3)]
    assert [s.dropout for s in settings] == [0.2, 0.4]  # the swept value, for the x axis


def test_a_sweep_of_the_inputs_leads_with_the_input_rate():
    specs = plan({"model": {"hidden": [8], "dropout": 0.5},
                  "sweep": {"dropout": [0.1, 0.3], "target": "input"}})
    assert [s.label for s in settings_of(specs)] == ["inputs p = 0.1, hidden 0.5",
                                                      "inputs p = 0.3, hidden 0.5"]
    specs = plan({"model": {"hidden": [8], "dropout": 0.0},
                  "sweep": {"dropout": [0.1, 0.3], "target": "input"}})
    assert [s.label for s in settings_of(specs)] == ["inputs p = 0.1", "inputs p = 0.3"]


def test_grid_and_random_sweeps_label_the_planned_rates_not_model_dropout():
    grid = plan({"model": {"dropout": 0.9, "hidden": [8]},
                 "sweep": {"low": 0.1, "high": 0.3, "grid_step": 0.1}})
    settings = settings_of(grid)
    check_settings_partition(grid, settings)
    assert [s.label for s in settings] == ["p = 0.1", "p = 0.2", "p = 0.3"]
    config = ExperimentConfig.model_validate(
        {"model": {"dropout": 0.9, "hidden": [8]}, "train": {"seed": 4},
         "sweep": {"low": 0.1, "high": 0.6, "random_samples": 4, "folds": 2}})
    specs = plan_runs(config)
    settings = settings_of(specs)
    check_settings_partition(specs, settings)
    rates = config.sweep.rates(config.train.seed)
    assert [s.label for s in settings] == [f"p = {r:g}" for r in dict.fromkeys(rates)]
    assert all(len(s.runs) == 2 for s in settings)


def test_weight_decay_crossing_makes_separate_settings_and_says_so():
    specs = plan({"model": {"hidden": [8]},
                  "sweep": {"dropout": [0.0, 0.5], "weight_decay": [0.0, 0.0001]}})
    settings = settings_of(specs)
    check_settings_partition(specs, settings)
    assert [s.label for s in settings] == [
        "p = 0, weight decay 0", "p = 0, weight decay 0.0001",
        "p = 0.5, weight decay 0", "p = 0.5, weight decay 0.0001"]
    assert [s.rates for s in settings] == ["p = 0", "p = 0", "p = 0.5", "p = 0.5"]
    # one weight decay: no weight decay in the label
    one = settings_of(plan({"model": {"hidden": [8]}, "train": {"weight_decay": 0.01},
                            "sweep": {"dropout": [0.0, 0.5]}}))
    assert [s.label for s in one] == ["p = 0", "p = 0.5"]


def test_repeats_reseed_training_data_or_both():
    base = {"dataset": {"seed": 3}, "model": {"hidden": [8]}, "train": {"seed": 10},
            "sweep": {"dropout": [0.0, 0.5], "repeats": 3}}
    seeds = {}
    for reseed in ("train", "data", "both"):
        specs = plan({**base, "sweep": {**base["sweep"], "repeat_seeds": reseed}})
        seeds[reseed] = [(s.repeat, s.seed, s.data_seed) for s in specs[:3]]
        assert len({s.key for s in settings_of(specs)}) == 2  # repeats stay in their setting
    assert seeds["train"] == [(0, 10, 3), (1, 11, 3), (2, 12, 3)]
    assert seeds["data"] == [(0, 10, 3), (1, 10, 4), (2, 10, 5)]
    assert seeds["both"] == [(0, 10, 3), (1, 11, 4), (2, 12, 5)]
    assert [(s.seed, s.data_seed) for s in plan({"dataset": {"seed": 3}})] == [(0, 3)]


def test_folds_and_repeats_fall_in_their_rates_setting():
    specs = plan({"dataset": {"n_train": 60}, "model": {"hidden": [8, 8], "input_dropout": 0.1},
                  "sweep": {"dropout": [0.2, 0.4], "folds": 3, "repeats": 2}})
    settings = settings_of(specs)
    check_settings_partition(specs, settings)
    assert [(s.label, len(s.runs)) for s in settings] == [("p = 0.2, inputs 0.1", 6),
                                                         ("p = 0.4, inputs 0.1", 6)]
    for s in settings:
        assert {(specs[i].fold, specs[i].repeat) for i in s.runs} == {
            (f, r) for f in range(3) for r in range(2)}
    # only folds and seeds: one setting at the model's rates
    [only] = settings_of(plan({"model": {"hidden": [8, 8], "dropout": [0.1, 0.3]},
                               "sweep": {"folds": 2, "repeats": 2}}))
    assert (only.label, only.runs, only.dropout) == ("p = 0.1/0.3", (0, 1, 2, 3), [0.1, 0.3])


def test_snapshot_runs_are_the_first_run_of_each_setting():
    specs = plan({"dataset": {"n_train": 60}, "model": {"hidden": [8]},
                  "sweep": {"dropout": [0.1, 0.2, 0.3], "weight_decay": [0, 0.1], "folds": 2}})
    settings = settings_of(specs)
    assert snapshot_runs(specs) == {s.runs[0] for s in settings} == {0, 2, 4, 6, 8, 10}
    assert snapshot_runs(specs, limit=2) == {0, 2}


def test_every_rate_of_a_sweep_of_up_to_16_rates_reports_snapshots():
    """Issue 18: a finished sweep shows any rate's surface. The first fold and seed of every
    rate, up to 16 rates; beyond, the first 16 settings."""
    assert SNAPSHOT_RUNS == 16
    sixteen = plan({"dataset": {"n_train": 60}, "model": {"hidden": [8]},
                    "sweep": {"low": 0.0, "high": 0.75, "grid_step": 0.05, "folds": 2,
                              "repeats": 2}})
    settings = settings_of(sixteen)
    assert len(settings) == 16
    chosen = snapshot_runs(sixteen)
    assert chosen == {s.runs[0] for s in settings}
    assert all(sixteen[i].fold == 0 and sixteen[i].repeat == 0 for i in chosen)
    seventeen = plan({"model": {"hidden": [8]}, "sweep": {"dropout": [i / 20 for i in range(17)]}})
    assert snapshot_runs(seventeen) == set(range(16))


def test_a_baseline_pair_is_run_0_as_configured_and_run_1_its_p0_twin():
    config = ExperimentConfig.model_validate(
        {"dataset": {"seed": 4}, "model": {"hidden": [8, 8], "dropout": [0.1, 0.4],
                                           "input_dropout": 0.2},
         "train": {"seed": 9, "weight_decay": 0.01}, "baseline": True})
    run, twin = plan_runs(config)
    assert [run] == plan_runs(config.model_copy(update={"baseline": False}))
    assert twin.index == 1 and twin == twin_of(run)
    assert (twin.layer_rates, twin.input_rate, twin.dropout) == ((0.0, 0.0), 0.0, 0.0)
    assert (twin.seed, twin.data_seed, twin.weight_decay) == (9, 4, 0.01)
    assert (twin.fold, twin.repeat) == (0, 0)
    settings = settings_of([run, twin])
    assert [(s.label, s.runs) for s in settings] == [("p = 0.1/0.4, inputs 0.2", (0,)),
                                                     ("p = 0", (1,))]
    assert snapshot_runs([run, twin]) == {0, 1}  # both decision surfaces are drawn


def test_the_twin_of_an_input_only_run_is_a_setting_of_its_own():
    """Run 0 drops only its inputs, so its `dropout` is 0.0 too: the twin's is spelled per
    layer, or the two would share a setting key and be averaged as one setting."""
    config = ExperimentConfig.model_validate(
        {"model": {"hidden": [8, 8], "dropout": 0.0, "input_dropout": 0.3}, "baseline": True})
    run, twin = plan_runs(config)
    assert twin.dropout == [0.0, 0.0] and twin.layer_rates == (0.0, 0.0)
    assert setting_key(run.dropout, run.weight_decay) != setting_key(twin.dropout,
                                                                     twin.weight_decay)
    assert [(s.label, s.runs) for s in settings_of([run, twin])] == [
        ("inputs p = 0.3", (0,)), ("inputs p = 0", (1,))]
    no_hidden = ExperimentConfig.model_validate(
        {"model": {"hidden": [], "input_dropout": 0.3}, "baseline": True})
    assert [s.label for s in settings_of(plan_runs(no_hidden))] == ["inputs p = 0.3",
                                                                     "no dropout"]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_epoch_metric_has_a_label_unit_and_direction(task):
    fields = [m.field for m in metric_fields(task)]
    assert fields == [f for f in epoch_fields(task) if f != "epoch"]
    for m in metric_fields(task):
        assert m.label and m.legend
        assert lower_is_better(m.field) == (m.field.endswith("loss") or "gap" in m.field
                                            or m.field == "train_loss_dropout")
    assert metric_unit("val_loss", task) == (
        "cross-entropy, nats" if task == "classification" else "mean squared error")
    assert metric_unit("val_r2", task) == ""
    assert METRICS["generalization_gap"].label == "generalization gap (val − train loss)"
    assert METRICS["train_loss_dropout"].label == "train mini-batch loss, dropout on"
    assert METRICS["train_acc"].label == "train accuracy (eval mode)"
    assert lower_is_better("best_val_loss") and not lower_is_better("val_acc")
