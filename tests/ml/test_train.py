"""The trainer against a plain PyTorch training loop, member independence, k-fold, and science.

`plain_training` below is the independent oracle: the textbook script a reader would write
(nn.Linear layers built under torch.manual_seed(seed), torch.optim, one torch.randperm per epoch
from the global generator, F.cross_entropy), with dropout masks drawn the documented way
(numpy default_rng(seed), one rng.random((batch, cols), float32) per step, kept when u >= p).
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.ml import datasets
from app.ml.config import ExperimentConfig
from app.ml.runs import fold_indices
from app.ml.train import epoch_fields, train

ACT = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu, "sigmoid": torch.sigmoid}


def plain_training(config, split, seed, rates, input_rate):
    """Train one network the textbook way; return per-epoch metrics and final test metrics.

    split: dict of (x, y) numpy arrays for "train", "val" and "test".
    """
    cfg, task = config.train, config.task
    hidden = config.model.hidden
    n_in = split["train"][0].shape[1]
    n_out = datasets.CATALOG[config.dataset.name].n_classes
    sizes = [n_in, *hidden, n_out]
    torch.manual_seed(seed)
    layers = [nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])]
    params = [p for lin in layers for p in lin.parameters()]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay, foreach=False)
    else:
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        opt = cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    act = ACT[config.model.activation]

    # dropout masks: columns are the hidden layers' units, then the inputs if they drop
    rng = np.random.default_rng(seed)
    p_cols = np.repeat(np.asarray(rates, np.float32), hidden)
    if input_rate > 0:
        p_cols = np.concatenate([p_cols, np.full(n_in, input_rate, np.float32)])
    drops = bool(p_cols.any())

    def forward(x, mask=None):
        if mask is not None and input_rate > 0:
            x = x * mask[:, sum(hidden):]
        start = 0
        for lin, width in zip(layers[:-1], hidden, strict=True):
            x = act(lin(x))
            if mask is not None:
                x = x * mask[:, start:start + width]
            start += width
        return layers[-1](x)

    def loss_fn(out, y):
        return F.cross_entropy(out, y) if task == "classification" else F.mse_loss(out[:, 0], y)

    def evaluate(name):
        x, y = (torch.from_numpy(a) for a in split[name])
        with torch.no_grad():
            out = forward(x)
        row = {"loss": loss_fn(out, y).item()}
        if task == "classification":
            row["acc"] = (out.argmax(1) == y).float().mean().item()
        else:
            row["r2"] = 1 - row["loss"] / (y - y.mean()).square().mean().item()
        return row

    x_train, y_train = (torch.from_numpy(a) for a in split["train"])
    n = len(y_train)
    epochs = []
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(n)
        running = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            mask = None
            if drops:
                u = rng.random((len(idx), len(p_cols)), dtype=np.float32)
                mask = torch.from_numpy(((u >= p_cols) / (1 - p_cols)).astype(np.float32))
            loss = loss_fn(forward(x_train[idx], mask), y_train[idx])
            running += loss.item() * len(idx)
            if cfg.l1:
                loss = loss + cfg.l1 * sum(lin.weight.abs().sum() for lin in layers)
            opt.zero_grad()
            loss.backward()
            opt.step()
        tr, va = evaluate("train"), evaluate("val")
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_loss_dropout": running / n,
               "val_loss": va["loss"], "generalization_gap": va["loss"] - tr["loss"]}
        metric = "acc" if task == "classification" else "r2"
        row[f"train_{metric}"], row[f"val_{metric}"] = tr[metric], va[metric]
        epochs.append(row)
    return epochs, {f"test_{k}": v for k, v in evaluate("test").items()}


def splits_of(config):
    d = config.dataset
    data = datasets.load(d.name, d.n_train, d.noise, d.seed, d.label_noise, d.extra_features)
    return {name: (getattr(data, name).x, getattr(data, name).y)
            for name in ("train", "val", "test")}


# Float32 rounding apart, the engine computes what the oracle does: the largest difference seen
# over these tests is 3.6e-7 (three classes, extra features), so 1e-6 still catches any slip.
TOL = 1e-6


def assert_matches(engine_epochs, oracle_epochs, tol=TOL):
    assert len(engine_epochs) == len(oracle_epochs)
    for got, want in zip(engine_epochs, oracle_epochs, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=tol), (got["epoch"], key)


ORACLE_CASES = {
    "adam_p0": {},
    "sgd_momentum_weight_decay": {"train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                            "weight_decay": 0.01}},
    "adamw_weight_decay": {"train": {"optimizer": "adamw", "weight_decay": 0.1}},
    "adam_dropout_input_dropout_l1": {"model": {"dropout": 0.3, "input_dropout": 0.2},
                                      "train": {"l1": 0.001, "seed": 4}},
    "per_layer_rates_tanh": {"model": {"dropout": [0.5, 0.0], "activation": "tanh"},
                             "train": {"batch_size": 7}},
    "three_classes_extra_features": {"dataset": {"name": "wine", "n_train": 60,
                                                 "extra_features": 3},
                                     "model": {"dropout": 0.2}},
    "sine_regression_sgd": {"dataset": {"name": "sine", "noise": 0.1},
                            "model": {"dropout": 0.1, "activation": "gelu"},
                            "train": {"optimizer": "sgd", "lr": 0.05}},
}


@pytest.mark.parametrize("case", list(ORACLE_CASES))
def test_engine_equals_plain_pytorch_training(make_config, case):
    config = make_config(**ORACLE_CASES[case])  # 3 epochs
    result = train(config)
    assert result.status == "done"
    [run] = result.runs
    spec = run.spec
    want, want_test = plain_training(config, splits_of(config), spec.seed, spec.layer_rates,
                                     spec.input_rate)
    assert_matches(run.epochs, want)
    for key, value in want_test.items():
        assert run.test[key] == pytest.approx(value, abs=TOL)
    # the curve moved: training did something
    assert run.epochs[-1]["train_loss"] < run.epochs[0]["train_loss"]


def test_epoch_rows_have_the_contract_fields(make_config):
    cls = train(make_config()).runs[0].epochs
    assert [list(row) for row in cls] == [epoch_fields("classification")] * 3
    assert [row["epoch"] for row in cls] == [1, 2, 3]
    for name in ("train_loss", "val_loss", "train_acc", "val_acc", "val_precision",
                 "val_recall", "val_f1"):
        assert name in cls[0]
    reg = train(make_config(dataset={"name": "sine"})).runs[0].epochs
    assert list(reg[0]) == epoch_fields("regression")
    for name in ("train_loss", "val_loss", "train_r2", "val_r2"):
        assert name in reg[0]
    for row in cls + reg:
        assert row["generalization_gap"] == pytest.approx(row["val_loss"] - row["train_loss"],
                                                          abs=1e-6)


def test_on_epoch_streams_every_row_once(make_config):
    config = make_config(sweep={"dropout": [0.0, 0.4], "repeats": 2})
    seen = []
    result = train(config, on_epoch=lambda rows: seen.extend(rows))
    assert len(seen) == 4 * 3
    stored = {(r.spec.index, e["epoch"]): e for r in result.runs for e in r.epochs}
    assert {(run, row["epoch"]): row for run, row in seen} == stored


def curves(result):
    return [run.epochs for run in result.runs]


def test_sweep_members_train_exactly_as_if_alone(make_config):
    """The DESIGN's claim: a run's curve does not depend on the runs beside it."""
    sweep = train(make_config(sweep={"dropout": [0.0, 0.3, 0.6], "repeats": 2},
                              train={"seed": 5}))
    by_key = {(r.spec.dropout, r.spec.repeat): r for r in sweep.runs}
    assert len(by_key) == 6
    for rate, repeat in [(0.3, 0), (0.0, 0), (0.6, 1), (0.3, 1)]:
        alone = train(make_config(model={"dropout": rate}, train={"seed": 5 + repeat}))
        assert_matches(by_key[rate, repeat].epochs, alone.runs[0].epochs)
        for key, value in alone.runs[0].test.items():
            assert by_key[rate, repeat].test[key] == pytest.approx(value, abs=TOL)


@pytest.mark.parametrize(("reseed", "folds"), [("data", 1), ("both", 1), ("both", 2)])
def test_repeats_over_data_seeds_train_exactly_as_if_alone(make_config, reseed, folds):
    """A repeat over data seeds trains on its own draw of the dataset (dataset.seed + i),
    beside the other members in one stacked model, as the same run alone would."""
    sweep = train(make_config(sweep={"dropout": [0.0, 0.4], "repeats": 3, "folds": folds,
                                     "repeat_seeds": reseed},
                              dataset={"seed": 2}, train={"seed": 5}))
    step = int(reseed == "both")
    assert [(r.spec.repeat, r.spec.seed, r.spec.data_seed) for r in sweep.runs][::folds][:3] == [
        (i, 5 + step * i, 2 + i) for i in range(3)]
    by_key = {(r.spec.dropout, r.spec.repeat, r.spec.fold): r for r in sweep.runs}
    for rate, repeat, fold in [(0.4, 2, folds - 1), (0.0, 1, 0)]:
        alone = train(make_config(model={"dropout": rate}, dataset={"seed": 2 + repeat},
                                  train={"seed": 5 + step * repeat},
                                  sweep={"folds": folds} if folds > 1 else None))
        assert_matches(by_key[rate, repeat, fold].epochs, alone.runs[fold].epochs)
        for key, value in alone.runs[fold].test.items():
            assert by_key[rate, repeat, fold].test[key] == pytest.approx(value, abs=TOL)
    # and the draws differ: a repeat over data seeds is not the same data again
    first, second = by_key[0.0, 0, 0].epochs, by_key[0.0, 1, 0].epochs
    assert first[-1]["val_loss"] != second[-1]["val_loss"]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_weight_decay_sweep_members_train_as_if_alone(make_config, optimizer):
    """Members with different L2 in one stacked model each decay as a plain run would."""
    sweep = train(make_config(model={"dropout": 0.2}, train={"optimizer": optimizer},
                              sweep={"weight_decay": [0.0, 0.05, 0.3]}))
    assert [r.spec.weight_decay for r in sweep.runs] == [0.0, 0.05, 0.3]
    for run in sweep.runs:
        alone = train(make_config(model={"dropout": 0.2},
                                  train={"optimizer": optimizer,
                                         "weight_decay": run.spec.weight_decay}))
        assert_matches(run.epochs, alone.runs[0].epochs)


@pytest.mark.parametrize(("target", "alone_model"), [
    ("input", {"dropout": 0.1, "input_dropout": 0.4}),
    ("layer2", {"dropout": [0.1, 0.4]}),
])
def test_swept_rate_lands_where_the_target_says(make_config, target, alone_model):
    sweep = train(make_config(model={"dropout": 0.1},
                              sweep={"dropout": [0.0, 0.4], "target": target}))
    run = next(r for r in sweep.runs if r.spec.dropout == 0.4)
    alone = train(make_config(model=alone_model))
    assert_matches(run.epochs, alone.runs[0].epochs)


def test_group_size_does_not_change_results(make_config):
    config = make_config(sweep={"dropout": [0.0, 0.2, 0.5], "repeats": 2})
    together = train(config)
    in_pairs = train(config, max_members=2)
    one_by_one = train(config, max_members=1)
    for a, b, c in zip(together.runs, in_pairs.runs, one_by_one.runs, strict=True):
        assert a.spec == b.spec == c.spec
        assert_matches(a.epochs, b.epochs)
        assert_matches(a.epochs, c.epochs)


def test_same_seed_same_curves_other_seed_other_curves(make_config):
    config = make_config(model={"dropout": 0.4}, sweep={"dropout": [0.0, 0.4]})
    assert curves(train(config)) == curves(train(config))  # exact equality
    reseeded = make_config(model={"dropout": 0.4}, sweep={"dropout": [0.0, 0.4]},
                           train={"seed": 1})
    other_data = make_config(model={"dropout": 0.4}, sweep={"dropout": [0.0, 0.4]},
                             dataset={"seed": 1})
    for other in (reseeded, other_data):
        for a, b in zip(curves(train(config)), curves(train(other)), strict=True):
            assert a[-1]["train_loss"] != b[-1]["train_loss"]


def test_train_loss_dropout_is_the_loss_the_optimizer_saw(make_config):
    """Full-batch: epoch e+1's one step sees the weights that epoch e's eval measured."""
    full = {"dataset": {"n_train": 70}, "train": {"batch_size": 70, "epochs": 4}}
    [plain] = train(make_config(**full)).runs
    for before, after in zip(plain.epochs, plain.epochs[1:]):
        assert after["train_loss_dropout"] == pytest.approx(before["train_loss"], abs=1e-6)
    # with dropout on, the optimizer sees a noisier, higher loss than the eval-mode one
    [dropped] = train(make_config(model={"dropout": 0.5}, **full)).runs
    for before, after in zip(dropped.epochs, dropped.epochs[1:]):
        assert after["train_loss_dropout"] > before["train_loss"] + 1e-3


def test_k_fold_validates_on_the_held_out_fold(make_config):
    config = make_config(dataset={"n_train": 40}, model={"dropout": 0.2},
                         sweep={"folds": 3}, train={"epochs": 3, "seed": 2})
    result = train(config)
    assert [(r.spec.fold, r.spec.seed) for r in result.runs] == [(0, 2), (1, 2), (2, 2)]
    data = splits_of(config)
    x, y = data["train"]
    parts = fold_indices(40, 3, config.dataset.seed)
    assert sorted(len(p) for p in parts) == [13, 13, 14]
    for run, held in zip(result.runs, parts, strict=True):
        keep = np.setdiff1d(np.arange(40), held)
        # scaled with the training folds' statistics only: the held-out fold does not leak
        mean, std = x[keep].mean(0, dtype=np.float64), x[keep].std(0, dtype=np.float64)
        split = {"train": ((x[keep] - mean) / std, y[keep]),
                 "val": ((x[held] - mean) / std, y[held]),
                 "test": ((data["test"][0] - mean) / std, data["test"][1])}
        split = {k: (a.astype(np.float32), b) for k, (a, b) in split.items()}
        want, want_test = plain_training(config, split, run.spec.seed, run.spec.layer_rates,
                                         run.spec.input_rate)
        assert_matches(run.epochs, want)
        for row in run.epochs:  # accuracy counts whole examples of the held-out fold
            correct = row["val_acc"] * len(held)
            assert correct == pytest.approx(round(correct), abs=1e-4)
        assert run.test["test_loss"] == pytest.approx(want_test["test_loss"], abs=TOL)


def test_k_fold_scaling_survives_columns_constant_on_the_training_folds(make_config):
    """Digits has pixels that are blank in most images: blank on the training folds but inked
    in a held-out image. Such a column must scale to 0 on training (std taken as 1), not be
    divided by a float32 rounding residue (~3e-8), which made validation losses ~1e6."""
    config = make_config(dataset={"name": "digits", "n_train": 200}, sweep={"folds": 5},
                         train={"epochs": 1})
    for run in train(config).runs:
        assert run.epochs[0]["val_loss"] < 5  # chance level is ln(10) = 2.3


def test_cancel_keeps_the_epochs_already_trained(make_config):
    config = make_config(dataset={"n_train": 64}, train={"epochs": 5, "batch_size": 16})
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 9  # 4 steps per epoch: stops during the third epoch

    result = train(config, should_stop=should_stop)
    assert result.status == "cancelled"
    assert [e["epoch"] for e in result.runs[0].epochs] == [1, 2]
    assert len(polls) == 10
    full = train(config).runs[0].epochs
    assert result.runs[0].epochs == full[:2]


def test_dropout_reduces_overfitting_on_small_noisy_data():
    """Science: a wide net on 40 noisy moons overfits; dropout 0.5 validates better.

    Margin checked across dataset seeds 0-5 and train seeds 0-30 while choosing these settings:
    mean final val loss with dropout was 0.27x-0.47x that without.
    """
    from app.ml.config import ExperimentConfig

    config = ExperimentConfig.model_validate({
        "dataset": {"name": "moons", "n_train": 40, "noise": 0.3, "seed": 1},
        "model": {"hidden": [128, 128]},
        "train": {"epochs": 100, "batch_size": 40, "lr": 0.01, "seed": 0},
        "sweep": {"dropout": [0.0, 0.5], "repeats": 3},
    })
    runs = train(config).runs
    final = {rate: [r.epochs[-1] for r in runs if r.spec.dropout == rate] for rate in (0.0, 0.5)}
    assert [len(v) for v in final.values()] == [3, 3]
    val = {rate: statistics.mean(e["val_loss"] for e in rows) for rate, rows in final.items()}
    train_loss = {rate: statistics.mean(e["train_loss"] for e in rows)
                  for rate, rows in final.items()}
    assert train_loss[0.0] < 0.05 < val[0.0]  # without dropout it memorized the training set
    assert val[0.5] < 0.6 * val[0.0]
    assert all(e["val_loss"] < min(f["val_loss"] for f in final[0.0]) for e in final[0.5])


def test_the_thread_count_does_not_change_the_numbers():
    """Servers give each worker cores // workers threads (or DP_THREADS_PER_WORKER), the CLI
    one: an experiment forked or re-run on another machine must give the same numbers. Layers
    big enough that products and sums do use both threads."""
    config = ExperimentConfig.model_validate({
        "dataset": {"name": "digits", "n_train": 500}, "model": {"hidden": [256, 256]},
        "train": {"epochs": 2, "batch_size": 64}, "sweep": {"dropout": [0.0, 0.5], "folds": 2}})
    one_thread = train(config).run_dicts()
    torch.set_num_threads(2)
    try:
        two_threads = train(config).run_dicts()
    finally:
        torch.set_num_threads(1)
    assert two_threads == one_thread
