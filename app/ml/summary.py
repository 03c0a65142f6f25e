"""Summaries of finished runs: final and best epochs per run, and per-rate statistics of a sweep.

Works on plain lists of epoch dicts (as stored or as streamed), so the server can summarize an
experiment from the database as well as from a fresh training result. Runs are grouped into
settings by app.ml.runs.setting_key, the same key the charts and snapshots use; the sample
standard deviation is computed here (`_mean_std`) and nowhere else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from app.ml.runs import METRICS, Metric, lower_is_better, setting_key


def primary_metric(task: str) -> str:
    """The score shown first: validation accuracy (classification) or R² (regression)."""
    return "val_acc" if task == "classification" else "val_r2"


def sweep_metrics(task: str) -> list[Metric]:
    """What a sweep compares its settings on, in menu order. Each key names a statistic of
    sweep_summary's rows (stat_name): the final epoch's value, or best_val_loss."""
    final = {"val_loss": "final validation loss",
             primary_metric(task): f"final {METRICS[primary_metric(task)].label}",
             "generalization_gap": "final generalization gap (val − train loss)"}
    metrics = [Metric(k, label, METRICS[k].legend, METRICS[k].unit, METRICS[k].lower_is_better)
               for k, label in final.items()]
    return [*metrics, METRICS["best_val_loss"]]


def stat_name(key: str) -> str:
    """The sweep_summary row entry of a sweep metric: "val_loss" -> "final_val_loss"."""
    return key if key.startswith("best_") else f"final_{key}"


def _loss(epoch: dict) -> float:
    """Validation loss for ranking; a diverged epoch (None) ranks last."""
    v = epoch["val_loss"]
    return math.inf if v is None else v


FIT_ACCURACY = 0.99  # training accuracy at which a classifier has (nearly) memorized its data


def run_summary(epochs: Sequence[dict], task: str) -> dict:
    """Final epoch's metrics, the epoch with the lowest validation loss, and for a classifier
    `fit_epoch`: the first epoch whose training accuracy (eval mode) reached FIT_ACCURACY
    (None if none did), i.e. when it had memorized its training set."""
    if not epochs:
        return {"epochs_trained": 0}
    best = min(epochs, key=_loss)
    score = primary_metric(task)
    out = {
        "epochs_trained": len(epochs),
        "final": {k: v for k, v in epochs[-1].items() if k != "epoch"},
        "best_epoch": best["epoch"],
        "best_val_loss": best["val_loss"],
        f"best_{score}": best[score],
    }
    if task == "classification":
        out["fit_epoch"] = next((e["epoch"] for e in epochs
                                 if (e.get("train_acc") or 0.0) >= FIT_ACCURACY), None)
    return out


def _mean_std(values: list[float | None]) -> dict:
    """Mean and sample std (n-1) over the finite values; None marks a diverged run."""
    values = [v for v in values if v is not None]
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


mean_std = _mean_std  # the one sample statistic, for callers outside this module


def sweep_summary(runs: Sequence[dict], task: str) -> dict:
    """Per setting (dropout rate, and weight decay if swept): mean and std over folds and
    repeats of the final and best metrics.

    `runs` are dicts with "dropout", "epochs" and optionally "weight_decay"; they are grouped
    by app.ml.runs.setting_key, and each row carries that "key". std is the sample standard
    deviation (n-1), 0 for one run. "best_dropout"/"best_weight_decay" name the setting with
    the lowest mean final validation loss; "best" maps every sweep metric (sweep_metrics) to
    the key of its best setting: lowest mean for losses and the gap, highest for accuracy/R².
    """
    score = primary_metric(task)
    by_setting: dict[str, list[dict]] = {}
    for run in runs:
        if run["epochs"]:
            key = setting_key(run["dropout"], run.get("weight_decay"))
            by_setting.setdefault(key, []).append(run)
    rates = []
    for key, group in by_setting.items():
        dropout, weight_decay = json.loads(key)
        finals = [g["epochs"][-1] for g in group]
        bests = [min(g["epochs"], key=_loss) for g in group]
        rates.append({
            "key": key,
            "dropout": dropout,
            "weight_decay": weight_decay,
            "runs": len(group),
            "final_val_loss": _mean_std([f["val_loss"] for f in finals]),
            f"final_{score}": _mean_std([f[score] for f in finals]),
            "final_generalization_gap": _mean_std([f["generalization_gap"] for f in finals]),
            "best_val_loss": _mean_std([b["val_loss"] for b in bests]),
            f"best_{score}": _mean_std([b[score] for b in bests]),
            "best_epoch": _mean_std([float(b["epoch"]) for b in bests]),
        })
    best = best_row(rates, "val_loss")
    return {"rates": rates, "best_dropout": best["dropout"] if best else None,
            "best_weight_decay": best["weight_decay"] if best else None,
            "best": {m.field: (b["key"] if (b := best_row(rates, m.field)) else None)
                     for m in sweep_metrics(task)}}


def best_row(rates: list[dict], key: str) -> dict | None:
    """The sweep_summary row with the best mean of a sweep metric (direction from
    app.ml.runs.METRICS); rows without a mean are left out, ties go to the first."""
    stat = stat_name(key)
    ranked = [r for r in rates if r[stat]["mean"] is not None]
    if not ranked:
        return None
    sign = 1 if lower_is_better(key) else -1
    return min(ranked, key=lambda r: sign * r[stat]["mean"])


def summarize(runs: Sequence[dict], task: str) -> dict:
    """The experiment summary of CONTRACT.md: per-run results, plus per-setting statistics
    ("sweep") whenever there are several runs: a sweep's, or a `baseline` pair's two settings
    (the chosen rate, run 0, and its p = 0 twin, run 1), one run each, so the pair compares
    the same way a sweep of [rate, 0] would."""
    out: dict = {"task": task, "metric": primary_metric(task),
                 "runs": [{"index": r["index"], **run_summary(r["epochs"], task),
                           **({"test": r["test"]} if r.get("test") else {}),
                           **({"confusion": r["confusion"]} if r.get("confusion") else {})}
                          for r in runs]}
    if len(runs) > 1:
        out["sweep"] = sweep_summary(runs, task)
    return out
