"""Snapshots: decision surfaces and Monte Carlo dropout curves, checked against direct math."""

import json

import numpy as np
import pytest
import torch

from app.ml import insight
from app.ml.config import ExperimentConfig
from app.ml.model import StackedMLP
from app.ml.train import train


def _model(rates, seeds=(0,), width=32, n_in=1):
    return StackedMLP([n_in, width, width, 1], "relu", [rates] * len(seeds),
                      [0.0] * len(seeds), list(seeds))


def test_mc_dropout_with_p_zero_has_a_band_of_zero_width():
    model = _model([0.0, 0.0])
    x = torch.linspace(-3, 3, 50)[:, None]
    mc = model.mc_predict(x, passes=20, seed=1)  # (K, T, n, 1)
    assert mc.std(1).abs().max().item() == 0.0
    model.eval()
    torch.testing.assert_close(mc[:, 0], model(x))  # and every pass is the eval prediction


def test_mc_dropout_statistics_match_a_direct_monte_carlo_estimate():
    """Mean over passes tends to the eval prediction for a linear readout of a dropout layer;
    the spread is the one of masks drawn with keep probability 1-p and scale 1/(1-p)."""
    torch.manual_seed(0)
    p = 0.5
    model = StackedMLP([1, 64, 1], "relu", [[p]], [0.0], [3])
    x = torch.tensor([[0.7]])
    mc = model.mc_predict(x, passes=20000, seed=5)[0, :, 0, 0]
    model.eval()
    with torch.no_grad():
        h = torch.relu(x @ model.weights[0][0] + model.biases[0][0])  # (1, 64)
        w = model.weights[1][0][:, 0]
        b = model.biases[1][0, 0, 0]
    mean = (h[0] * w).sum() + b  # E[mask/(1-p)] = 1: the eval prediction
    var = ((h[0] * w) ** 2).sum() * p / (1 - p)  # Var[mask/(1-p)] = p/(1-p)
    assert abs(mc.mean().item() - mean.item()) < 4 * (var.sqrt().item() / 20000 ** 0.5)
    assert mc.std().item() == pytest.approx(var.sqrt().item(), rel=0.03)


def test_mc_predictions_do_not_touch_the_training_mask_stream():
    a, b = _model([0.5, 0.5]), _model([0.5, 0.5])
    a.mc_predict(torch.zeros(5, 1), passes=3, seed=1)
    a.train()
    b.train()
    torch.testing.assert_close(a.masks.sample(8), b.masks.sample(8))


def test_member_view_predicts_like_the_whole_model():
    model = StackedMLP([2, 16, 2], "tanh", [[0.3], [0.0], [0.6]], [0.0] * 3, [1, 2, 3])
    model.eval()
    x = torch.randn(10, 2)
    sub = model.members(torch.tensor([2, 0]))
    torch.testing.assert_close(sub(x), model(x)[[2, 0]])


def test_surface_snapshot_is_the_quantized_class_probability_over_the_grid():
    model = StackedMLP([2, 16, 2], "relu", [[0.5]], [0.0], [4])
    train_x = torch.randn(100, 2)
    snapper = insight.Snapshotter("classification", train_x, [0])
    ((member, snap),) = snapper.take(model, epoch=3)
    assert member == 0 and snap["epoch"] == 3 and snap["grid"] == insight.GRID
    grid = insight.decode_surface(snap)
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(snapper.inputs), -1)[0, :, 1].numpy()
    np.testing.assert_allclose(grid.reshape(-1), expected, atol=1 / 255 / 2 + 1e-6)
    x0, x1, y0, y1 = snap["extent"]  # the grid covers the training points, with a margin
    assert x0 < train_x[:, 0].min() and x1 > train_x[:, 0].max()
    assert y0 < train_x[:, 1].min() and y1 > train_x[:, 1].max()
    assert len(json.dumps(snap)) < 8 * 1024


def test_snapshot_epochs_are_spaced_and_end_with_the_last():
    epochs = insight.snapshot_epochs(100)
    assert max(epochs) == 100 and len(epochs) <= insight.MAX_SNAPSHOTS
    cheap, costly = insight.snapshot_epochs(100, 10, 1000), insight.snapshot_epochs(100, 900, 1000)
    assert len(costly) < len(cheap)  # costly snapshots are spaced further apart
    assert len(insight.snapshot_epochs(1)) == 1


def test_training_reports_snapshots_for_one_run_per_setting_only():
    config = ExperimentConfig.model_validate({
        "dataset": {"name": "moons", "n_train": 40}, "model": {"hidden": [16]},
        "train": {"epochs": 6}, "sweep": {"dropout": [0.0, 0.5], "repeats": 2}})
    snaps = []
    result = train(config, on_snapshot=snaps.extend)
    runs = {run for run, _ in snaps}
    assert runs == {0, 2}  # repeat 0 of each rate
    assert all(s["kind"] == "surface" for _, s in snaps)
    assert max(s["epoch"] for _, s in snaps) == 6
    plain = train(config)  # snapshots change nothing about training
    assert [r.epochs for r in plain.runs] == [r.epochs for r in result.runs]


def test_a_sweep_of_16_rates_reports_every_rate_within_the_budget():
    """Every rate's surface comes (issue 18's rate slider), each run's at the same epochs, and
    the snapshot rows a member pushes through the network stay within BUDGET of its training
    and evaluation rows, plus the last epoch's snapshot that is always taken."""
    epochs, n_train = 30, 40
    config = ExperimentConfig.model_validate({
        "dataset": {"name": "moons", "n_train": n_train}, "model": {"hidden": [4]},
        "train": {"epochs": epochs},
        "sweep": {"low": 0.0, "high": 0.75, "grid_step": 0.05}})
    snaps = []
    train(config, on_snapshot=snaps.extend)
    by_run: dict[int, list[int]] = {}
    for run, snap in snaps:
        by_run.setdefault(run, []).append(snap["epoch"])
    assert set(by_run) == set(range(16))
    assert len({tuple(e) for e in by_run.values()}) == 1  # every rate at the same epochs
    taken = len(by_run[0])
    grid_rows = insight.GRID * insight.GRID
    epoch_rows = insight.epoch_rows(n_train, 1000)
    assert taken >= 2 and (taken - 1) * grid_rows <= insight.BUDGET * epochs * epoch_rows


def test_no_snapshots_for_data_that_has_no_picture():
    config = ExperimentConfig.model_validate({"dataset": {"name": "wine", "n_train": 50},
                                              "train": {"epochs": 2}})
    snaps = []
    train(config, on_snapshot=snaps.extend)
    assert snaps == []


def test_regression_snapshot_reports_a_wider_band_with_more_dropout():
    config = ExperimentConfig.model_validate({
        "dataset": {"name": "sine", "n_train": 60}, "model": {"hidden": [64, 64]},
        "train": {"epochs": 20}, "sweep": {"dropout": [0.0, 0.1, 0.5]}})
    snaps = {}
    train(config, on_snapshot=lambda rows: snaps.update({run: s for run, s in rows}))
    widths = [float(np.mean(snaps[i]["mc_std"])) for i in range(3)]
    assert widths[0] == 0.0 and 0 < widths[1] < widths[2]


def test_validation_confusion_matrix_counts_every_validation_example():
    config = ExperimentConfig.model_validate({"dataset": {"name": "wine", "n_train": 60},
                                              "train": {"epochs": 5}})
    result = train(config)
    c = np.array(result.runs[0].confusion)
    assert c.shape == (3, 3) and c.sum() == 36
    acc = np.trace(c) / c.sum()
    assert acc == pytest.approx(result.runs[0].epochs[-1]["val_acc"], abs=1e-6)
