"""What the pages draw, computed once in Python and handed over as data.

The run panel's `view` (settings of a sweep with their colours, each run's label, the fields
and legends of every chart, the sweep chart's axis and metrics, which runs draw decision
surfaces, whether run 1 is run 0's p = 0 twin, the colour bar of the rates, the guided scenario
it is), the sweep chart's points, the thinned-network picture, the summary table (a paired
run's two columns, or a scenario's claim judged on this experiment's numbers), and the compare
and recent lists. The panel's sentences (a paired run's verdict, each chart's text) are in
app.web.texts. Domain rules come from app.ml.runs (settings, rate labels, metric table),
app.ml.summary (statistics, the best setting per metric) and app.ml.scenarios (claims),
colours from app.web.palette (a rate is a colour, a split a line style); the page script only
draws what it gets.
"""

from __future__ import annotations

import random

from app.ml import scenarios
from app.ml.config import ExperimentConfig
from app.ml.datasets import CATALOG
from app.ml.runs import (
    METRICS,
    RunSpec,
    Setting,
    epoch_fields,
    metric_unit,
    plan_runs,
    rate_label,
    setting_key,
    settings_of,
    snapshot_runs,
)
from app.ml.summary import best_row, primary_metric, stat_name, sweep_metrics
from app.store import ExperimentRow
from app.web import forms, palette, texts

# -- the run panel --------------------------------------------------------------------------


def settings_view(settings: list[Setting]) -> list[dict]:
    """Settings as the page gets them. x is the swept rate when every setting has a single
    rate, else the rates' label (a category axis). The colour is the rate's (per-layer rates:
    their mean; palette.rate_color), with its shades for text (text_color) and for a dotted
    line (dot_color); when the settings differ in weight decay, each decay gets a marker
    symbol (else symbol is None)."""
    numeric = all(isinstance(s.dropout, int | float) for s in settings)
    decays = list(dict.fromkeys(s.weight_decay for s in settings))
    symbols = palette.DECAY_SYMBOLS
    def colors(s: Setting) -> dict:
        color = palette.rate_color(palette.rate_value(s.dropout))
        return {"color": color, "text_color": palette.text_color(color),
                "dot_color": palette.dotted_color(color)}

    return [{"key": s.key, "label": s.label,
             "x": float(s.dropout) if numeric else s.rates, **colors(s), "runs": list(s.runs),
             "weight_decay": s.weight_decay,
             "symbol": symbols[decays.index(s.weight_decay) % len(symbols)]
             if len(decays) > 1 else None}
            for s in settings]


def colorbar(settings: list[Setting]) -> dict:
    """The colour bar of a run panel: the rate scale, with a mark at each setting's rate
    (labelled with its rates; per-layer rates sit at their mean)."""
    marks: dict[float, str] = {}
    for s in settings:
        marks.setdefault(round(palette.rate_value(s.dropout), 6), s.rates)
    return palette.rate_bar(sorted(marks.items()))


def line_key(task: str) -> list[dict]:
    """What each line style means where rates and splits show together (a sweep's curves)."""
    return [{"label": palette.SPLIT_LEGEND[k], "dash": palette.DASH[k]} for k in ("val", "train")]


def runs_view(config: ExperimentConfig, specs: list[RunSpec],
              settings: list[Setting]) -> list[dict]:
    """Each run with its setting and a label: the rates it trained at, then its fold and seed
    when the sweep has several."""
    folds = config.sweep.folds if config.sweep else 1
    repeats = config.sweep.repeats if config.sweep else 1
    setting_of = {i: s for s in settings for i in s.runs}
    out = []
    for spec in specs:
        s = setting_of[spec.index]
        label = s.label
        if folds > 1:
            label += f" · fold {spec.fold + 1}/{folds}"
        if repeats > 1:
            which = {"train": "seed", "data": "data seed", "both": "seeds"}
            label += f" · {which[config.sweep.repeat_seeds]} +{spec.repeat}"
        out.append({"index": spec.index, "setting": s.key, "label": label, "fold": spec.fold,
                    "repeat": spec.repeat})
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _quantity(field: str) -> str:
    """"accuracy" for val_acc, "R²" for val_r2: the metric without its split."""
    return METRICS[field].label.removeprefix("validation ")


def _with_unit(name: str, field: str, task: str) -> str:
    unit = metric_unit(field, task)
    return f"{name} ({unit})" if unit else name


def charts(task: str, color: str = palette.NEUTRAL) -> dict:
    """The three curve charts: which fields each draws, with legend, colour and dash. A
    single run draws every line in the colour of its rate (`color`); the split is the line
    style: validation solid, training dashed, the mini-batch loss with dropout on dotted
    (thicker, in the rate's darker shade: palette.dotted_color)."""
    dash = palette.DASH
    score = primary_metric(task)
    train_score = "train_" + score.removeprefix("val_")

    def line(field: str, split: str) -> dict:
        return {"field": field, "label": METRICS[field].legend,
                "color": palette.dotted_color(color) if dash[split] == "dot" else color,
                "dash": dash[split], "width": palette.WIDTH[split]}

    return {
        "loss": {"title": "Loss", "train": "train_loss", "val": "val_loss",
                 "y_label": _with_unit("loss", "val_loss", task),
                 "fields": [line("train_loss", "train"), line("val_loss", "val"),
                            line("train_loss_dropout", "dropout")]},
        "score": {"title": _capital(_quantity(score)), "train": train_score, "val": score,
                  "y_label": _with_unit(_quantity(score), score, task),
                  "fields": [line(train_score, "train"), line(score, "val")]},
        "gap": {"title": _capital(METRICS["generalization_gap"].label), "train": None,
                "val": "generalization_gap",
                "y_label": _with_unit("val − train loss", "generalization_gap", task),
                "fields": [line("generalization_gap", "val")]},
    }


def page_colors() -> dict:
    """The colours that are no rate: neutral lines (the key of line styles, the sweep chart's
    line, the best setting's star), single runs' dots, the classes of the decision surface
    (and its middle), the training points of the prediction curve, the confusion matrix."""
    return {"neutral": palette.NEUTRAL, "dots": palette.RUN_DOTS,
            "classes": palette.CLASS_COLORS, "mid": palette.SURFACE_MID,
            "points": palette.POINTS, "counts": palette.COUNTS}


def run_view(row: ExperimentRow, config: ExperimentConfig) -> dict:
    """The run panel's data-view: everything the page script draws with, nothing to derive.

    `paired`: run 1 is the p = 0 twin of run 0 (no sweep chart then); `snapshots`: the runs
    that report decision surfaces or prediction curves, one per setting, in setting order."""
    specs = plan_runs(config)
    settings = settings_of(specs)
    shown = settings_view(settings)
    chart = charts(config.task, shown[0]["color"])
    fields = list(dict.fromkeys(f["field"] for c in chart.values() for f in c["fields"]))
    sweep = None
    if len(specs) > 1 and not config.paired:
        numeric = all(isinstance(s["x"], float) for s in shown)
        xs = [s["x"] for s in shown]
        sweep = {"x_label": _x_label(config) if numeric else "dropout rates p (per hidden layer)",
                 "x_type": "linear" if numeric else "category",
                 # the axis from the first point on: the settings' rates, padded, or their labels
                 "x_range": padded_range(xs) if numeric else None,
                 "categories": None if numeric else list(dict.fromkeys(xs)),
                 "metrics": [{"key": m.field, "label": m.label, "lower": m.lower_is_better}
                             for m in sweep_metrics(config.task)],
                 "points_url": f"/e/{row.id}/sweep.json"}
    chosen = snapshot_runs(specs)
    return {"id": row.id, "task": config.task, "epochs": config.train.epochs,
            "total": row.total_epochs, "fields": fields,
            "runs": runs_view(config, specs, settings), "settings": shown, "charts": chart,
            "sweep": sweep, "paired": config.paired,
            "snapshots": [{"run": s["runs"][0], "setting": s["key"]} for s in shown
                          if s["runs"][0] in chosen],
            "colorbar": colorbar(settings), "key": line_key(config.task),
            "palette": page_colors(), "scenario": scenario_view(config),
            "notes": notes(config), "dataset": dataset_text(config)}


def padded_range(xs: list[float]) -> list[float]:
    """An axis range around values with room on both sides (6 % of their span, at least
    0.03), so no point sits on the axis line: the same rule as static/js/plot.js padded."""
    lo, hi = min(xs), max(xs)
    pad = max(0.03, (hi - lo) * 0.06)
    return [round(lo - pad, 6), round(hi + pad, 6)]


def notes(config: ExperimentConfig) -> list[str]:
    """Things about the setup that change how to read its curves."""
    out = []
    folds = config.sweep.folds if config.sweep else 1
    n = config.dataset.n_train - (config.dataset.n_train // folds if folds > 1 else 0)
    if config.train.batch_size >= n:
        out.append(f"Batch size {config.train.batch_size} ≥ {n} training examples: each epoch "
                   "is one full-batch step, so the curves move one optimizer step per epoch "
                   "(and every example still gets its own dropout mask).")
    return out


def dataset_text(config: ExperimentConfig) -> str:
    """The dataset as the share page lists it: only the fields that act on this dataset."""
    d = config.dataset
    info = CATALOG[d.name]
    parts = [d.name, f"{d.n_train} training examples"]
    if info.synthetic and d.name != "noise":
        where = {"sine": "on the targets", "gaussians": "on top of the blobs' own spread"}
        parts.append(f"noise {d.noise:g} ({where.get(d.name, 'input jitter')})")
    if d.label_noise and info.task == "classification":
        parts.append(f"label noise {d.label_noise:g} (each training label flipped with that "
                     "probability)")
    if d.extra_features:
        parts.append(f"{d.extra_features} irrelevant features")
    return ", ".join(parts) + f"; data seed {d.seed}"


# -- a guided scenario ----------------------------------------------------------------------


def scenario_view(config: ExperimentConfig) -> dict | None:
    """The guided scenario this experiment is (at any seeds), as its page shows it: what to
    look for and the claim's checks with their margins; None for any other experiment."""
    s = scenarios.scenario_of(config)
    if s is None:
        return None
    return {"slug": s.slug, "title": s.title, "look_for": s.look_for, "claims": s.claims(),
            "seeds": [config.dataset.seed, config.train.seed],
            "held_out": config.dataset.seed == config.train.seed
            and config.dataset.seed in scenarios.HELD_OUT_SEEDS,
            "tuned": config.dataset.seed == config.train.seed
            and config.dataset.seed in scenarios.TUNED_SEEDS}


def scenario_result(config: ExperimentConfig, summary: dict | None) -> dict | None:
    """A finished scenario's claim judged on THIS experiment's numbers: each check with the
    measured values and whether it holds here (None unless the experiment is a scenario with
    every run summarized)."""
    s = scenarios.scenario_of(config)
    runs = (summary or {}).get("runs") or []
    if s is None or len(runs) != config.n_runs or not all(r.get("final") for r in runs):
        return None
    findings = s.judge(runs)
    return {"slug": s.slug, "look_for": s.look_for, "findings": [vars(f) for f in findings],
            "holds": all(f.holds for f in findings),
            "seeds": [config.dataset.seed, config.train.seed]}


def _x_label(config: ExperimentConfig) -> str:
    s = config.sweep
    swept = s is not None and s.rates(config.train.seed)
    where = forms.option_text("sweep.target", s.target) if swept else "every hidden layer"
    return f"dropout rate p ({where})"


# -- the sweep chart's points ---------------------------------------------------------------


def sweep_points(config: ExperimentConfig, summary: dict | None) -> dict:
    """Per sweep metric: each setting's mean, std and n as the stored summary has them, the
    values of its runs (the ones the mean is over), and the best setting's key."""
    if not summary or "sweep" not in summary:
        return {"ready": False}
    task = config.task
    sweep = summary["sweep"]
    rows = {setting_key(r["dropout"], r.get("weight_decay")): r for r in sweep["rates"]}
    runs = {r["index"]: r for r in summary["runs"]}
    shown = settings_view(settings_of(plan_runs(config)))
    metrics = {}
    for m in sweep_metrics(task):
        stat = stat_name(m.field)
        points = []
        for s in shown:
            row = rows.get(s["key"])
            if row is None or row[stat]["mean"] is None:
                continue
            values = [v for i in s["runs"] if (v := _run_value(runs.get(i), m.field)) is not None]
            points.append({"key": s["key"], "x": s["x"], "label": s["label"],
                           **row[stat], "values": values, "color": s["color"]})
        if "best" in sweep:
            best = sweep["best"].get(m.field)
        else:  # stored before summaries named the best setting per metric
            top = best_row(sweep["rates"], m.field)
            best = setting_key(top["dropout"], top.get("weight_decay")) if top else None
        metrics[m.field] = {"settings": points, "best": best}
    return {"ready": True, "metrics": metrics}


def _run_value(run: dict | None, key: str) -> float | None:
    """One run's value of a sweep metric, from its summary: final epoch, or best_val_loss."""
    if not run or not run.get("final"):
        return None
    return run.get(key) if key.startswith("best_") else run["final"].get(key)


# -- one thinned network --------------------------------------------------------------------

THIN_W, THIN_H = 520, 260  # SVG user units
THIN_SHOW = 12  # units drawn per layer at most; wider layers show a sample


def thinned_view(row: ExperimentRow, config: ExperimentConfig, run: int,
                 rng: random.Random) -> dict:
    """One random dropout mask over the real architecture, at the rates run `run` trained at.

    Columns: inputs, hidden layers, outputs. A unit is dropped with its layer's probability p
    (the inputs: the input rate; outputs never). kept/total count the hidden units drawn.
    """
    specs = plan_runs(config)
    spec = specs[run]
    info = CATALOG[config.dataset.name]
    sizes = [info.n_features + config.dataset.extra_features, *config.model.hidden,
             info.n_classes]
    rates = [spec.input_rate, *spec.layer_rates, 0.0]
    col_w = THIN_W / len(sizes)
    layers = []
    for i, (n, p) in enumerate(zip(sizes, rates, strict=True)):
        shown = min(n, THIN_SHOW)
        kind = "input" if i == 0 else "output" if i == len(sizes) - 1 else "hidden"
        name = {"input": "input", "output": "output"}.get(kind, f"hidden {i}")
        layers.append({
            "kind": kind, "x": round(col_w * (i + 0.5), 1), "size": n, "shown": shown,
            "r": round(max(3.0, min(8.0, 90 / shown)), 2), "rate": p,
            "name": name + (f" ({shown} of {n})" if n > shown else ""),
            "caption": (f"p={p:g}, keep {1 - p:.2f}, ×{1 / (1 - p):.2f}" if p > 0
                        else "no dropout"),
            "units": [{"y": round(22 + (THIN_H - 60) * (j + 0.5) / shown, 1),
                       "kept": rng.random() >= p} for j in range(shown)],
        })
    edges = [(a["x"], u["y"], b["x"], v["y"])
             for a, b in zip(layers, layers[1:]) for u in a["units"] for v in b["units"]
             if u["kept"] and v["kept"]]
    hidden = [u for layer in layers if layer["kind"] == "hidden" for u in layer["units"]]
    settings = settings_of(specs)
    return {"exp_id": row.id, "run": run, "width": THIN_W, "height": THIN_H,
            "layers": layers, "edges": edges,
            "colors": {"input": palette.INPUT_UNIT,
                       "kept": palette.rate_color(palette.rate_value(list(spec.layer_rates))),
                       "dropped": palette.DROPPED, "dropped_line": palette.DROPPED_LINE,
                       "edge": palette.EDGE},
            "kept": sum(u["kept"] for u in hidden), "total": len(hidden),
            "label": next(s.label for s in settings if run in s.runs),
            "choices": [(s.runs[0], s.label) for s in settings] if len(settings) > 1 else [],
            "setting_run": next(s.runs[0] for s in settings if run in s.runs)}


# -- the summary table ----------------------------------------------------------------------


def summary_table(summary: dict | None, config: ExperimentConfig) -> dict | None:
    """What partials/summary.html shows: a row per setting of a sweep (labels, mean ± std,
    the best setting per column), or one run's train/validation/test rows."""
    if not summary:
        return None
    specs = plan_runs(config)
    settings = settings_of(specs)
    task = config.task
    scenario = scenario_result(config, summary)
    if config.paired:
        return pair_table(config, summary, settings) | {"scenario": scenario}
    if "sweep" not in summary:
        return {"kind": "run", "label": settings[0].label, "rows": result_rows(task),
                "run": summary["runs"][0] if summary.get("runs") else {},
                "scenario": scenario}
    sweep = summary["sweep"]
    labels = {s.key: s.label for s in settings}
    metrics = sweep_metrics(task)
    best = sweep.get("best") or {}
    rows = []
    for r in sweep["rates"]:
        key = setting_key(r["dropout"], r.get("weight_decay"))
        rows.append({"key": key, "label": labels.get(key, f"p = {r['dropout']}"),
                     "runs": r["runs"],
                     "cells": [{**r[stat_name(m.field)], "best": best.get(m.field) == key}
                               for m in metrics],
                     "best_epoch": r["best_epoch"]["mean"],
                     "best": key == setting_key(sweep["best_dropout"], sweep["best_weight_decay"])})
    best_label = next((row["label"] for row in rows if row["best"]), None)
    return {"kind": "sweep", "rows": rows, "best_label": best_label,
            "columns": [{"label": m.label.split(" (")[0], "title": m.label,
                         "lower": m.lower_is_better} for m in metrics],
            "scenario": scenario}


def pair_table(config: ExperimentConfig, summary: dict, settings: list[Setting]) -> dict:
    """A paired run's results: a column per run (the chosen rates, then p = 0, each with its
    colours), a row per final metric, the better value of each row marked, and the verdict
    (app.web.texts.paired_verdict)."""
    finals = {r["index"]: r for r in summary.get("runs") or []}
    shown = settings_view(settings)
    by_run = {i: s for s in shown for i in s["runs"]}
    columns = [{"label": by_run[i]["label"], "color": by_run[i]["color"],
                "text_color": by_run[i]["text_color"]} for i in (0, 1)]
    score = primary_metric(config.task)
    rows = []
    for field in ("val_loss", "train_loss", score, "generalization_gap", "best_val_loss"):
        values = []
        for i in (0, 1):
            run = finals.get(i) or {}
            values.append(run.get(field) if field.startswith("best_")
                          else (run.get("final") or {}).get(field))
        better = None
        if None not in values and values[0] != values[1] and field != "train_loss":
            pick = min if METRICS[field].lower_is_better else max
            better = values.index(pick(values))
        label = METRICS[field].label
        rows.append({"field": field, "name": f"final {label}" if not field.startswith("best_")
                     else label, "cells": values, "better": better,
                     "epochs": [(finals.get(i) or {}).get("best_epoch") for i in (0, 1)]
                     if field == "best_val_loss" else None})
    done = all((finals.get(i) or {}).get("final") for i in (0, 1))
    return {"kind": "pair", "columns": columns, "rows": rows if done else [],
            "verdict": texts.paired_verdict(config, summary)}


def result_rows(task: str) -> list[dict]:
    """One run's final table: a row per validation metric shown, with its train and test
    fields where those exist."""
    fields = epoch_fields(task)
    out = []
    for val in ("val_loss", primary_metric(task), "val_f1"):
        if val not in fields:
            continue
        rest = val.removeprefix("val_")
        out.append({"name": _quantity(val),
                    "train": f"train_{rest}" if f"train_{rest}" in fields else None,
                    "val": val, "test": f"test_{rest}"})
    return out


# -- compare and recent ---------------------------------------------------------------------


def rates_text(config: ExperimentConfig) -> str:
    """The rates an experiment's runs trained at, in a few words: "p = 0.5, inputs 0.2" for
    one setting (", beside its p = 0 twin" when paired); for a sweep "sweep p ∈ {0, 0.25,
    0.5}", where it goes unless every hidden layer, and the rates that stayed fixed ("sweep
    p ∈ {0.1, 0.3} on the inputs, hidden 0.5")."""
    specs = plan_runs(config)
    s = config.sweep
    if not (s and s.rates(config.train.seed)):
        return rate_label(specs[0]) + (", beside its p = 0 twin" if config.paired else "")
    rates = list(dict.fromkeys(spec.dropout for spec in specs))
    text = f"sweep p ∈ {{{', '.join(f'{r:g}' for r in rates)}}}"
    first = specs[0]
    if s.target == "hidden":
        fixed = {"inputs": [first.input_rate]}
    elif s.target == "input":
        fixed = {"hidden": list(first.layer_rates)}
    else:
        layer = int(s.target.removeprefix("layer")) - 1
        fixed = {"other layers": [p for i, p in enumerate(first.layer_rates) if i != layer],
                 "inputs": [first.input_rate]}
    if s.target != "hidden":
        text += f" on {forms.option_text('sweep.target', s.target)}"
    for name, values in fixed.items():
        if any(values):
            shown = values if len(set(values)) > 1 else values[:1]
            text += f", {name} {'/'.join(f'{v:g}' for v in shown)}"
    return text
