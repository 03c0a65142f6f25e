"""The experiment config: one pydantic model that is the single truth for an experiment.

Validation, defaults, limits, the help text of every field (units and meaning), the form on the
playground and the URL query string all derive from these classes. Field names follow
CONTRACT.md exactly. Limits that protect the server live here too, so they hold no matter who
submits the config (the form, the API, the CLI).
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.ml.datasets import CATALOG

MAX_LAYERS = 8
MAX_WIDTH = 1024
MAX_PARAMS = 1_000_000  # weights + biases of one run's network
MAX_EPOCHS = 1000
MAX_RUNS = 64  # runs in one experiment (rates x folds x repeats)
MAX_SWEEP_PARAMS = 8_000_000  # parameters summed over every run of a sweep

DatasetName = Literal[tuple(CATALOG)]  # type: ignore[valid-type]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


def limit_error(field: str, message: str) -> PydanticCustomError:
    """A validation error about a rule spanning fields, pinned to the field to change."""
    return PydanticCustomError("limit", message, {"field": field})


def error_field(loc: tuple | list, ctx: dict | None = None, kind: str = "") -> str:
    """The dotted config field an error is about: list indices and pydantic's union-branch
    tags ('float', 'list[float]', 'constrained-float') dropped; a cross-field rule names the
    field to change through its context."""
    if ctx and ctx.get("field"):
        return ctx["field"]
    if kind.startswith("json_"):  # malformed JSON: its location is a byte offset
        return "body"
    parts = [str(p) for p in loc if not isinstance(p, int) and not _union_tag(str(p))]
    return ".".join(parts) or "config"


def clean_message(msg: str) -> str:
    """pydantic's message without its 'Value error, ' prefix (our own messages are sentences)."""
    return msg.removeprefix("Value error, ")


def _union_tag(part: str) -> bool:
    return part in ("float", "int", "str", "bool") or part.startswith(
        ("list[", "constrained-", "function-", "json-or-python", "lax-or-strict"))


def describe_errors(err: ValidationError) -> list[dict[str, str]]:
    """[{"field": "dataset.n_train", "message": "..."}]: readable errors for the API and CLI,
    one per field (the first; a union's other branches only repeat it less clearly)."""
    out: dict[str, str] = {}
    for e in err.errors(include_url=False):
        out.setdefault(error_field(e["loc"], e.get("ctx"), e["type"]), clean_message(e["msg"]))
    return [{"field": f, "message": m} for f, m in out.items()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    name: DatasetName = Field("moons", description="Which dataset to learn.")
    n_train: int = Field(
        200, ge=10, le=5000,
        description="Number of training examples. Fewer examples make overfitting easier to see.",
    )
    noise: float = Field(
        0.2, ge=0.0, le=2.0,
        description="Standard deviation of Gaussian noise: jitter added to the inputs of "
        "moons, circles, spirals and xor (input units); added on top of the blobs' own spread "
        "(0.35) for gaussians; added to the targets of sine (target units). Ignored by the "
        "noise dataset and the real tables.",
    )
    label_noise: float = Field(
        0.0, ge=0.0, le=0.5,
        description="Probability that each training label is flipped to a wrong class, so "
        "the expected fraction flipped (validation and test stay clean). Classification only.",
    )
    extra_features: int = Field(
        0, ge=0, le=100,
        description="Number of irrelevant random input features appended to every example.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed that draws and splits the data.")

    @model_validator(mode="after")
    def _fits_dataset(self) -> DatasetConfig:
        info = CATALOG[self.name]
        if self.n_train > info.max_train:
            raise limit_error(
                "dataset.n_train",
                f"n_train={self.n_train} is more than {self.name} has: "
                f"at most {info.max_train} training examples",
            )
        return self


class ModelConfig(_Strict):
    hidden: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [64, 64], max_length=MAX_LAYERS,
        description=f"Width of each hidden layer (units), input to output; at most {MAX_LAYERS}.",
    )
    activation: Literal["relu", "tanh", "gelu", "sigmoid"] = Field(
        "relu", description="Nonlinearity after every hidden layer."
    )
    dropout: float | list[float] = Field(
        0.5,
        description="Dropout rate p: the probability of DROPPING each hidden unit during "
        "training (keep probability 1-p). One rate for every hidden layer, or a list with "
        "one rate per hidden layer.",
    )
    input_dropout: Rate = Field(
        0.0, description="Dropout rate p applied to the input features during training."
    )

    @field_validator("dropout")
    @classmethod
    def _valid_rates(cls, v: float | list[float]) -> float | list[float]:
        for p in v if isinstance(v, list) else [v]:
            if not 0.0 <= p < 1.0:
                raise ValueError(
                    f"dropout rate must be at least 0 and below 1 (it is the probability of "
                    f"dropping a unit), got {p}"
                )
        return v

    @model_validator(mode="after")
    def _rates_match_layers(self) -> ModelConfig:
        if isinstance(self.dropout, list) and len(self.dropout) != len(self.hidden):
            raise limit_error(
                "model.dropout",
                f"dropout has {len(self.dropout)} rates for {len(self.hidden)} hidden layers",
            )
        return self

    def layer_rates(self) -> list[float]:
        """The dropout rate of each hidden layer."""
        if isinstance(self.dropout, list):
            return list(self.dropout)
        return [float(self.dropout)] * len(self.hidden)

    def n_params(self, n_in: int, n_out: int) -> int:
        sizes = [n_in, *self.hidden, n_out]
        return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


class TrainConfig(_Strict):
    epochs: int = Field(100, ge=1, le=MAX_EPOCHS, description="Passes over the training data.")
    batch_size: int = Field(32, ge=1, le=4096, description="Examples per optimizer step.")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="Update rule.")
    lr: float = Field(0.001, gt=0.0, le=10.0, description="Learning rate (step size).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum (SGD only).")
    weight_decay: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Weight decay on all parameters. Adam and SGD add weight_decay × w to the "
        "gradient: an L2 penalty of weight_decay/2 × ‖w‖² on the loss. AdamW decays the "
        "weights directly (decoupled): each step shrinks w by lr × weight_decay × w, which "
        "with Adam's rescaled steps is not an L2 penalty.",
    )
    l1: float = Field(
        0.0, ge=0.0, le=1.0,
        description="L1 penalty coefficient: adds l1 * sum(|w|) over weight matrices to the loss.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed for initial weights, data order "
                      "and dropout masks.")


SweepTarget = Literal["hidden", "input", *(f"layer{i}" for i in range(1, MAX_LAYERS + 1))]


class SweepConfig(_Strict):
    """Which dropout rates to try, and how often: rates x weight decays x repeats x folds runs.

    The rates come from exactly one of: an explicit list (`dropout`), a grid from `low` to
    `high` by `grid_step`, or `random_samples` rates drawn uniformly between `low` and `high`.
    """

    dropout: list[Rate] | None = Field(
        None, min_length=1, max_length=MAX_RUNS,
        description="Dropout rates to try, one run per value.",
    )
    grid_step: float | None = Field(
        None, ge=0.001, le=1.0,
        description="Grid search: rates from low to high (inclusive) in steps of this size.",
    )
    random_samples: int | None = Field(
        None, ge=1, le=MAX_RUNS,
        description="Random search: this many rates drawn uniformly between low and high "
        "(seeded by train.seed).",
    )
    low: Rate = Field(0.0, description="Lowest rate of a grid or random search.")
    high: Rate = Field(0.8, description="Highest rate of a grid or random search.")
    target: SweepTarget = Field(
        "hidden",
        description="Where the swept rate goes: every hidden layer, the input dropout, or one "
        "hidden layer (layer1 is the first; the others keep model.dropout).",
    )
    weight_decay: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        None, min_length=1, max_length=MAX_RUNS,
        description="Weight decay values (see train.weight_decay) crossed with every rate "
        "(dropout x weight decay grid); default: train.weight_decay only.",
    )
    folds: int = Field(
        1, ge=1, le=10,
        description="k-fold cross-validation: with k > 1 each run trains on k-1 parts of the "
        "training examples and validates on the remaining part.",
    )
    repeats: int = Field(
        1, ge=1, le=20,
        description="Runs per setting, each with other seeds (repeat i adds i to the seeds that "
        "repeat_seeds names): their spread shows how much a result owes to chance.",
    )
    repeat_seeds: Literal["train", "data", "both"] = Field(
        "train",
        description="What each repeat reseeds: train (train.seed + i: initial weights, data "
        "order, dropout masks), data (dataset.seed + i: a new draw of the dataset and its "
        "split), or both. With data or both, the spread includes the data's variance.",
    )

    @model_validator(mode="after")
    def _one_source_of_rates(self) -> SweepConfig:
        given = [n for n in ("dropout", "grid_step", "random_samples") if getattr(self, n)]
        if len(given) > 1:
            raise limit_error(f"sweep.{given[1]}", f"choose one of {' / '.join(given)}")
        if (self.grid_step or self.random_samples) and self.low > self.high:
            raise limit_error("sweep.low", f"low ({self.low}) is above high ({self.high})")
        if self.grid_step and self._grid_count() > MAX_RUNS:
            raise limit_error("sweep.grid_step", f"the grid has more than {MAX_RUNS} rates")
        return self

    def _grid_count(self) -> int:
        """Rates in the grid low, low+step, ... <= high (a little slack for float steps)."""
        return int(math.floor((self.high - self.low) / self.grid_step + 1e-9)) + 1

    def rates(self, seed: int) -> list[float] | None:
        """The rates to try, or None when the sweep only adds folds/repeats to model.dropout."""
        if self.dropout:
            return list(self.dropout)
        if self.grid_step:
            return [round(self.low + i * self.grid_step, 6) for i in range(self._grid_count())]
        if self.random_samples:
            rng = random.Random(seed)
            return sorted(round(rng.uniform(self.low, self.high), 3)
                          for _ in range(self.random_samples))
        return None


class ExperimentConfig(_Strict):
    name: str = Field("", max_length=80, description="Free text label.")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sweep: SweepConfig | None = Field(None, description="Optional: many runs in one experiment.")
    baseline: bool = Field(
        False,
        description="Also train a twin with no dropout (p = 0 on every layer and the inputs) "
        "on the same data, from the same initial weights and seeds, side by side: what differs "
        "between the two is what dropout did. The twin is run 1; run 0 is the configured run, "
        "with the numbers it would have alone. Nothing to pair when every rate is already 0; "
        "a sweep lists its own rates instead (include 0 there).",
    )

    @field_validator("name")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @model_validator(mode="after")
    def _within_budget(self) -> ExperimentConfig:
        info = CATALOG[self.dataset.name]
        n_in = info.n_features + self.dataset.extra_features
        params = self.model.n_params(n_in, info.n_classes)
        if params > MAX_PARAMS:
            raise limit_error(
                "model.hidden",
                f"model has {params:,} parameters; the limit is {MAX_PARAMS:,} (narrow the layers)",
            )
        if self.sweep and self.sweep.folds > 1 and self.dataset.n_train < 2 * self.sweep.folds:
            raise limit_error("sweep.folds", "n_train must be at least twice the number of folds")
        target = self.sweep.target if self.sweep else "hidden"
        if target.startswith("layer") and int(target[5:]) > len(self.model.hidden):
            raise limit_error("sweep.target", f"{target} does not exist: the network has "
                              f"{len(self.model.hidden)} hidden layers")
        if self.baseline and self.sweep is not None:
            raise limit_error("baseline", "a sweep lists its own rates: add 0 to the sweep's "
                              "rates instead of the p = 0 twin")
        runs = self.n_runs
        if runs > MAX_RUNS:
            raise limit_error(
                "sweep", f"sweep has {runs} runs (rates x weight decays x folds x repeats); "
                f"the limit is {MAX_RUNS}"
            )
        if runs * params > MAX_SWEEP_PARAMS:
            raise limit_error(
                "sweep",
                f"sweep trains {runs} x {params:,} parameters; the limit is {MAX_SWEEP_PARAMS:,}",
            )
        return self

    @property
    def task(self) -> str:
        return CATALOG[self.dataset.name].task

    @property
    def paired(self) -> bool:
        """True when a p = 0 twin trains beside the run (baseline asked, a rate above 0)."""
        return (self.baseline and self.sweep is None
                and (self.model.input_dropout > 0 or any(self.model.layer_rates())))

    @property
    def n_runs(self) -> int:
        s = self.sweep
        if s is None:
            return 2 if self.paired else 1
        rates = s.rates(self.train.seed) or [None]
        return len(rates) * len(s.weight_decay or [None]) * s.folds * s.repeats
