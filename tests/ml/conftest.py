"""Shared helpers for the engine tests: one CPU thread (small MLPs are fastest and exactly
reproducible that way) and a factory for small experiment configs."""

from __future__ import annotations

import pytest
import torch

from app.ml.config import ExperimentConfig


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


SMALL = {
    "dataset": {"name": "moons", "n_train": 70, "noise": 0.2, "seed": 0},
    "model": {"hidden": [16, 16], "dropout": 0.0},
    "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "seed": 0},
}


@pytest.fixture
def make_config():
    """make_config(model={"dropout": 0.3}, ...) -> a small ExperimentConfig (nested merge)."""

    def make(**override) -> ExperimentConfig:
        return ExperimentConfig.model_validate(_merge(SMALL, override))

    return make
