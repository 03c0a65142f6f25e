"""What the pages draw, computed in Python (app.web.views): the run panel's data-view, the sweep
chart's points (sweep.json against the stored summary), the thinned network (its counts against
its circles, its captions against the rates the run trained at), the status bar, the summary,
compare and recent lists. Unit tests on configs first, then the routes on real training.
"""

from __future__ import annotations

import html
import json
import random
import re
import statistics
from types import SimpleNamespace

import pytest
from conftest import TINY, cancel_quietly, finished, html_tree, start_running

from app.ml.config import ExperimentConfig
from app.ml.runs import plan_runs, run_dict, setting_key
from app.ml.summary import summarize
from app.web import pages, palette, texts, views

VIEW_KEYS = {"id", "task", "epochs", "total", "fields", "runs", "settings", "charts", "sweep",
             "paired", "snapshots", "colorbar", "key", "palette", "scenario", "notes", "dataset"}
SETTING_KEYS = {"key", "label", "x", "color", "text_color", "dot_color", "runs", "weight_decay",
                "symbol"}
RUN_KEYS = {"index", "setting", "label", "fold", "repeat"}
HEX = re.compile(r"#[0-9a-fA-F]{6}")


def config_of(data: dict) -> ExperimentConfig:
    return ExperimentConfig.model_validate(data)


def view_of(data: dict) -> dict:
    config = config_of(data)
    row = SimpleNamespace(id="exp1", total_epochs=config.n_runs * config.train.epochs)
    return views.run_view(row, config)


def view_attr(page: str) -> dict:
    """The run panel's data-view, parsed (attribute values come HTML-escaped)."""
    [panel] = html_tree(page).find_all("section", id="run")
    return json.loads(panel.attrs["data-view"])


# -- the run panel's view ---------------------------------------------------------------------


def test_view_of_a_single_run():
    view = view_of({"model": {"hidden": [8, 4], "dropout": [0.2, 0.5], "input_dropout": 0.1},
                    "train": {"epochs": 7}})
    assert set(view) == VIEW_KEYS
    assert (view["id"], view["task"], view["epochs"], view["total"]) == (
        "exp1", "classification", 7, 7)
    assert view["sweep"] is None
    [run] = view["runs"]
    [setting] = view["settings"]
    assert set(run) == RUN_KEYS and set(setting) == SETTING_KEYS
    assert run == {"index": 0, "setting": setting["key"], "label": "p = 0.2/0.5, inputs 0.1",
                   "fold": 0, "repeat": 0}
    assert setting["label"] == "p = 0.2/0.5, inputs 0.1"
    assert setting["x"] == "p = 0.2/0.5, inputs 0.1"  # a list of rates: a category
    # the colour of its rates' mean (0.35), as the colour bar marks it
    assert setting["color"] == palette.rate_color(0.35) and setting["runs"] == [0]
    assert setting["symbol"] is None
    assert [(m["p"], m["label"], m["color"]) for m in view["colorbar"]["marks"]] == [
        (0.35, "p = 0.2/0.5, inputs 0.1", palette.rate_color(0.35))]
    charts = view["charts"]
    assert list(charts) == ["loss", "score", "gap"]
    assert (charts["score"]["train"], charts["score"]["val"]) == ("train_acc", "val_acc")
    assert charts["score"]["title"] == "Accuracy"
    assert charts["gap"] == {
        "title": "Generalization gap (val − train loss)", "train": None,
        "val": "generalization_gap", "y_label": "val − train loss (cross-entropy, nats)",
        "fields": [{"field": "generalization_gap", "label": "val − train loss",
                    "color": setting["color"], "dash": "solid", "width": 2}]}
    # one run: every line in its rate's colour, the split as the line style; the dotted line
    # thicker, in the shade that keeps 3:1 between its dots
    c = setting["color"]
    assert charts["loss"]["fields"] == [
        {"field": "train_loss", "label": "train (eval mode)", "color": c, "dash": "dash",
         "width": 2},
        {"field": "val_loss", "label": "validation", "color": c, "dash": "solid", "width": 2},
        {"field": "train_loss_dropout", "label": "train mini-batch, dropout on",
         "color": palette.dotted_color(c), "dash": "dot", "width": 3}]
    assert setting["dot_color"] == palette.dotted_color(c)
    assert setting["text_color"] == palette.text_color(c)
    assert not view["paired"]
    assert view["snapshots"] == [{"run": 0, "setting": setting["key"]}]
    assert view["key"] == [{"label": "validation", "dash": "solid"},
                           {"label": "train (eval mode)", "dash": "dash"}]
    assert view["scenario"] is None and view["notes"] == []
    assert view["dataset"] == "moons, 200 training examples, noise 0.2 (input jitter); data seed 0"
    drawn = [f["field"] for c in charts.values() for f in c["fields"]]
    assert sorted(view["fields"]) == sorted(set(drawn))
    regression = view_of({"dataset": {"name": "sine"}})
    assert (regression["charts"]["score"]["train"], regression["charts"]["score"]["val"]) == (
        "train_r2", "val_r2")
    assert regression["charts"]["score"]["title"] == "R²"
    assert "val_r2" in regression["fields"] and "val_acc" not in regression["fields"]


def test_view_of_a_sweep_of_one_layer():
    view = view_of({"dataset": {"n_train": 60}, "model": {"hidden": [8, 8], "dropout": 0.2},
                    "sweep": {"dropout": [0.0, 0.25, 0.5], "target": "layer2", "folds": 2,
                              "repeats": 2}})
    settings = view["settings"]
    assert [s["x"] for s in settings] == [0.0, 0.25, 0.5]  # the swept value: numeric axis
    assert [s["label"] for s in settings] == ["p = 0.2/0", "p = 0.2/0.25", "p = 0.2/0.5"]
    # the colour of the swept rate (the layer swept), the same on every page
    assert [s["color"] for s in settings] == [palette.rate_color(p) for p in (0.0, 0.25, 0.5)]
    assert [m["p"] for m in view["colorbar"]["marks"]] == [0.0, 0.25, 0.5]  # the swept value
    assert [s["runs"] for s in settings] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert all(HEX.fullmatch(s["color"]) for s in settings)
    runs = view["runs"]
    assert [r["index"] for r in runs] == list(range(12))
    assert runs[5] == {"index": 5, "setting": settings[1]["key"],
                       "label": "p = 0.2/0.25 · fold 2/2 · seed +0", "fold": 1, "repeat": 0}
    assert runs[11]["label"] == "p = 0.2/0.5 · fold 2/2 · seed +1"
    for reseed, which in (("data", "data seed"), ("both", "seeds")):
        other = view_of({"model": {"hidden": [8]},
                         "sweep": {"dropout": [0.0, 0.5], "repeats": 2, "repeat_seeds": reseed}})
        assert other["runs"][1]["label"] == f"p = 0 · {which} +1"
    for s in settings:
        assert all(runs[i]["setting"] == s["key"] for i in s["runs"])
    sweep = view["sweep"]
    assert set(sweep) == {"x_label", "x_type", "x_range", "categories", "metrics", "points_url"}
    assert sweep["x_label"] == "dropout rate p (hidden layer 2)"
    assert sweep["x_type"] == "linear"
    # the axis spans the rates from the first point on: 0..0.5 with 6 % of room each side
    assert sweep["x_range"] == [-0.03, 0.53] and sweep["categories"] is None
    # a surface per setting: the first fold and seed of each
    assert view["snapshots"] == [{"run": s["runs"][0], "setting": s["key"]} for s in settings]
    assert sweep["points_url"] == "/e/exp1/sweep.json"
    assert sweep["metrics"] == [
        {"key": "val_loss", "label": "final validation loss", "lower": True},
        {"key": "val_acc", "label": "final validation accuracy", "lower": False},
        {"key": "generalization_gap", "label": "final generalization gap (val − train loss)",
         "lower": True},
        {"key": "best_val_loss", "label": "best validation loss (any epoch, picked on validation)",
         "lower": True}]


def test_view_labels_without_fold_or_seed_parts_when_the_sweep_has_none():
    view = view_of({"model": {"hidden": [8]},
                    "sweep": {"dropout": [0.1, 0.3], "target": "input",
                              "weight_decay": [0.0, 0.01]}})
    assert [r["label"] for r in view["runs"]] == [
        f"inputs p = {p}, hidden 0.5, weight decay {wd}"
        for p in ("0.1", "0.3") for wd in ("0", "0.01")]
    assert [s["x"] for s in view["settings"]] == [0.1, 0.1, 0.3, 0.3]
    # colour: the swept input rate; weight decay: a marker symbol, never a colour
    assert [s["color"] for s in view["settings"]] == [palette.rate_color(p)
                                                     for p in (0.1, 0.1, 0.3, 0.3)]
    assert [s["symbol"] for s in view["settings"]] == ["circle", "square"] * 2
    assert [m["label"] for m in view["colorbar"]["marks"]] == [
        "inputs p = 0.1, hidden 0.5", "inputs p = 0.3, hidden 0.5"]
    assert [s["weight_decay"] for s in view["settings"]] == [0.0, 0.01, 0.0, 0.01]
    assert view["sweep"]["x_label"] == "dropout rate p (the inputs)"


def test_a_sweep_of_seeds_at_per_layer_rates_is_a_category_axis():
    view = view_of({"model": {"hidden": [8, 8], "dropout": [0.1, 0.3]},
                    "sweep": {"repeats": 3, "weight_decay": [0.0, 0.1]}})
    assert view["sweep"]["x_type"] == "category"
    assert view["sweep"]["categories"] == ["p = 0.1/0.3"] and view["sweep"]["x_range"] is None
    assert [s["x"] for s in view["settings"]] == ["p = 0.1/0.3", "p = 0.1/0.3"]
    assert [s["label"] for s in view["settings"]] == ["p = 0.1/0.3, weight decay 0",
                                                      "p = 0.1/0.3, weight decay 0.1"]


def test_full_batch_training_gets_a_note():
    [note] = view_of({"dataset": {"n_train": 30}, "train": {"batch_size": 32}})["notes"]
    assert "one full-batch step" in note and "32 ≥ 30" in note
    # 3 folds of 60: each run trains on 40 examples
    assert view_of({"dataset": {"n_train": 60}, "train": {"batch_size": 40},
                    "sweep": {"folds": 3}})["notes"]
    assert not view_of({"dataset": {"n_train": 60}, "train": {"batch_size": 39},
                        "sweep": {"folds": 3}})["notes"]


@pytest.mark.parametrize(("dataset", "text"), [
    ({"name": "digits", "n_train": 100, "noise": 0.2},
     "digits, 100 training examples; data seed 0"),
    ({"name": "noise", "n_train": 100, "noise": 0.3, "label_noise": 0.1},
     "noise, 100 training examples, label noise 0.1 (each training label flipped with that "
     "probability); data seed 0"),
    ({"name": "sine", "noise": 0.1, "label_noise": 0.2, "seed": 4},
     "sine, 200 training examples, noise 0.1 (on the targets); data seed 4"),
    ({"name": "gaussians", "noise": 0.0, "extra_features": 3},
     "gaussians, 200 training examples, noise 0 (on top of the blobs' own spread), "
     "3 irrelevant features; data seed 0"),
])
def test_the_share_page_lists_only_dataset_fields_that_act(dataset, text):
    assert view_of({"dataset": dataset})["dataset"] == text


# -- a run beside its p = 0 twin ----------------------------------------------------------------

PAIRED = {"model": {"hidden": [16], "dropout": 0.5}, "train": {"epochs": 5}, "baseline": True}


def pair_summary(a: dict | None, b: dict | None) -> dict:
    """A stored summary of a paired run: run 0 (with dropout) and run 1 (p = 0) ending with
    these final values (None: a run that has not finished)."""
    runs = []
    for index, final in ((0, a), (1, b)):
        if final is None:
            runs.append({"index": index, "epochs_trained": 0})
            continue
        gap = (None if None in (final["val_loss"], final["train_loss"])
               else final["val_loss"] - final["train_loss"])
        final = {"val_acc": 0.9, "generalization_gap": gap, **final}
        runs.append({"index": index, "epochs_trained": 5, "final": final, "best_epoch": 3,
                     "best_val_loss": final["val_loss"] and final["val_loss"] * 0.9})
    return {"task": "classification", "metric": "val_acc", "runs": runs}


def test_view_of_a_paired_run_has_two_settings_and_no_sweep_chart():
    view = view_of(PAIRED)
    assert view["paired"] is True and view["sweep"] is None
    assert [s["label"] for s in view["settings"]] == ["p = 0.5", "p = 0"]
    assert [s["color"] for s in view["settings"]] == [palette.rate_color(0.5),
                                                     palette.rate_color(0)]
    assert [r["label"] for r in view["runs"]] == ["p = 0.5", "p = 0"]
    # both runs draw a decision surface, the chosen rate first
    assert view["snapshots"] == [{"run": 0, "setting": view["settings"][0]["key"]},
                                 {"run": 1, "setting": view["settings"][1]["key"]}]
    assert views.rates_text(config_of(PAIRED)) == "p = 0.5, beside its p = 0 twin"


def test_the_verdict_when_dropout_helped():
    config = config_of(PAIRED)
    summary = pair_summary({"val_loss": 0.31, "train_loss": 0.25, "val_acc": 0.9},
                           {"val_loss": 0.52, "train_loss": 0.10, "val_acc": 0.84})
    assert texts.paired_verdict(config, summary) == (
        "Without dropout (p = 0) the final validation loss is 0.52, 1.7× the 0.31 of p = 0.5; "
        "its training loss is lower (0.10 against 0.25): it fit the training points more "
        "closely and did worse on new data. That is overfitting, and dropout held it back. "
        "Validation accuracy: 90% at p = 0.5, 84% at p = 0.")


def test_the_verdict_when_the_twin_wins():
    config = config_of({**PAIRED, "model": {"hidden": [16], "dropout": 0.9}})
    summary = pair_summary({"val_loss": 0.40, "train_loss": 0.35, "val_acc": 0.8},
                           {"val_loss": 0.30, "train_loss": 0.20, "val_acc": 0.88})
    text = texts.paired_verdict(config, summary)
    assert text == (
        "Here dropout did not help: without dropout (p = 0) the final validation loss is 0.30, "
        "lower than the 0.40 of p = 0.9 (1.3× as much); its training loss is lower too (0.20 "
        "against 0.35). At p = 0.9 dropout cost more fit than it saved: too much "
        "regularization for this data, or the luck of one seed (a sweep with repeats tells "
        "which). Validation accuracy: 80% at p = 0.9, 88% at p = 0.")
    assert "held it back" not in text and "overfitting" not in text


@pytest.mark.parametrize("seed", range(30))
def test_the_verdict_reads_right_whatever_the_numbers(seed):
    """Random outcomes: the first clause names the right winner with the numbers as shown,
    and only an actual overfit (twin: lower training loss, higher validation loss) is
    called overfitting."""
    rng = random.Random(seed)
    va, vb, ta, tb = (round(rng.uniform(0.05, 1.5), 3) for _ in range(4))
    config = config_of(PAIRED)
    text = texts.paired_verdict(config, pair_summary(
        {"val_loss": va, "train_loss": ta}, {"val_loss": vb, "train_loss": tb}))
    shown = f"the final validation loss is {texts.num(vb)}"
    assert shown in text
    if vb >= va * texts.SAME:
        assert text.startswith("Without dropout") and f"the {texts.num(va)} of p = 0.5" in text
        assert f"{texts.times(vb / va)} the" in text
    elif va >= vb * texts.SAME:
        assert text.startswith("Here dropout did not help") and "lower than the" in text
    else:
        assert "about the same" in text
    assert ("overfitting" in text) == (vb >= va * texts.SAME and tb < ta)


def test_the_verdict_says_nothing_until_both_runs_end_and_names_a_divergence():
    config = config_of(PAIRED)
    both = {"val_loss": 0.3, "train_loss": 0.2}
    assert texts.paired_verdict(config, None) is None
    assert texts.paired_verdict(config, pair_summary(both, None)) is None
    assert texts.paired_verdict(config_of({**PAIRED, "baseline": False}),
                                pair_summary(both, both)) is None
    text = texts.paired_verdict(config, pair_summary(both, {"val_loss": None,
                                                            "train_loss": None}))
    assert text.startswith("The p = 0 twin diverged")
    same = texts.paired_verdict(config, pair_summary(both, {"val_loss": 0.31, "train_loss": 0.2}))
    assert "about the same" in same and "0.31" in same and "0.30" in same


def test_a_paired_runs_table_puts_the_two_runs_side_by_side():
    config = config_of(PAIRED)
    summary = pair_summary({"val_loss": 0.31, "train_loss": 0.25, "val_acc": 0.9},
                           {"val_loss": 0.52, "train_loss": 0.10, "val_acc": 0.84})
    table = views.summary_table(summary, config)
    assert table["kind"] == "pair"
    assert [c["label"] for c in table["columns"]] == ["p = 0.5", "p = 0"]
    assert [c["text_color"] for c in table["columns"]] == [
        palette.text_color(palette.rate_color(p)) for p in (0.5, 0)]
    rows = {r["field"]: r for r in table["rows"]}
    assert list(rows) == ["val_loss", "train_loss", "val_acc", "generalization_gap",
                          "best_val_loss"]
    assert rows["val_loss"]["cells"] == [0.31, 0.52] and rows["val_loss"]["better"] == 0
    assert rows["val_acc"]["better"] == 0  # higher is better
    assert rows["train_loss"]["better"] is None  # not a score
    assert rows["val_loss"]["name"] == "final validation loss"
    assert rows["best_val_loss"]["epochs"] == [3, 3]
    assert table["verdict"] == texts.paired_verdict(config, summary)
    assert views.summary_table(pair_summary(None, None), config)["rows"] == []


def test_each_chart_has_a_text_with_the_final_values_once_done():
    config = config_of(PAIRED)
    before = texts.chart_texts(config, None, "surface")
    assert set(before) == {"loss", "score", "gap", "surface", "confusion"}
    assert "p = 0.5, p = 0" in before["loss"] and "Final" not in before["loss"]
    summary = pair_summary({"val_loss": 0.31, "train_loss": 0.25, "val_acc": 0.9},
                           {"val_loss": 0.52, "train_loss": 0.10, "val_acc": 0.84})
    summary["runs"][0]["confusion"] = [[40, 10], [5, 45]]
    after = texts.chart_texts(config, summary, "surface")
    assert after["loss"].endswith("Final validation loss: 0.31 at p = 0.5, 0.52 at p = 0.")
    assert after["score"].endswith("Final validation accuracy: 90% at p = 0.5, 84% at p = 0.")
    assert "0.06 at p = 0.5, 0.42 at p = 0" in after["gap"]
    assert after["confusion"].endswith("85 of 100 correct (85%), run 0 (p = 0.5).")
    sweep = config_of(SWEEP)
    assert "sweep" in texts.chart_texts(sweep, None, None)
    assert "Lowest mean final validation loss: p = " in texts.chart_texts(
        sweep, fake_summary(sweep), None)["sweep"]


# -- compare: only the fields in use ----------------------------------------------------------


def dumped(data: dict) -> dict:
    return config_of(data).model_dump(mode="json")


def test_compare_lists_only_the_fields_in_use():
    single, listed = dumped({}), dumped({"sweep": {"dropout": [0.0, 0.5]}})
    grid = dumped({"sweep": {"grid_step": 0.25}})
    # a listed sweep against one run: the rates and where they go, not its unused bounds,
    # its one fold and one repeat, or which seeds the repeats would change
    assert pages.config_diff([single, listed]) == [
        ("sweep.dropout", ["", "0,0.5"]), ("sweep.target", ["", "hidden"])]
    # a grid's bounds are in use
    assert ("sweep.low", ["", "0"]) in pages.config_diff([listed, grid])
    # a twin that trains, against none; a dataset without noise to set
    assert pages.config_diff([single, dumped({"baseline": True})]) == [("baseline", ["", "true"])]
    assert pages.config_diff([dumped({"model": {"dropout": 0}}),
                              dumped({"model": {"dropout": 0}, "baseline": True})]) == []
    assert pages.config_diff([single, dumped({"dataset": {"name": "digits"}})]) == [
        ("dataset.name", ["moons", "digits"]), ("dataset.noise", ["0.2", ""])]
    repeats = dumped({"sweep": {"repeats": 2, "repeat_seeds": "data"}})
    assert ("sweep.repeat_seeds", ["", "data"]) in pages.config_diff([single, repeats])


# -- the sweep chart's points -----------------------------------------------------------------


def fake_summary(config: ExperimentConfig, seed: int = 0) -> dict:
    rng = random.Random(seed)
    runs = []
    for spec in plan_runs(config):
        epochs = []
        for e in range(1, config.train.epochs + 1):
            train, val = rng.uniform(0.1, 1), rng.uniform(0.2, 1.5)
            epochs.append({"epoch": e, "train_loss": train, "val_loss": val,
                           "val_acc": rng.uniform(0, 1), "train_acc": rng.uniform(0, 1),
                           "generalization_gap": val - train})
        runs.append(run_dict(spec, epochs))
    return json.loads(json.dumps(summarize(runs, config.task)))  # as stored


SWEEP = {"dataset": {"n_train": 60}, "model": {"hidden": [8]}, "train": {"epochs": 4},
         "sweep": {"dropout": [0.0, 0.3, 0.6], "folds": 2, "repeats": 2}}


def check_points(points: dict, summary: dict, view: dict) -> None:
    """sweep.json against the stored summary: same statistics, each run's value, best key."""
    assert points["ready"] is True
    assert list(points["metrics"]) == [m["key"] for m in view["sweep"]["metrics"]]
    rows = {setting_key(r["dropout"], r["weight_decay"]): r for r in summary["sweep"]["rates"]}
    settings = {s["key"]: s for s in view["settings"]}
    for key, metric in points["metrics"].items():
        stat = key if key.startswith("best_") else f"final_{key}"
        assert metric["best"] == summary["sweep"]["best"][key]
        assert [p["key"] for p in metric["settings"]] == list(settings)
        for p in metric["settings"]:
            assert set(p) == {"key", "x", "label", "mean", "std", "n", "values", "color"}
            s = settings[p["key"]]
            assert (p["x"], p["label"], p["color"]) == (s["x"], s["label"], s["color"])
            assert {k: p[k] for k in ("mean", "std", "n")} == rows[p["key"]][stat]
            runs = [summary["runs"][i] for i in s["runs"]]
            want = [r[key] if key.startswith("best_") else r["final"][key] for r in runs]
            assert p["values"] == want and p["n"] == len(want)
            assert p["mean"] == pytest.approx(statistics.mean(want))
            assert p["std"] == pytest.approx(statistics.stdev(want))


def test_sweep_points_are_the_summary_numbers():
    config = config_of(SWEEP)
    summary = fake_summary(config)
    view = view_of(SWEEP)
    check_points(views.sweep_points(config, summary), summary, view)
    assert views.sweep_points(config, None) == {"ready": False}


def test_sweep_points_of_a_summary_stored_before_best_and_keys():
    config = config_of(SWEEP)
    summary = fake_summary(config, seed=3)
    new = views.sweep_points(config, summary)
    del summary["sweep"]["best"]
    for row in summary["sweep"]["rates"]:
        del row["key"]
    assert views.sweep_points(config, summary) == new


# -- one thinned network ----------------------------------------------------------------------


def test_thinned_view_draws_the_runs_rates():
    config = config_of({"dataset": {"name": "digits"}, "model": {"hidden": [30, 5],
                        "dropout": 0.2, "input_dropout": 0.1},
                        "sweep": {"dropout": [0.0, 0.5], "target": "layer2"}})
    row = SimpleNamespace(id="exp1")
    t = views.thinned_view(row, config, 1, random.Random(0))
    inputs, hidden1, hidden2, outputs = t["layers"]
    assert [layer["size"] for layer in t["layers"]] == [64, 30, 5, 10]
    assert [layer["shown"] for layer in t["layers"]] == [12, 12, 5, 10]
    assert [layer["rate"] for layer in t["layers"]] == [0.1, 0.2, 0.5, 0.0]
    assert inputs["name"] == "input (12 of 64)" and hidden2["name"] == "hidden 2"
    assert [layer["caption"] for layer in t["layers"]] == [
        "p=0.1, keep 0.90, ×1.11", "p=0.2, keep 0.80, ×1.25", "p=0.5, keep 0.50, ×2.00",
        "no dropout"]
    assert t["total"] == 17
    assert t["kept"] == sum(u["kept"] for u in hidden1["units"] + hidden2["units"])
    assert all(u["kept"] for u in outputs["units"])
    assert t["label"] == "p = 0.2/0.5, inputs 0.1"
    assert t["choices"] == [(0, "p = 0.2/0, inputs 0.1"), (1, "p = 0.2/0.5, inputs 0.1")]
    zero = views.thinned_view(row, config, 0, random.Random(0))
    assert all(u["kept"] for u in zero["layers"][2]["units"])  # p = 0 drops nothing
    kept = [(a, b) for a, b in zip(t["layers"], t["layers"][1:])]
    assert len(t["edges"]) == sum(sum(u["kept"] for u in a["units"])
                                  * sum(v["kept"] for v in b["units"]) for a, b in kept)


# -- the routes, on real training -------------------------------------------------------------

LAYER_SWEEP = {"name": "layer sweep", "dataset": {"n_train": 50},
               "model": {"hidden": [16, 8], "dropout": 0.2}, "train": {"epochs": 3},
               "sweep": {"dropout": [0.0, 0.5], "target": "layer2", "repeats": 2}}


@pytest.fixture(scope="module")
def swept(client) -> dict:
    res = client.post("/api/experiments", json=LAYER_SWEEP)
    assert res.status_code == 201, res.text
    body = finished(client, res.json()["id"])
    assert body["status"] == "done", body.get("error")
    return body


@pytest.fixture(scope="module")
def single(client) -> dict:
    res = client.post("/api/experiments", json={**TINY, "model": {"hidden": [16],
                                                                   "dropout": 0.3}})
    body = finished(client, res.json()["id"])
    assert body["status"] == "done", body.get("error")
    return body


def test_sweep_json_equals_the_stored_summary(client, swept):
    res = client.get(f"/e/{swept['id']}/sweep.json")
    assert res.status_code == 200
    view = view_attr(client.get(f"/e/{swept['id']}").text)
    assert view["sweep"]["points_url"] == f"/e/{swept['id']}/sweep.json"
    check_points(res.json(), swept["summary"], view)
    assert [s["label"] for s in view["settings"]] == ["p = 0.2/0", "p = 0.2/0.5"]


def test_sweep_json_is_404_for_a_single_run_and_not_ready_while_training(client, single):
    assert client.get(f"/e/{single['id']}/sweep.json").status_code == 404
    assert client.get("/e/nope/sweep.json").status_code == 404
    long_sweep = {"dataset": {"n_train": 2000}, "train": {"epochs": 1000},
                  "sweep": {"dropout": [0.0, 0.5]}}
    exp_id = start_running(client, long_sweep)
    try:
        assert client.get(f"/e/{exp_id}/sweep.json").json() == {"ready": False}
    finally:
        cancel_quietly(client, exp_id)


def test_thinned_partial_counts_what_it_draws(client, swept):
    for run, layer2 in ((0, "no dropout"), (2, "p=0.5, keep 0.50, ×2.00")):
        res = client.get(f"/e/{swept['id']}/thinned?run={run}")
        assert res.status_code == 200
        [root] = html_tree(res.text).find_all("div", class_="thinned")
        assert root.attrs["id"] == f"thinned-{swept['id']}"
        assert root.attrs["hx-target"] == "this" and root.attrs["hx-swap"] == "outerHTML"
        assert root.attrs["data-run"] == str(run)
        svg = root.find("svg")
        assert svg.attrs["role"] == "img" and "hidden units" in svg.attrs["aria-label"]
        layers = root.find_all("g", class_="layer")
        hidden = [g for g in layers if "layer-hidden" in g.classes()]
        kept = sum(len(g.find_all("circle", class_="kept")) for g in hidden)
        total = sum(len(g.find_all("circle")) for g in hidden)
        assert (root.attrs["data-kept"], root.attrs["data-total"]) == (str(kept), str(total))
        assert total == 12 + 8  # 16 units shown as 12, then 8
        captions = [g.find("text", class_="layer-rate").text for g in layers]
        assert captions == ["no dropout", "p=0.2, keep 0.80, ×1.25", layer2, "no dropout"]
        assert [g.find("text", class_="layer-name").text for g in layers] == [
            "input", "hidden 1 (12 of 16)", "hidden 2", "output"]
        button = root.find("button", data_role="resample")
        assert button.attrs["hx-get"] == f"/e/{swept['id']}/thinned?run={run}"
    assert client.get(f"/e/{swept['id']}/thinned?run=4").status_code == 404


def test_run_panel_includes_its_partials_and_the_view(client, swept):
    page = client.get(f"/e/{swept['id']}").text
    tree = html_tree(page)
    [panel] = tree.find_all("section", id="run")
    assert panel.attrs["data-exp"] == swept["id"] and panel.attrs["data-status"] == "done"
    for gone in ("data-runs", "data-task", "data-epochs", "data-total"):
        assert gone not in panel.attrs
    view = view_attr(page)
    assert set(view) == VIEW_KEYS and view["total"] == 4 * 3
    assert panel.find("div", id=f"thinned-{swept['id']}")
    bar = panel.find("div", id=f"statusbar-{swept['id']}")
    assert bar.attrs["hx-trigger"] == "dp:status"
    options = [o.text for o in panel.find("select", data_role="sweep-metric").find_all("option")]
    assert options == [m["label"] for m in view["sweep"]["metrics"]]
    # the headline row: the loss chart and the decision surface; the other charts below
    headline = panel.find("div", class_="headline")
    assert headline.find("h3").text == view["charts"]["loss"]["title"]
    assert headline.find(data_chart="loss") and headline.find(data_chart="surface")
    titles = [box.find("h3").text for box in panel.find("div", class_="charts")
              .find_all("figure", class_="chart-box")]
    assert titles == [view["charts"][k]["title"] for k in ("score", "gap")]
    # every chart is named by its title and described by a text of its own
    for chart in panel.find_all(data_chart=True):
        assert chart.attrs["role"] == "img"
        for ref in chart.attrs["aria-labelledby"].split() + [chart.attrs["aria-describedby"]]:
            assert tree.find(id=ref).text, (chart.attrs["data-chart"], ref)
    # the rate slider runs over the settings (a sweep's one surface pane follows it)
    rate = panel.find("input", data_role="rate")
    assert (rate.attrs["min"], rate.attrs["max"]) == ("0", "1")
    assert rate.attrs["aria-valuetext"] == "p = 0.2/0"
    assert len(panel.find_all(data_pane=True)) == 1
    assert "data-pace" not in panel.attrs  # a share page follows, never paces
    # no raw metric field names anywhere in what the panel says
    assert not re.search(r"\b(val|train|final|best)_[a-z]+", panel.text), panel.text
    # the setup and the results say the rates as trained
    assert "sweep p ∈ {0, 0.5} on hidden layer 2, other layers 0.2" in html.unescape(page)
    rows = tree.find("section", id="summary").find("tbody").find_all("tr")
    assert [r.find("td").text for r in rows] == ["p = 0.2/0", "p = 0.2/0.5"]
    assert [r.attrs["data-setting"] for r in rows] == [s["key"] for s in view["settings"]]


def test_statusbar_partial_is_drawn_from_the_stored_state(client, single):
    res = client.get(f"/e/{single['id']}/statusbar")
    assert res.status_code == 200
    [bar] = html_tree(res.text).find_all("div", class_="statusbar")
    assert bar.attrs["id"] == f"statusbar-{single['id']}"
    assert bar.attrs["hx-get"] == f"/e/{single['id']}/statusbar"
    assert (bar.attrs["hx-trigger"], bar.attrs["hx-swap"]) == ("dp:status", "outerHTML")
    assert bar.find(data_role="status").text == "done"
    assert bar.find(data_role="progress").attrs["value"] == "3"
    assert bar.find(data_role="progress-text").text == "3 / 3 epochs"
    assert bar.find("button", data_role="stop").hidden()
    assert bar.find("a", data_role="share").attrs["href"] == f"/e/{single['id']}"


def test_single_run_summary_says_its_rate(client, single):
    summary = html_tree(client.get(f"/e/{single['id']}/summary").text)
    assert "At p = 0.3, after 3 epochs" in summary.find("section", id="summary").text
    names = [r.find("th").text for r in summary.find("tbody").find_all("tr")]
    assert names == ["loss", "accuracy", "F1 (macro)"]


def test_recent_list_shows_the_planned_rates_of_a_grid_sweep(client):
    grid = {**TINY, "model": {"hidden": [16], "dropout": 0.9},
            "sweep": {"low": 0.1, "high": 0.3, "grid_step": 0.1}}
    exp_id = client.post("/api/experiments", json=grid).json()["id"]
    try:
        rows = html_tree(client.get("/partials/recent").text).find("tbody").find_all("tr")
        [row] = [r for r in rows if r.find("a").attrs["href"] == f"/e/{exp_id}"]
        cells = [td.text for td in row.find_all("td")]
        assert "sweep p ∈ {0.1, 0.2, 0.3}" in cells
        assert "0.9" not in " ".join(cells)  # model.dropout: not what any run trained at
    finally:
        cancel_quietly(client, exp_id)


def test_compare_hands_settings_over_and_says_which_runs_it_reports(client, swept, single):
    res = client.get(f"/compare?ids={swept['id']},{single['id']}")
    assert res.status_code == 200
    tree = html_tree(res.text)
    data = json.loads(tree.find(data_compare=True).attrs["data-compare"])
    assert [d["id"] for d in data] == [swept["id"], single["id"]]
    assert [d["letter"] for d in data] == ["A", "B"]
    assert [d["task"] for d in data] == ["classification"] * 2
    assert [s["label"] for s in data[0]["settings"]] == ["p = 0.2/0", "p = 0.2/0.5"]
    assert [r["label"] for r in data[0]["runs"]] == [
        "p = 0.2/0 · seed +0", "p = 0.2/0 · seed +1", "p = 0.2/0.5 · seed +0",
        "p = 0.2/0.5 · seed +1"]
    assert data[1]["runs"] == [{"index": 0, "setting": data[1]["settings"][0]["key"],
                                "label": "p = 0.3", "fold": 0, "repeat": 0}]
    rows = {r.find("th").text: [td.text for td in r.find_all("td")]
            for r in tree.find("table", class_="diff").find("tbody").find_all("tr")}
    assert not any(k.startswith(("sweep.low", "sweep.high", "train.momentum")) for k in rows)
    assert "sweep.dropout" in rows and "sweep.target" in rows
    best = swept["summary"]["sweep"]
    label = "p = 0.2/0" if best["best_dropout"] == 0.0 else "p = 0.2/0.5"
    which = rows["numbers below are"]
    assert which == [f"the best of 2 settings, {label} (lowest mean final validation loss; "
                     "mean ± std of its 2 runs)", "one run, p = 0.3"]
    assert not any("run 0" in k for k in rows)
    final = single["summary"]["runs"][0]["final"]["val_loss"]
    assert rows["final validation loss"][1] == f"{final:.4g}"


@pytest.fixture(scope="module")
def paired(client) -> dict:
    res = client.post("/api/experiments", json={**TINY, "model": {"hidden": [16], "dropout": 0.3},
                                                 "baseline": True})
    body = finished(client, res.json()["id"])
    assert body["status"] == "done", body.get("error")
    return body


def test_compare_reports_each_run_of_a_paired_experiment(client, paired, single):
    tree = html_tree(client.get(f"/compare?ids={paired['id']},{single['id']}").text)
    rows = {r.find("th").text: r for r in tree.find("table", class_="diff").find("tbody")
            .find_all("tr")}
    assert [td.text for td in rows["numbers below are"].find_all("td")] == [
        "each of two runs: p = 0.3 and its p = 0 twin", "one run, p = 0.3"]
    assert [td.text for td in rows["baseline"].find_all("td")] == ["true", "–"]
    finals = [r["final"]["val_loss"] for r in paired["summary"]["runs"]]
    cell = rows["final validation loss"].find_all("td")[0]
    assert [v.text.replace(" :", ":") for v in cell.find_all("span", class_="compare-value")] == [
        f"p = 0.3: {finals[0]:.4g}", f"p = 0: {finals[1]:.4g}"]


def test_a_paired_page_says_what_dropout_changed_and_refreshes_it_out_of_band(client, paired):
    page = client.get(f"/e/{paired['id']}").text
    tree = html_tree(page)
    panel = tree.find("section", id="run")
    assert "paired" in panel.classes()
    config = config_of(paired["config"])
    verdict = texts.paired_verdict(config, paired["summary"])
    assert verdict and panel.find(id=f"verdict-{paired['id']}").text == verdict
    panes = panel.find_all(data_pane=True)
    assert [(p.attrs["data-run"], p.find(data_role="pane-rate").text) for p in panes] == [
        ("0", "p = 0.3"), ("1", "p = 0")]
    table = panel.find("table", class_="pair")
    assert [th.text for th in table.find("thead").find_all("th")] == ["p = 0.3", "p = 0"]
    # the summary fragment (fetched when training ends) carries the words out of band
    fragment = html_tree(client.get(f"/e/{paired['id']}/summary").text)
    oob = {n.attrs["id"]: n for n in fragment.find_all(hx_swap_oob="innerHTML")}
    assert oob[f"verdict-{paired['id']}"].text == verdict
    texts_now = texts.chart_texts(config, paired["summary"], "surface")
    for key, text in texts_now.items():
        assert oob[f"desc-{key}-{paired['id']}"].text == text
        assert panel.find(id=f"desc-{key}-{paired['id']}").text == text
    assert "Final validation loss: " in texts_now["loss"]
    # the full page has no out-of-band copies
    assert not tree.find_all(hx_swap_oob=True)
