"""The playground's starting setup (app.ml.scenarios.START) shows what dropout does.

Issue 18's claim: at (dataset seed, training seed) = (s, s) for s = 0-4, where START was
tuned, the p = 0 twin's final validation loss is at least 1.3 times the chosen rate's. It is
checked here on START's own paired runs, and at the ten held-out pairs 5-14 as one batched
sweep of [chosen rate, 0] with ten repeats (a member of a batch trains exactly as alone:
tests/ml/test_train.py). The chosen rate must not buy that by underfitting: its validation
accuracy stays with the best of the rates around it.
"""

from __future__ import annotations

import statistics

from app.ml.config import ExperimentConfig
from app.ml.scenarios import HELD_OUT_SEEDS, START, TUNED_SEEDS
from app.ml.train import train

RATIO = 1.3  # twin's final validation loss / the chosen rate's, at least


def at_seed(seed: int, **change) -> ExperimentConfig:
    raw = START.model_dump(mode="json")
    raw["dataset"]["seed"] = raw["train"]["seed"] = seed
    return ExperimentConfig.model_validate({**raw, **change})


def as_sweep(rates: list[float], seeds: range) -> ExperimentConfig:
    """START's data and network at pairs (s, s) for every s in seeds, each rate, one batch."""
    return at_seed(seeds[0], baseline=False, sweep={
        "dropout": rates, "repeats": len(seeds), "repeat_seeds": "both"})


def test_start_is_a_paired_two_d_setup_apart_from_the_api_defaults():
    assert START.paired and START.n_runs == 2
    assert START.model.dropout > 0 and START.sweep is None
    assert START.dataset.name in ("moons", "circles", "spirals", "xor", "gaussians")
    assert ExperimentConfig().baseline is False  # `{}` on the API still trains one run


def test_the_twin_ends_with_a_much_higher_validation_loss_at_the_tuned_seeds():
    ratios = []
    for seed in TUNED_SEEDS:
        result = train(at_seed(seed))
        chosen, twin = result.runs
        assert chosen.spec.layer_rates == tuple(START.model.layer_rates())
        assert twin.spec.layer_rates == (0.0,) * len(START.model.hidden)
        assert (twin.spec.seed, twin.spec.data_seed) == (seed, seed)
        ratios.append(twin.epochs[-1]["val_loss"] / chosen.epochs[-1]["val_loss"])
    print(f"\nSTART ratio at seeds 0-4: {' '.join(f'{r:.2f}' for r in ratios)}")  # noqa: T201
    assert min(ratios) >= RATIO, ratios


def test_the_twin_ends_higher_at_the_held_out_seeds_too():
    p = START.model.dropout
    result = train(as_sweep([p, 0.0], HELD_OUT_SEEDS))
    ratios = []
    for repeat, _ in enumerate(HELD_OUT_SEEDS):
        final = {r.spec.dropout: r.epochs[-1]["val_loss"]
                 for r in result.runs if r.spec.repeat == repeat}
        ratios.append(final[0.0] / final[p])
    print(f"\nSTART ratio at seeds 5-14: {' '.join(f'{r:.2f}' for r in ratios)}")  # noqa: T201
    assert min(ratios) >= RATIO, ratios


def test_the_chosen_rate_does_not_underfit():
    """Its mean final validation accuracy over the tuned seeds is within a point of the best
    rate's among 0, 0.3, 0.5 (if chosen) and 0.7, and its training accuracy stays high."""
    p = START.model.dropout
    rates = sorted({0.0, 0.3, p, 0.7})
    result = train(as_sweep(rates, TUNED_SEEDS))
    acc = {q: statistics.mean(r.epochs[-1]["val_acc"] for r in result.runs if r.spec.dropout == q)
           for q in rates}
    train_acc = statistics.mean(r.epochs[-1]["train_acc"] for r in result.runs
                                if r.spec.dropout == p)
    assert acc[p] >= max(acc.values()) - 0.01, acc
    assert train_acc >= 0.85, train_acc
