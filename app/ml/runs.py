"""Expand an experiment config into its runs: dropout rates x folds x repeats.

A run is one trained model. A plain experiment has one run, or two with `baseline`: run 0 as
configured and run 1, its p = 0 twin (`twin_of`); a sweep has one run per (rate, fold, repeat).
Every run knows its own seed, rates and fold, so the trainer can put any set of runs side by
side in one batched model and each still trains exactly as if alone.

Runs that differ only by fold or seed form a *setting* (`settings_of`): the summary's
statistics, the snapshots and every chart group runs by the same setting key. The per-epoch
metric fields, with their labels and which direction is better, are listed here too
(`METRICS`), so that tables, charts and the summary's "best" read one definition. No torch
here: the web process imports this module.
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
    repeat: int  # 0-based repeat; it adds to train.seed, dataset.seed or both (repeat_seeds)
    seed: int  # training seed: initial weights, data order, dropout masks
    weight_decay: float  # weight decay of this run (a sweep may cross rates with it)
    data_seed: int = 0  # seed the run's dataset is drawn and split with


def run_dict(spec: RunSpec, epochs: list[dict], test: dict | None = None,
             confusion: list[list[int]] | None = None) -> dict:
    """A run as app.ml.summary.summarize takes it: its place in the sweep and its epochs."""
    return {"index": spec.index, "dropout": spec.dropout, "fold": spec.fold,
            "repeat": spec.repeat, "weight_decay": spec.weight_decay, "epochs": epochs,
            "test": test, "confusion": confusion}


def plan_runs(config: ExperimentConfig) -> list[RunSpec]:
    """Every run of the experiment, in a stable order: rate, weight decay, repeat, fold.

    Repeat i adds i to train.seed, to dataset.seed, or to both (sweep.repeat_seeds): a repeat
    over data seeds trains on its own draw of the dataset, as the same run alone would.
    """
    model, sweep = config.model, config.sweep
    rates: list[float | None] = (sweep.rates(config.train.seed) if sweep else None) or [None]
    decays = (sweep.weight_decay if sweep else None) or [config.train.weight_decay]
    target = sweep.target if sweep else "hidden"
    folds = sweep.folds if sweep else 1
    repeats = sweep.repeats if sweep else 1
    reseed = sweep.repeat_seeds if sweep else "train"
    step_train, step_data = int(reseed != "data"), int(reseed != "train")
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
                        fold=fold, repeat=repeat,
                        seed=config.train.seed + step_train * repeat,
                        weight_decay=decay,
                        data_seed=config.dataset.seed + step_data * repeat,
                    ))
    if config.paired:  # the p = 0 twin: same seeds, same data, same initial weights
        runs.append(twin_of(runs[0]))
    return runs


def twin_of(run: RunSpec) -> RunSpec:
    """Run 1 of a `baseline` pair: run 0 with every rate at 0, hidden layers and inputs alike.

    Its `dropout` is 0.0, so it is a setting of its own ("p = 0"). When run 0's own `dropout`
    is already 0.0 (only its inputs are dropped) the twin's is a list of zeros instead, one per
    hidden layer, which says the same: otherwise both runs would share one setting key and the
    summary would average them as repeats of one setting.
    """
    hidden = len(run.layer_rates)
    same = not isinstance(run.dropout, list) and run.dropout == 0
    return RunSpec(index=1, dropout=[0.0] * hidden if same else 0.0, layer_rates=(0.0,) * hidden,
                   input_rate=0.0, fold=0, repeat=0, seed=run.seed,
                   weight_decay=run.weight_decay, data_seed=run.data_seed)


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

    Parts differ in size by at most one, and their sizes do not depend on the seed. The seed is
    the dataset's: every rate (and every repeat over training seeds) sees the same folds, so
    rates are compared on identical data (a paired comparison).
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


# -- what each metric is ------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    field: str  # the epoch field (or summary key) it is stored under
    label: str  # what it measures, in words: table headers, axis titles, menus
    legend: str  # short name beside the other curves of its chart
    unit: str  # "" for a pure number; "loss": the task's loss (metric_unit says which)
    lower_is_better: bool


_METRICS = [
    Metric("train_loss", "train loss (eval mode)", "train (eval mode)", "loss", True),
    Metric("train_loss_dropout", "train mini-batch loss, dropout on",
           "train mini-batch, dropout on", "loss", True),
    Metric("val_loss", "validation loss", "validation", "loss", True),
    Metric("train_acc", "train accuracy (eval mode)", "train (eval mode)", "fraction correct",
           False),
    Metric("val_acc", "validation accuracy", "validation", "fraction correct", False),
    Metric("val_precision", "validation precision (macro)", "precision", "", False),
    Metric("val_recall", "validation recall (macro)", "recall", "", False),
    Metric("val_f1", "validation F1 (macro)", "F1", "", False),
    Metric("train_r2", "train R² (eval mode)", "train (eval mode)", "", False),
    Metric("val_r2", "validation R²", "validation", "", False),
    Metric("generalization_gap", "generalization gap (val − train loss)", "val − train loss",
           "loss", True),
    Metric("best_val_loss", "best validation loss (any epoch, picked on validation)",
           "best validation", "loss", True),
]
METRICS: dict[str, Metric] = {m.field: m for m in _METRICS}


def metric_fields(task: str) -> list[Metric]:
    """The task's per-epoch metrics (every epoch field but `epoch`), in epoch_fields order."""
    return [METRICS[f] for f in epoch_fields(task) if f != "epoch"]


def lower_is_better(field: str) -> bool:
    """Direction of a metric: losses and the gap go down, accuracy, F1 and R² go up."""
    return METRICS[field].lower_is_better


def metric_unit(field: str, task: str) -> str:
    """The unit of a metric's values for a task ("" for a pure number): a loss is the
    cross-entropy in nats (classification) or the mean squared error (regression)."""
    unit = METRICS[field].unit
    if unit != "loss":
        return unit
    return "cross-entropy, nats" if task == "classification" else "mean squared error"


# -- settings: runs that differ only by fold or seed --------------------------------------------


@dataclass(frozen=True)
class Setting:
    key: str  # stable id: json of [dropout, weight_decay] (setting_key)
    dropout: float | list[float]  # the rate as chosen or swept (RunSpec.dropout)
    weight_decay: float
    label: str  # the rates its runs trained at, e.g. "p = 0.5", "p = 0.2/0.5, inputs 0.1",
    # with ", weight decay 0.01" added when the experiment's settings differ in weight decay
    runs: tuple[int, ...]  # run indices, in plan order
    rates: str = ""  # the label without the weight decay part: the rates alone


def setting_key(dropout: float | list[float], weight_decay: float | None) -> str:
    """The id of a setting; runs (and summary rows) with equal keys are one setting."""
    return json.dumps([dropout, weight_decay])


def _rates_text(rates: tuple[float, ...]) -> str:
    if len(set(rates)) == 1:
        return f"{rates[0]:g}"
    return "/".join(f"{r:g}" for r in rates)


def rate_label(spec: RunSpec, n_layers: int | None = None, *, inputs_first: bool = False) -> str:
    """The dropout rate(s) one run trained at: "p = 0.5", "p = 0.2/0.5" (per hidden layer),
    "p = 0.5, inputs 0.2", "no dropout" (no hidden layer, no input dropout).

    Read from the rates the run used (layer_rates, input_rate), never from model.dropout, so
    a swept rate, a swept input rate or a swept layer show as trained. `n_layers` limits the
    hidden layers described (default all; 0: the inputs only). `inputs_first` leads with the
    input rate ("inputs p = 0.3, hidden 0.5"), for a sweep of input dropout.
    """
    hidden = spec.layer_rates if n_layers is None else spec.layer_rates[:n_layers]
    inputs = spec.input_rate
    if inputs_first or not hidden:
        if not hidden:
            return f"inputs p = {inputs:g}" if inputs > 0 else "no dropout"
        text = f"inputs p = {inputs:g}"
        return text + (f", hidden {_rates_text(hidden)}" if any(hidden) else "")
    return f"p = {_rates_text(hidden)}" + (f", inputs {inputs:g}" if inputs > 0 else "")


def settings_of(specs: list[RunSpec]) -> list[Setting]:
    """The settings of an experiment, in plan order: its runs grouped by (rate, weight decay).

    Every run of a setting trains at the same rates, so the setting's label is its first
    run's rate_label; ", weight decay ..." is added when the experiment's settings differ in
    weight decay. An input sweep (input rates differ, hidden rates do not) leads with the inputs.
    """
    groups: dict[str, list[RunSpec]] = {}
    for s in specs:
        groups.setdefault(setting_key(s.dropout, s.weight_decay), []).append(s)
    decays = len({s.weight_decay for s in specs}) > 1
    inputs_first = (len({s.input_rate for s in specs}) > 1
                    and len({s.layer_rates for s in specs}) == 1)
    out = []
    for key, group in groups.items():
        first = group[0]
        rates = rate_label(first, inputs_first=inputs_first)
        label = rates + (f", weight decay {first.weight_decay:g}" if decays else "")
        out.append(Setting(key=key, dropout=first.dropout, weight_decay=first.weight_decay,
                           label=label, runs=tuple(s.index for s in group), rates=rates))
    return out


# At most this many runs of an experiment report snapshots: one per rate of a sweep of up to
# 16 rates, so a finished sweep can show any rate's decision surface. Their cost stays within
# insight.BUDGET at any count (spacing is per member); bench/insight.py measures a 16-rate sweep.
SNAPSHOT_RUNS = 16


def snapshot_runs(specs: list[RunSpec], limit: int = SNAPSHOT_RUNS) -> set[int]:
    """Runs that report snapshots (app.ml.insight): the first run (first fold and seed) of
    each setting, for at most `limit` settings."""
    return {s.runs[0] for s in settings_of(specs)[:limit]}
