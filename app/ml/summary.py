"""Summaries of finished runs: final and best epochs per run, and per-rate statistics of a sweep.

Works on plain lists of epoch dicts (as stored or as streamed), so the server can summarize an
experiment from the database as well as from a fresh training result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence


def primary_metric(task: str) -> str:
    """The score shown first: validation accuracy (classification) or R² (regression)."""
    return "val_acc" if task == "classification" else "val_r2"


def _loss(epoch: dict) -> float:
    """Validation loss for ranking; a diverged epoch (None) ranks last."""
    v = epoch["val_loss"]
    return math.inf if v is None else v


def run_summary(epochs: Sequence[dict], task: str) -> dict:
    """Final epoch's metrics and the epoch with the lowest validation loss."""
    if not epochs:
        return {"epochs_trained": 0}
    best = min(epochs, key=_loss)
    score = primary_metric(task)
    return {
        "epochs_trained": len(epochs),
        "final": {k: v for k, v in epochs[-1].items() if k != "epoch"},
        "best_epoch": best["epoch"],
        "best_val_loss": best["val_loss"],
        f"best_{score}": best[score],
    }


def _mean_std(values: list[float | None]) -> dict:
    """Mean and sample std (n-1) over the finite values; None marks a diverged run."""
    values = [v for v in values if v is not None]
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def sweep_summary(runs: Sequence[dict], task: str) -> dict:
    """Per setting (dropout rate, and weight decay if swept): mean and std over folds and
    repeats of the final and best metrics.

    `runs` are dicts with "dropout", "epochs" and optionally "weight_decay". The best setting
    is the one with the lowest mean final validation loss. std is the sample standard
    deviation (n-1), 0 for one run.
    """
    score = primary_metric(task)
    by_setting: dict[str, list[dict]] = {}
    for run in runs:
        if run["epochs"]:
            key = json.dumps([run["dropout"], run.get("weight_decay")])
            by_setting.setdefault(key, []).append(run)
    rates = []
    for key, group in by_setting.items():
        dropout, weight_decay = json.loads(key)
        finals = [g["epochs"][-1] for g in group]
        bests = [min(g["epochs"], key=_loss) for g in group]
        rates.append({
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
    ranked = [r for r in rates if r["final_val_loss"]["mean"] is not None]
    best = min(ranked, key=lambda r: r["final_val_loss"]["mean"]) if ranked else None
    return {"rates": rates, "best_dropout": best["dropout"] if best else None,
            "best_weight_decay": best["weight_decay"] if best else None}


def summarize(runs: Sequence[dict], task: str) -> dict:
    """The experiment summary of CONTRACT.md: per-run results, plus per-rate stats if many."""
    out: dict = {"task": task, "metric": primary_metric(task),
                 "runs": [{"index": r["index"], **run_summary(r["epochs"], task),
                           **({"test": r["test"]} if r.get("test") else {}),
                           **({"confusion": r["confusion"]} if r.get("confusion") else {})}
                          for r in runs]}
    if len(runs) > 1:
        out["sweep"] = sweep_summary(runs, task)
    return out
