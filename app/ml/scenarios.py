"""Guided scenarios: one-click setups, each with a short, correct explanation and a claim.

A scenario is a config, a text, what to look for, and `checks`: the claim that "look for"
makes, as comparisons of the runs' numbers, each with a stated margin ("final validation loss
at least 25% lower"), never a bare inequality. The learner sees every check with its margin,
and after training the measured numbers of their own run judged by it (`judge`), so a seed
that makes the effect small is named as such.

Checks read run summaries (app.ml.summary.run_summary: final epoch, lowest validation loss,
the epoch the training set was fit), the same numbers the share page has. Runs are indexed
as in app.ml.runs.plan_runs (rate, weight decay, repeat, fold); a scenario has one run per
setting. The setups were chosen on (dataset seed, training seed) pairs 0-4;
tests/ml/test_scenarios.py checks every claim at the ten held-out pairs 5-14
(`HELD_OUT_SEEDS`), so a text can never promise what the app does not show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app.ml.config import ExperimentConfig
from app.ml.runs import plan_runs, settings_of

HELD_OUT_SEEDS = range(5, 15)  # (dataset seed, training seed) = (s, s): where the tests check
TUNED_SEEDS = range(0, 5)  # where the setups were chosen


# -- numbers read off a run's summary -------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """A number of one run: `read` takes its summary (app.ml.summary.run_summary)."""

    name: str  # "final validation loss"
    read: Callable[[dict], float | None]
    kind: Literal["loss", "fraction", "epoch"] = "loss"

    def text(self, v: float | None) -> str:
        if v is None:
            return "not reached" if self.kind == "epoch" else "n/a"
        if self.kind == "fraction":
            return f"{100 * v:.1f}%"
        if self.kind == "epoch":
            return f"epoch {v:g}"
        return f"{v:.3g}"


def final(field: str, name: str, kind: Literal["loss", "fraction"] = "loss") -> Value:
    return Value(f"final {name}", lambda r: (r.get("final") or {}).get(field), kind)


VAL_LOSS = final("val_loss", "validation loss")
TRAIN_LOSS = final("train_loss", "training loss (eval mode)")
GAP = final("generalization_gap", "generalization gap (val − train loss)")
VAL_ACC = final("val_acc", "validation accuracy", "fraction")
TRAIN_ACC = final("train_acc", "training accuracy (eval mode)", "fraction")
LOWEST_VAL_LOSS = Value("lowest validation loss (any epoch)", lambda r: r.get("best_val_loss"))
FIT_EPOCH = Value("epoch at which training accuracy first reached 99%",
                  lambda r: r.get("fit_epoch"), "epoch")


# -- one comparison with its margin ---------------------------------------------------------

Rule = Literal["lower", "higher", "times", "within", "points_lower", "points_at_most",
               "points_within", "below"]


@dataclass(frozen=True)
class Check:
    """`value` of run `run`, compared with `against` by `rule` with margin `margin`:

    - "lower": a <= (1 - margin) b, "at least 25% lower" (margin 0.25)
    - "higher": a >= (1 + margin) b, "at least 50% higher"
    - "times": a >= margin b, "at least 3 times"
    - "within": |a / b - 1| <= margin, "within 15% of"
    - "points_lower": a <= b - margin, "at least 5 points lower" (fractions)
    - "points_at_most": a <= b + margin, "at most 2 points higher"
    - "points_within": |a - b| <= margin, "within 6 points of"
    - "below": a <= margin (against is None), "below 0.05"

    `against` is another run (the same value), several runs (the lowest of their values: the
    better one, for a loss), a constant, or another Value of the same run.
    """

    value: Value
    run: int
    rule: Rule
    margin: float
    against: int | tuple[int, ...] | float | Value | None = None

    def _other(self, summaries: list[dict]) -> float | None:
        a = self.against
        if isinstance(a, Value):
            return a.read(summaries[self.run])
        if isinstance(a, tuple):
            values = [self.value.read(summaries[i]) for i in a]
            return None if None in values else min(values)
        if isinstance(a, int):
            return self.value.read(summaries[a])
        return a

    def _other_name(self, labels: list[str]) -> str:
        a = self.against
        if isinstance(a, Value):
            return f"its {a.name}"
        if isinstance(a, tuple):
            return "the better of " + " and ".join(labels[i] for i in a)
        if isinstance(a, int):
            return labels[a]
        return "" if a is None else f"{a:g}"

    def claim(self, labels: list[str]) -> str:
        """The check in words, with its margin, e.g. "final validation loss: p = 0.5 at least
        25% lower than p = 0"."""
        other = self._other_name(labels)
        m = self.margin
        relation = {
            "lower": f"at least {m:.0%} lower than {other}",
            "higher": f"at least {m:.0%} higher than {other}",
            "times": f"at least {m:g} times {other}",
            "within": f"within {m:.0%} of {other}",
            "points_lower": f"at least {_points(m)} lower than {other}",
            "points_at_most": f"at most {_points(m)} higher than {other}",
            "points_within": f"within {_points(m)} of {other}",
            "below": f"at most {m:g}",
        }[self.rule]
        if self.rule == "points_within" and isinstance(self.against, float):
            relation = f"within {_points(m)} of {100 * self.against:g}%"
        return f"{self.value.name}: {labels[self.run]} {relation}"

    def measure(self, summaries: list[dict], labels: list[str]) -> Finding:
        """This check on one experiment's runs: the numbers, what they show, whether it holds."""
        a = self.value.read(summaries[self.run])
        b = None if self.against is None else self._other(summaries)
        fmt = (self.against.text if isinstance(self.against, Value) else self.value.text)
        numbers = f"{labels[self.run]} {self.value.text(a)}"
        if self.against is not None and not isinstance(self.against, float):
            numbers += f" vs {self._other_name(labels)} {fmt(b)}"
        if a is None or (self.against is not None and b is None):
            if self.rule == "times" and self.value.kind == "epoch" and b is not None:
                return Finding(self.claim(labels), numbers, "never reached", True)
            return Finding(self.claim(labels), numbers, "not measured", False)
        shown, holds = self._judge(a, b)
        return Finding(self.claim(labels), numbers, shown, holds)

    def _judge(self, a: float, b: float | None) -> tuple[str, bool]:
        m, rule = self.margin, self.rule
        if rule == "below":
            return (self.value.text(a), a <= m)
        if rule.startswith("points"):
            d = 100 * (a - b)
            shown = f"{abs(d):.1f} points {'higher' if d > 0 else 'lower'}"
            holds = {"points_lower": d <= -100 * m, "points_at_most": d <= 100 * m,
                     "points_within": abs(d) <= 100 * m}[rule]
            return shown, holds
        ratio = a / b if b else float("inf")
        if rule == "times":
            return f"{ratio:.1f} times", ratio >= m
        shown = f"{abs(1 - ratio):.0%} {'lower' if ratio < 1 else 'higher'}"
        holds = {"lower": ratio <= 1 - m, "higher": ratio >= 1 + m,
                 "within": abs(ratio - 1) <= m}[rule]
        return shown, holds

    def ratio(self, summaries: list[dict]) -> float:
        """The measured quantity the margin bounds: a / b for ratio rules, a - b in points for
        point rules, a for "below" (the tests and the seed table report it)."""
        a = self.value.read(summaries[self.run])
        b = self._other(summaries)
        if self.rule == "below":
            return a
        if self.rule.startswith("points"):
            return 100 * (a - b)
        if a is None:  # never reached: later than any epoch
            return float("inf")
        return a / b


def _points(fraction: float) -> str:
    """A difference of fractions in percentage points: "5 points", "1 point"."""
    n = 100 * fraction
    return f"{n:g} point" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class Finding:
    claim: str  # the check in words, with its margin
    numbers: str  # this experiment's numbers: "p = 0.5 0.62 vs p = 0 1.57"
    shown: str  # what they show: "61% lower"
    holds: bool


# -- the scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    slug: str
    title: str
    text: str  # what is going on (2-4 sentences)
    look_for: str  # what to look at in the curves, margins included
    config: dict
    checks: tuple[Check, ...]  # what `look_for` promises, checked by the tests

    def experiment(self) -> ExperimentConfig:
        return ExperimentConfig.model_validate(self.config)

    def labels(self) -> list[str]:
        """The runs' names, as the page labels their settings ("p = 0.5")."""
        config = self.experiment()
        specs = plan_runs(config)
        by_run = {i: s.label for s in settings_of(specs) for i in s.runs}
        return [by_run[s.index] for s in specs]

    def claims(self) -> list[str]:
        """Every check in words, with its margin (shown on the scenarios page)."""
        labels = self.labels()
        return [c.claim(labels) for c in self.checks]

    def judge(self, summaries: list[dict]) -> list[Finding]:
        """Every check on one experiment's run summaries (summary["runs"], in run order)."""
        labels = self.labels()
        return [c.measure(summaries, labels) for c in self.checks]

    def matches(self, config: ExperimentConfig) -> bool:
        """Whether `config` is this scenario, at any seeds and under any name."""
        return _comparable(config) == _comparable(self.experiment())


def _comparable(config: ExperimentConfig) -> dict:
    data = config.model_dump(mode="json")
    data.pop("name")
    data["dataset"].pop("seed")
    data["train"].pop("seed")
    return data


def scenario_of(config: ExperimentConfig) -> Scenario | None:
    """The scenario an experiment is (whatever its seeds), or None."""
    return next((s for s in SCENARIOS if s.matches(config)), None)


# Eighty noisy points on two circles and a network of two layers of 128 units (17,154
# weights): enough to fit almost every training point, the noise included; eight steps of ten
# examples per epoch, 400 epochs.
NOISY_CIRCLES = {"name": "circles", "n_train": 80, "noise": 0.25}
WIDE = {"hidden": [128, 128]}
LONG = {"epochs": 400, "lr": 0.002, "batch_size": 10}

SCENARIOS = [
    Scenario(
        "overfitting", "Overfitting: tiny data, a wide network, no dropout",
        "Eighty noisy points on two circles and about 17,000 weights: the network can fit "
        "almost every training point, the noise included. What it learns about the noise does not "
        "carry over to new data.",
        "The validation loss bottoms out early, then climbs for the rest of training: it ends "
        "at least twice its lowest, while the training loss ends at least 80% below the "
        "validation loss. That growing gap is overfitting. The lowest point is the best "
        "epoch: stopping there (early stopping) keeps the best model, but it is picked on the "
        "validation set, so its validation score flatters it.",
        {"name": "Overfitting", "dataset": NOISY_CIRCLES, "model": {**WIDE, "dropout": 0.0},
         "train": LONG},
        (Check(VAL_LOSS, 0, "times", 2, LOWEST_VAL_LOSS),
         Check(TRAIN_LOSS, 0, "lower", 0.8, VAL_LOSS)),
    ),
    Scenario(
        "dropout-rescue", "Dropout to the rescue",
        "The same data and network, trained with dropout p = 0 and p = 0.5. In training every "
        "example gets its own random mask: each hidden unit is dropped with probability 0.5, "
        "so no unit can count on particular others being there, and the network cannot "
        "memorize the noise as easily.",
        "With p = 0.5 the validation loss climbs much more slowly: at the end it is at least "
        "25% lower than with p = 0, and the generalization gap at least 25% smaller. The "
        "lowest validation loss at any epoch is about the same for both (within 15%): here "
        "dropout does not find a better model, it keeps training from drifting away from it "
        "(stopping at p = 0's best epoch would do about as well).",
        {"name": "Dropout to the rescue", "dataset": NOISY_CIRCLES, "model": WIDE,
         "train": LONG, "sweep": {"dropout": [0.0, 0.5]}},
        (Check(VAL_LOSS, 1, "lower", 0.25, 0),
         Check(GAP, 1, "lower", 0.25, 0),
         Check(LOWEST_VAL_LOSS, 1, "within", 0.15, 0)),
    ),
    Scenario(
        "too-much-dropout", "Too much dropout: underfitting",
        "Dropout is a regularizer, and too much of it starves the network. 300 points are "
        "enough for a small network (two layers of 32 units) to learn the moons. With "
        "p = 0.9 each unit is dropped with probability 0.9: for each training example only "
        "about 3 of a layer's 32 units are kept, scaled up tenfold (1/(1-p)), and the network "
        "can no longer fit even its training data.",
        "With p = 0.9 the training accuracy (measured in eval mode) ends at least 5 points "
        "below p = 0.5's, the validation accuracy at least 3 points lower, and the final "
        "validation loss at least 50% higher: the network underfits, and the sweep's best "
        "setting is p = 0.5.",
        {"name": "Too much dropout",
         "dataset": {"name": "moons", "n_train": 300, "noise": 0.15},
         "model": {"hidden": [32, 32]}, "train": {"epochs": 200, "lr": 0.003},
         "sweep": {"dropout": [0.5, 0.9]}},
        (Check(TRAIN_ACC, 1, "points_lower", 0.05, 0),
         Check(VAL_ACC, 1, "points_lower", 0.03, 0),
         Check(VAL_LOSS, 1, "higher", 0.5, 0)),
    ),
    Scenario(
        "noise-labels", "Pure noise: memorization, and how dropout slows it",
        "The labels are random: there is nothing to learn, only to memorize. A network of two "
        "layers of 128 units memorizes 300 random labels anyway; on new data it stays at "
        "chance (50%).",
        "Training accuracy reaches 99% with both rates within the 150 epochs, but it takes "
        "at least 3 times as many epochs with p = 0.5 as with p = 0, while validation "
        "accuracy stays within 6 points of 50% for both.",
        {"name": "Pure noise", "dataset": {"name": "noise", "n_train": 300}, "model": WIDE,
         "train": {"epochs": 150, "lr": 0.003}, "sweep": {"dropout": [0.0, 0.5]}},
        (Check(FIT_EPOCH, 1, "times", 3, 0),
         Check(FIT_EPOCH, 1, "below", 150),
         Check(VAL_ACC, 0, "points_within", 0.06, 0.5),
         Check(VAL_ACC, 1, "points_within", 0.06, 0.5)),
    ),
    Scenario(
        "dropout-vs-weight-decay", "Dropout versus weight decay",
        "Two regularizers on the overfitting setup, alone and together: dropout (p = 0.5), "
        "and weight decay 0.3 with AdamW, which shrinks every weight toward zero by "
        "lr × 0.3 of itself at each step. That is decoupled weight decay: with Adam's "
        "rescaled steps it is not the same as an L2 penalty in the loss. Weight decay keeps "
        "the weights small; dropout adds noise to the units.",
        "Each alone ends with a final validation loss at least 25% lower than neither, and "
        "the two together at least 50% lower. Whether the pair also beats the better of the "
        "two alone depends on the draw of the data: try a few data seeds.",
        {"name": "Dropout vs weight decay", "dataset": NOISY_CIRCLES, "model": WIDE,
         "train": {**LONG, "optimizer": "adamw"},
         "sweep": {"dropout": [0.0, 0.5], "weight_decay": [0.0, 0.3]}},
        # runs: (p=0, wd=0), (p=0, wd=0.3), (p=0.5, wd=0), (p=0.5, wd=0.3)
        (Check(VAL_LOSS, 1, "lower", 0.25, 0),
         Check(VAL_LOSS, 2, "lower", 0.25, 0),
         Check(VAL_LOSS, 3, "lower", 0.5, 0)),
    ),
    Scenario(
        "irrelevant-features", "Many irrelevant inputs: input dropout",
        "Forty random input columns sit beside the two real ones. With 200 training points "
        "the network finds patterns in the noise columns that do not hold on new data. Input "
        "dropout with p = 0.5 drops each of the 42 inputs, the two real ones included, with "
        "probability 0.5, separately for every example, so no single input can be relied on. "
        "(For inputs 0.2 or less is usual; 0.5 makes the effect large.)",
        "With input dropout the final validation loss and the generalization gap are at least "
        "30% lower than with p = 0, but validation accuracy does not improve (at most 1 "
        "point higher): the gain is in confidence, not in the boundary. The network is less "
        "sure of its mistakes; it has not found the two real inputs.",
        {"name": "Irrelevant inputs",
         "dataset": {"name": "moons", "n_train": 200, "noise": 0.2, "extra_features": 40},
         "model": {**WIDE, "dropout": 0.0}, "train": {"epochs": 200, "lr": 0.003},
         "sweep": {"dropout": [0.0, 0.5], "target": "input"}},
        (Check(VAL_LOSS, 1, "lower", 0.3, 0),
         Check(GAP, 1, "lower", 0.3, 0),
         Check(VAL_ACC, 1, "points_at_most", 0.01, 0)),
    ),
]

BY_SLUG = {s.slug: s for s in SCENARIOS}

# The playground's first screen: the setup the form opens with (the API's defaults stay those
# of ExperimentConfig). A paired run where dropout's effect shows within half a second of
# training: 40 noisy xor points (a 2-D set, so both runs' decision surfaces can be drawn) and
# two layers of 48 units (2,594 weights and biases), with which the p = 0 twin memorizes the
# noise; five steps of 8 examples per epoch at a brisk lr, 100 epochs. At the ten held-out
# seed pairs the twin's final validation loss is 1.9-3.8 times p = 0.5's, while p = 0.5's
# validation accuracy matches the best of any rate from 0 to 0.7 (tests/ml/test_start.py).
START = ExperimentConfig.model_validate({
    "dataset": {"name": "xor", "n_train": 40, "noise": 0.25},
    "model": {"hidden": [48, 48], "dropout": 0.5},
    "train": {"epochs": 100, "batch_size": 8, "lr": 0.01},
    "baseline": True,
})
