"""Summaries: per-run final/best epochs and per-rate sweep statistics, against a direct count."""

from __future__ import annotations

import random
import statistics

import pytest

from app.ml.config import ExperimentConfig
from app.ml.runs import plan_runs, run_dict, setting_key, settings_of
from app.ml.summary import (
    primary_metric,
    run_summary,
    stat_name,
    summarize,
    sweep_metrics,
    sweep_summary,
)


def fake_epochs(rng: random.Random, n: int, task: str = "classification") -> list[dict]:
    score = primary_metric(task)
    rows = []
    for epoch in range(1, n + 1):
        train_loss, val_loss = rng.uniform(0.1, 1.0), rng.uniform(0.2, 1.5)
        rows.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                     score: rng.uniform(0, 1), "generalization_gap": val_loss - train_loss})
    return rows


RATES = [0.0, 0.25, [0.5, 0.1]]


@pytest.fixture
def sweep_runs():
    rng = random.Random(0)
    runs = []
    for rate in RATES:
        for _ in range(4):
            runs.append({"index": len(runs), "dropout": rate, "epochs": fake_epochs(rng, 6)})
    return runs


def test_sweep_summary_equals_a_direct_computation(sweep_runs):
    summary = sweep_summary(sweep_runs, "classification")
    assert [r["dropout"] for r in summary["rates"]] == RATES
    for stats in summary["rates"]:
        group = [r["epochs"] for r in sweep_runs if r["dropout"] == stats["dropout"]]
        assert stats["runs"] == len(group) == 4
        finals = [e[-1] for e in group]
        bests = [min(e, key=lambda row: row["val_loss"]) for e in group]
        want = {
            "final_val_loss": [f["val_loss"] for f in finals],
            "final_val_acc": [f["val_acc"] for f in finals],
            "final_generalization_gap": [f["generalization_gap"] for f in finals],
            "best_val_loss": [b["val_loss"] for b in bests],
            "best_val_acc": [b["val_acc"] for b in bests],
            "best_epoch": [float(b["epoch"]) for b in bests],
        }
        for name, values in want.items():
            assert stats[name]["mean"] == pytest.approx(statistics.mean(values), rel=1e-12)
            assert stats[name]["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)
            assert stats[name]["n"] == 4


def test_best_dropout_has_the_lowest_mean_final_val_loss(sweep_runs):
    means = {}
    for run in sweep_runs:
        means.setdefault(str(run["dropout"]), []).append(run["epochs"][-1]["val_loss"])
    lowest = min(means, key=lambda k: statistics.mean(means[k]))
    summary = sweep_summary(sweep_runs, "classification")
    assert str(summary["best_dropout"]) == lowest
    # make another rate clearly best and the answer follows
    for run in sweep_runs:
        if run["dropout"] == 0.25:
            run["epochs"][-1]["val_loss"] = 0.01
    assert sweep_summary(sweep_runs, "classification")["best_dropout"] == 0.25


def test_one_run_per_rate_has_zero_std():
    runs = [{"index": 0, "dropout": 0.1, "epochs": fake_epochs(random.Random(1), 3)}]
    [stats] = sweep_summary(runs, "classification")["rates"]
    assert stats["final_val_loss"] == {"mean": runs[0]["epochs"][-1]["val_loss"], "std": 0.0,
                                       "n": 1}


def test_runs_without_epochs_are_left_out():
    runs = [{"index": 0, "dropout": 0.1, "epochs": []},
            {"index": 1, "dropout": 0.2, "epochs": fake_epochs(random.Random(2), 2)}]
    summary = sweep_summary(runs, "classification")
    assert [r["dropout"] for r in summary["rates"]] == [0.2]
    assert summary["best_dropout"] == 0.2
    empty = sweep_summary([], "classification")
    assert empty["rates"] == [] and empty["best_dropout"] is None


def test_weight_decays_of_one_rate_are_separate_settings():
    rng = random.Random(6)
    runs = [{"index": i, "dropout": 0.5, "weight_decay": wd, "epochs": fake_epochs(rng, 3)}
            for i, wd in enumerate([0.0, 0.0, 0.1, 0.1])]
    runs[3]["epochs"][-1]["val_loss"] = runs[2]["epochs"][-1]["val_loss"] = 0.01
    summary = sweep_summary(runs, "classification")
    assert [(r["dropout"], r["weight_decay"], r["runs"]) for r in summary["rates"]] == [
        (0.5, 0.0, 2), (0.5, 0.1, 2)]
    assert (summary["best_dropout"], summary["best_weight_decay"]) == (0.5, 0.1)


def test_diverged_runs_rank_last():
    rng = random.Random(3)
    diverged = fake_epochs(rng, 3)
    diverged[-1]["val_loss"] = None  # NaN/inf losses are stored as None
    runs = [{"index": 0, "dropout": 0.9, "epochs": diverged},
            {"index": 1, "dropout": 0.0, "epochs": fake_epochs(rng, 3)}]
    assert run_summary(diverged, "classification")["best_epoch"] in (1, 2)
    assert sweep_summary(runs, "classification")["best_dropout"] == 0.0


def test_run_summary_reports_final_and_best_epoch():
    epochs = fake_epochs(random.Random(4), 8, "regression")
    best = min(epochs, key=lambda e: e["val_loss"])
    summary = run_summary(epochs, "regression")
    assert summary["epochs_trained"] == 8
    assert summary["final"] == {k: v for k, v in epochs[-1].items() if k != "epoch"}
    assert summary["best_epoch"] == best["epoch"]
    assert summary["best_val_loss"] == best["val_loss"]
    assert summary["best_val_r2"] == best["val_r2"]
    assert run_summary([], "regression") == {"epochs_trained": 0}


def test_summarize_adds_sweep_statistics_only_for_many_runs(sweep_runs):
    one = summarize(sweep_runs[:1], "classification")
    assert one["metric"] == "val_acc" and one["task"] == "classification"
    assert [r["index"] for r in one["runs"]] == [0]
    assert "sweep" not in one
    many = summarize(sweep_runs, "classification")
    assert [r["index"] for r in many["runs"]] == list(range(12))
    assert many["sweep"] == sweep_summary(sweep_runs, "classification")
    with_test = summarize([{**sweep_runs[0], "test": {"test_acc": 0.75}}], "classification")
    assert with_test["runs"][0]["test"] == {"test_acc": 0.75}
    reg = [{"index": 0, "dropout": 0.0, "epochs": fake_epochs(random.Random(5), 2, "regression")}]
    assert summarize(reg, "regression")["metric"] == "val_r2"


def test_a_baseline_pair_is_summarized_as_its_two_settings():
    """A pair is not one run: both runs are summarized, and "sweep" compares the chosen rate
    with the twin exactly as a sweep of [rate, 0] at the same seeds would."""
    pair = ExperimentConfig.model_validate(
        {"dataset": {"n_train": 60}, "model": {"hidden": [8], "dropout": 0.4}, "baseline": True})
    rng = random.Random(3)
    runs = [run_dict(s, fake_epochs(rng, 5)) for s in plan_runs(pair)]
    summary = summarize(runs, "classification")
    assert [r["index"] for r in summary["runs"]] == [0, 1]
    rows = summary["sweep"]["rates"]
    assert [(r["dropout"], r["runs"]) for r in rows] == [(0.4, 1), (0.0, 1)]
    assert [r["key"] for r in rows] == [s.key for s in settings_of(plan_runs(pair))]
    lower = min(runs, key=lambda r: r["epochs"][-1]["val_loss"])
    assert summary["sweep"]["best_dropout"] == lower["dropout"]
    sweep = {**pair.model_dump(), "baseline": False, "sweep": {"dropout": [0.4, 0.0]}}
    as_sweep = settings_of(plan_runs(ExperimentConfig.model_validate(sweep)))
    assert [(s.key, s.label) for s in as_sweep] == [
        (s.key, s.label) for s in settings_of(plan_runs(pair))]


@pytest.mark.parametrize("sweep", [
    {"dropout": [0.0, 0.3], "target": "layer2", "folds": 2, "repeats": 2},
    {"dropout": [0.1, 0.2], "target": "input", "weight_decay": [0.0, 0.01]},
    {"low": 0.0, "high": 0.5, "grid_step": 0.25, "repeats": 2},
    {"folds": 3},  # no swept rate: one setting at model.dropout
])
def test_sweep_summary_groups_runs_as_settings_of_does(sweep):
    config = ExperimentConfig.model_validate(
        {"dataset": {"n_train": 60}, "model": {"hidden": [8, 8], "dropout": [0.5, 0.1]},
         "sweep": sweep})
    specs = plan_runs(config)
    rng = random.Random(7)
    runs = [run_dict(s, fake_epochs(rng, 4)) for s in specs]
    summary = sweep_summary(runs, "classification")
    settings = settings_of(specs)
    assert [r["key"] for r in summary["rates"]] == [s.key for s in settings]
    for row, setting in zip(summary["rates"], settings, strict=True):
        assert row["runs"] == len(setting.runs)
        assert row["key"] == setting_key(row["dropout"], row["weight_decay"])
        finals = [runs[i]["epochs"][-1]["val_loss"] for i in setting.runs]
        assert row["final_val_loss"]["mean"] == pytest.approx(statistics.mean(finals))


def test_best_setting_per_metric_follows_its_direction():
    rng = random.Random(8)
    runs = [{"index": i, "dropout": rate, "weight_decay": 0.0, "epochs": fake_epochs(rng, 3)}
            for i, rate in enumerate([0.0, 0.0, 0.5, 0.5])]
    # p = 0: lower final loss but also lower accuracy and a larger gap
    for run, (loss, acc, gap) in zip(runs, [(0.2, 0.6, 0.9), (0.2, 0.6, 0.9),
                                            (0.4, 0.9, 0.1), (0.4, 0.9, 0.1)], strict=True):
        run["epochs"][-1].update(val_loss=loss, val_acc=acc, generalization_gap=gap)
    summary = sweep_summary(runs, "classification")
    low, high = setting_key(0.0, 0.0), setting_key(0.5, 0.0)
    assert summary["best"]["val_loss"] == low  # lower is better
    assert summary["best"]["val_acc"] == high  # higher is better
    assert summary["best"]["generalization_gap"] == high  # lower is better
    assert set(summary["best"]) == {m.field for m in sweep_metrics("classification")}
    # best_dropout / best_weight_decay keep their meaning: lowest mean final val loss
    assert (summary["best_dropout"], summary["best_weight_decay"]) == (0.0, 0.0)
    for m in sweep_metrics("classification"):
        means = {r["key"]: r[stat_name(m.field)]["mean"] for r in summary["rates"]}
        pick = min if m.lower_is_better else max
        assert means[summary["best"][m.field]] == pick(means.values())


def test_sweep_metrics_name_summary_statistics():
    for task in ("classification", "regression"):
        keys = [m.field for m in sweep_metrics(task)]
        assert keys == ["val_loss", primary_metric(task), "generalization_gap", "best_val_loss"]
        row = sweep_summary([{"index": 0, "dropout": 0.1,
                              "epochs": fake_epochs(random.Random(9), 2, task)}], task)["rates"][0]
        assert all(stat_name(k) in row for k in keys)
    assert [m.lower_is_better for m in sweep_metrics("regression")] == [True, False, True, True]


def test_fit_epoch_is_when_the_training_set_was_first_memorized():
    accs = [0.5, 0.98, 0.99, 0.97, 1.0]
    epochs = [{"epoch": e, "val_loss": 1.0, "val_acc": 0.5, "train_acc": a}
              for e, a in enumerate(accs, 1)]
    assert run_summary(epochs, "classification")["fit_epoch"] == 3  # reached 99% first at 3
    assert run_summary(epochs[:2], "classification")["fit_epoch"] is None
    regression = [{"epoch": 1, "val_loss": 1.0, "val_r2": 0.1}]
    assert "fit_epoch" not in run_summary(regression, "regression")
