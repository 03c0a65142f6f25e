"""The compare page's experiments (templates/compare.html): each one's data for the overlaid
charts and the numbers of its table column, saying in words which runs they are.

Settings, labels and colours come from app.web.views (settings_view, runs_view, charts), the
statistics from the stored summary (app.ml.summary); the page only draws them.
"""

from __future__ import annotations

from app.ml.config import ExperimentConfig
from app.ml.runs import Setting, plan_runs, setting_key, settings_of
from app.ml.summary import primary_metric, stat_name
from app.store import ExperimentRow
from app.web import palette
from app.web.views import _quantity, charts, rates_text, runs_view, settings_view


def compare_item(row: ExperimentRow, config: ExperimentConfig, summary: dict | None,
                 n: int) -> dict:
    """One experiment of the compare page: its data for the charts (settings with their
    rates' colours, runs, chart fields, the marker symbol that tells it from the others) and
    the numbers of its table column, saying which runs they are."""
    specs = plan_runs(config)
    settings = settings_of(specs)
    chart = charts(config.task)
    data = {"id": row.id, "letter": chr(ord("A") + n), "task": config.task,
            "symbol": palette.EXPERIMENT_SYMBOLS[n % len(palette.EXPERIMENT_SYMBOLS)],
            "settings": settings_view(settings), "runs": runs_view(config, specs, settings),
            "charts": {k: chart[k] for k in ("loss", "score")}}
    return {"row": row, "config": config, "label": data["letter"], "data": data,
            "rates": rates_text(config), "results": _compare_results(summary, config, settings)}


def _compare_results(summary: dict | None, config: ExperimentConfig,
                     settings: list[Setting]) -> dict | None:
    """Final numbers, with a line saying in words which runs they are: each setting's own for
    a single or paired run (one run each), else the best setting of a sweep (lowest mean final
    validation loss), mean ± std over its runs. `rows`: one entry per setting reported, with
    its label, colours and numbers."""
    score = primary_metric(config.task)
    name = _quantity(score)
    if not summary or not summary.get("runs"):
        return None
    colors = {s["key"]: s for s in settings_view(settings)}
    if "sweep" not in summary or config.paired:
        runs = {r["index"]: r for r in summary["runs"]}
        rows = []
        for s in settings:
            run = runs.get(s.runs[0]) or {}
            if not run.get("final"):
                continue
            one = {"std": None}
            rows.append({"label": s.label, "text_color": colors[s.key]["text_color"],
                         "val_loss": {**one, "mean": run["final"].get("val_loss")},
                         "score": {**one, "mean": run["final"].get(score)},
                         "best_val_loss": {**one, "mean": run.get("best_val_loss")},
                         "best_epoch": run.get("best_epoch")})
        if not rows:
            return None
        which = (f"one run, {rows[0]['label']}" if len(rows) == 1 else
                 f"each of two runs: {rows[0]['label']} and its p = 0 twin")
        return {"which": which, "score_name": name, "rows": rows}
    sweep = summary["sweep"]
    key = setting_key(sweep["best_dropout"], sweep["best_weight_decay"])
    row = next((r for r in sweep["rates"]
                if setting_key(r["dropout"], r.get("weight_decay")) == key), None)
    if row is None:
        return None
    label = next((s.label for s in settings if s.key == key), f"p = {sweep['best_dropout']}")
    runs = "one run" if row["runs"] == 1 else f"mean ± std of its {row['runs']} runs"
    return {"which": f"the best of {len(sweep['rates'])} settings, {label} (lowest mean final "
                     f"validation loss; {runs})",
            "score_name": name,
            "rows": [{"label": label, "text_color": colors[key]["text_color"]
                      if key in colors else palette.NEUTRAL,
                      "val_loss": row["final_val_loss"], "score": row[stat_name(score)],
                      "best_val_loss": row["best_val_loss"],
                      "best_epoch": row["best_epoch"]["mean"]}]}
