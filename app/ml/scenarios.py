"""Guided scenarios: one-click setups, each with a short, correct explanation and a claim.

Every scenario is a config plus a `claim`: a check on the trained runs that the explanation
promises the learner will see in the curves. tests/ml/test_scenarios.py trains each one with
its default seed and checks the claim, so the text can never drift from what the app shows.
Runs are indexed as in app.ml.runs.plan_runs (rate, weight decay, repeat, fold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Runs = list[list[dict]]  # epochs of each run


@dataclass(frozen=True)
class Scenario:
    slug: str
    title: str
    text: str  # what is going on (2-3 sentences)
    look_for: str  # what to look at in the curves
    config: dict
    claim: Callable[[Runs], bool]  # what `look_for` promises, checked by the tests


def _final(run: list[dict], key: str) -> float:
    return run[-1][key]


def _first_epoch(run: list[dict], key: str, threshold: float) -> int:
    return next((e["epoch"] for e in run if e[key] >= threshold), len(run) + 1)


TINY_MOONS = {"name": "moons", "n_train": 30, "noise": 0.25}
WIDE = {"hidden": [256, 256]}
LONG = {"epochs": 300, "lr": 0.003}

SCENARIOS = [
    Scenario(
        "overfitting", "Overfitting: tiny data, a wide network, no dropout",
        "Thirty noisy points and about 67,000 weights: the network can fit every training "
        "point, noise included. Training loss goes to zero, but what it learns about the "
        "noise does not carry over to new data.",
        "The validation loss bottoms out early, then climbs for the rest of training while the "
        "training loss keeps falling: the generalization gap grows.",
        {"name": "Overfitting", "dataset": TINY_MOONS, "model": {**WIDE, "dropout": 0.0},
         "train": LONG},
        lambda runs: (_final(runs[0], "train_loss") < 0.01
                      and _final(runs[0], "val_loss") > 2 * min(e["val_loss"] for e in runs[0])),
    ),
    Scenario(
        "dropout-rescue", "Dropout to the rescue",
        "The same data and network, trained with dropout p = 0 and p = 0.5. Dropping half the "
        "hidden units at every step stops units from relying on each other's quirks, so the "
        "network cannot memorize the noise as easily.",
        "With p = 0.5 the validation loss ends far lower and the gap between validation and "
        "training loss stays smaller than with p = 0.",
        {"name": "Dropout to the rescue", "dataset": TINY_MOONS, "model": WIDE, "train": LONG,
         "sweep": {"dropout": [0.0, 0.5]}},
        lambda runs: (_final(runs[1], "val_loss") < 0.8 * _final(runs[0], "val_loss")
                      and _final(runs[1], "generalization_gap")
                      < _final(runs[0], "generalization_gap")),
    ),
    Scenario(
        "too-much-dropout", "Too much dropout: underfitting",
        "Dropout is a regularizer, and too much of it starves the network: with p = 0.9 only "
        "one unit in ten, on average, takes part in each step, and the kept ones are scaled "
        "up tenfold (1/(1-p)).",
        "With p = 0.9 even the training accuracy stays well below p = 0.5's, and the "
        "validation accuracy drops too: the network underfits.",
        {"name": "Too much dropout", "dataset": TINY_MOONS, "model": WIDE, "train": LONG,
         "sweep": {"dropout": [0.5, 0.9]}},
        lambda runs: (_final(runs[1], "train_acc") < _final(runs[0], "train_acc") - 0.05
                      and _final(runs[1], "val_acc") < _final(runs[0], "val_acc")),
    ),
    Scenario(
        "noise-labels", "Pure noise: memorization, and how dropout slows it",
        "The labels are random: there is nothing to learn, only to memorize. A wide network "
        "memorizes 200 random labels anyway; validation accuracy stays at chance (50%).",
        "Training accuracy reaches 99% at least twice as late with p = 0.5 as with p = 0, "
        "while validation accuracy stays near 50% for both.",
        {"name": "Pure noise", "dataset": {"name": "noise", "n_train": 200}, "model": WIDE,
         "train": {"epochs": 150, "lr": 0.003}, "sweep": {"dropout": [0.0, 0.5]}},
        lambda runs: (_first_epoch(runs[1], "train_acc", 0.99)
                      >= 2 * _first_epoch(runs[0], "train_acc", 0.99)
                      and all(abs(_final(r, "val_acc") - 0.5) < 0.08 for r in runs)),
    ),
    Scenario(
        "dropout-vs-l2", "Dropout versus L2 weight decay",
        "Two regularizers on the same overfitting setup: dropout (p = 0.5) and decoupled "
        "weight decay (AdamW, 0.5), alone and together. Weight decay shrinks all weights "
        "toward zero; dropout adds noise to the units.",
        "Each alone lowers the final validation loss compared with neither; the two together "
        "lower it most.",
        {"name": "Dropout vs L2", "dataset": TINY_MOONS, "model": WIDE,
         "train": {**LONG, "optimizer": "adamw"},
         "sweep": {"dropout": [0.0, 0.5], "weight_decay": [0.0, 0.5]}},
        # runs: (p=0, wd=0), (p=0, wd=0.5), (p=0.5, wd=0), (p=0.5, wd=0.5)
        lambda runs: (max(_final(runs[1], "val_loss"), _final(runs[2], "val_loss"))
                      < _final(runs[0], "val_loss")
                      and _final(runs[3], "val_loss")
                      < min(_final(r, "val_loss") for r in runs[:3])),
    ),
    Scenario(
        "irrelevant-features", "Many irrelevant inputs: input dropout",
        "Forty random input columns sit beside the two real ones. With 100 training points a "
        "network finds patterns in the noise columns that do not hold on new data. Dropout on "
        "the inputs hides a random half of them, on average, at each step, so no single "
        "input can be relied on.",
        "With input dropout p = 0.5 the final validation loss and the generalization gap are "
        "much lower than with p = 0.",
        {"name": "Irrelevant inputs",
         "dataset": {"name": "moons", "n_train": 100, "noise": 0.2, "extra_features": 40},
         "model": {**WIDE, "dropout": 0.0}, "train": {"epochs": 200, "lr": 0.003},
         "sweep": {"dropout": [0.0, 0.5], "target": "input"}},
        lambda runs: (_final(runs[1], "val_loss") < 0.6 * _final(runs[0], "val_loss")
                      and _final(runs[1], "generalization_gap")
                      < _final(runs[0], "generalization_gap")),
    ),
]

BY_SLUG = {s.slug: s for s in SCENARIOS}
