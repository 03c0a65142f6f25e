"""Expand an experiment config into its runs: dropout rates x folds x repeats.

A run is one trained model. A plain experiment has one run; a sweep has one run per
(rate, fold, repeat). Every run knows its own seed, rates and fold, so the trainer can put any
set of runs side by side in one batched model and each still trains exactly as if alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from app.ml.config import ExperimentConfig


@dataclass(frozen=True)
class RunSpec:
    index: int  # position in the experiment, 0-based
    dropout: float | list[float]  # the rate as the user chose it (swept value or model setting)
    layer_rates: tuple[float, ...]  # dropout rate p of each hidden layer
    input_rate: float  # dropout rate p of the inputs
    fold: int  # 0-based fold held out for validation; 0 when there is no cross-validation
    repeat: int  # 0-based repeat; the run's seed is train.seed + repeat
    seed: int
    weight_decay: float  # L2 coefficient of this run (a sweep may cross rates with it)


def run_dict(spec: RunSpec, epochs: list[dict], test: dict | None = None,
             confusion: list[list[int]] | None = None) -> dict:
    """A run as app.ml.summary.summarize takes it: its place in the sweep and its epochs."""
    return {"index": spec.index, "dropout": spec.dropout, "fold": spec.fold,
            "repeat": spec.repeat, "weight_decay": spec.weight_decay, "epochs": epochs,
            "test": test, "confusion": confusion}


def plan_runs(config: ExperimentConfig) -> list[RunSpec]:
    """Every run of the experiment, in a stable order: rate, weight decay, repeat, fold."""
    model, sweep = config.model, config.sweep
    rates: list[float | None] = (sweep.rates(config.train.seed) if sweep else None) or [None]
    decays = (sweep.weight_decay if sweep else None) or [config.train.weight_decay]
    target = sweep.target if sweep else "hidden"
    folds = sweep.folds if sweep else 1
    repeats = sweep.repeats if sweep else 1
    runs = []
    for rate in rates:
        layer_rates, input_rate = _place(rate, target, model.layer_rates(), model.input_dropout)
        for decay in decays:
            for repeat in range(repeats):
                for fold in range(folds):
                    runs.append(RunSpec(
                        index=len(runs),
                        dropout=model.dropout if rate is None else rate,
                        layer_rates=tuple(layer_rates), input_rate=input_rate,
                        fold=fold, repeat=repeat, seed=config.train.seed + repeat,
                        weight_decay=decay,
                    ))
    return runs


def _place(rate: float | None, target: str, layer_rates: list[float],
           input_rate: float) -> tuple[list[float], float]:
    """Put a swept rate where the sweep's target says; the other rates stay as configured."""
    if rate is None:
        return layer_rates, input_rate
    if target == "input":
        return layer_rates, rate
    if target == "hidden":
        return [rate] * len(layer_rates), input_rate
    layer = int(target.removeprefix("layer")) - 1
    return [rate if i == layer else p for i, p in enumerate(layer_rates)], input_rate


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Split range(n) into `folds` disjoint parts covering it, shuffled by seed.

    Parts differ in size by at most one. Every rate and repeat sees the same folds, so rates are
    compared on identical data (a paired comparison).
    """
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def epoch_fields(task: str) -> list[str]:
    """The per-epoch metric names, in a stable order (CSV columns, charts)."""
    if task == "classification":
        return ["epoch", "train_loss", "train_loss_dropout", "train_acc", "val_loss", "val_acc",
                "val_precision", "val_recall", "val_f1", "generalization_gap"]
    return ["epoch", "train_loss", "train_loss_dropout", "train_r2", "val_loss", "val_r2",
            "generalization_gap"]


SNAPSHOT_RUNS = 8  # at most this many runs of an experiment report snapshots


def snapshot_runs(specs: list[RunSpec], limit: int = SNAPSHOT_RUNS) -> set[int]:
    """Runs that report snapshots (app.ml.insight): the first fold and seed of each setting
    (rate, weight decay), at most `limit` of them."""
    chosen: dict[tuple, int] = {}
    for s in specs:
        key = (json.dumps(s.dropout), s.weight_decay)
        if key not in chosen and len(chosen) < limit:
            chosen[key] = s.index
    return set(chosen.values())
