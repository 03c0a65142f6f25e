"""Run planning: rates x repeats x folds with the right seeds, and k-fold index parts."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.config import ExperimentConfig
from app.ml.runs import fold_indices, plan_runs


@pytest.mark.parametrize(("n", "folds"), [(10, 2), (40, 3), (41, 5), (100, 10), (7, 7)])
def test_fold_parts_are_disjoint_cover_and_balanced(n, folds):
    parts = fold_indices(n, folds, seed=3)
    assert len(parts) == folds
    joined = np.concatenate(parts)
    assert len(joined) == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))  # disjoint and covering
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for p in parts:
        np.testing.assert_array_equal(p, np.sort(p))


def test_fold_parts_depend_on_the_seed_only():
    a, b, c = fold_indices(50, 5, 1), fold_indices(50, 5, 1), fold_indices(50, 5, 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # shuffled: the first part is not simply the first rows
    assert not np.array_equal(a[0], np.arange(10))


def test_single_run_uses_the_model_rates():
    config = ExperimentConfig.model_validate(
        {"model": {"hidden": [8, 8], "dropout": [0.1, 0.4], "input_dropout": 0.2},
         "train": {"seed": 9}})
    [run] = plan_runs(config)
    assert run.index == 0
    assert run.dropout == [0.1, 0.4]
    assert run.layer_rates == (0.1, 0.4)
    assert run.input_rate == 0.2
    assert (run.fold, run.repeat, run.seed) == (0, 0, 9)


def test_sweep_plans_rates_times_repeats_times_folds():
    config = ExperimentConfig.model_validate(
        {"dataset": {"n_train": 60},
         "model": {"hidden": [8, 8, 8], "dropout": 0.9, "input_dropout": 0.1},
         "train": {"seed": 5},
         "sweep": {"dropout": [0.0, 0.3, 0.6], "folds": 3, "repeats": 2}})
    runs = plan_runs(config)
    assert len(runs) == 3 * 2 * 3 == config.n_runs
    assert [r.index for r in runs] == list(range(18))
    expected = [(rate, repeat, fold)
                for rate in (0.0, 0.3, 0.6) for repeat in range(2) for fold in range(3)]
    assert [(r.dropout, r.repeat, r.fold) for r in runs] == expected
    for r in runs:
        assert r.layer_rates == (r.dropout,) * 3  # the swept rate replaces every layer's
        assert r.input_rate == 0.1  # input dropout is not swept
        assert r.seed == 5 + r.repeat
