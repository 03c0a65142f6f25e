"""Workshop rooms, the domain: a room's state and rules, its board data, and its event log.

A presenter creates a room with a short code (K7Q-2MX) and a secret; participants join with a
display name and train experiments tagged with the room. The presenter may set a challenge
(fixed data and an epoch budget), pause the room, hide the leaderboard or close it.

A room's changes are events in a log of its own (app.store: `room_events`), numbered like an
experiment's: the room's own events (`room` state, `member`, `experiment` when one is started
in it) and references to ranges of its experiments' logs, so every epoch is stored once and
a room's stream replays and resumes like an experiment's (app.web.stream). This module says
what those events carry; it knows nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from app.ml.config import MAX_EPOCHS, MAX_LAYERS, MAX_WIDTH, DatasetConfig, ExperimentConfig
from app.ml.runs import plan_runs, rate_label
from app.ml.summary import mean_std, primary_metric
from app.store import FINAL_STATUSES, Event, ExperimentRow, RoomRow, Store, tag

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: easy to read aloud


class Challenge(BaseModel):
    """What the presenter fixes: the data and an epoch budget, and, if they choose, the network
    (so every point on the room's U-curve compares like with like). Participants choose the
    dropout, and the network unless it is fixed."""

    dataset: DatasetConfig = Field(
        default_factory=lambda: DatasetConfig(name="moons", n_train=100, noise=0.3),
        description="The data everyone trains on (every dataset field; unnamed ones default).")
    epochs: int = Field(200, ge=1, le=MAX_EPOCHS, description="Epoch budget per experiment.")
    hidden: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] | None = Field(
        None, max_length=MAX_LAYERS,
        description="Fix the network: hidden layer widths everyone uses (empty: each "
                    "participant chooses).")
    activation: Literal["relu", "tanh", "gelu", "sigmoid"] | None = Field(
        None, description="Fix the nonlinearity too (empty: each participant chooses).")


RANKINGS = {  # what the leaderboard can rank by: (label, field of a run summary, lower wins)
    "final_val_loss": ("final validation loss", "val_loss", True),
    "final_score": ("final validation accuracy or R²", "score", False),
    "best_val_loss": ("best validation loss (epoch picked on validation)", "best_val_loss",
                      True),
}
Ranking = Literal["final_val_loss", "final_score", "best_val_loss"]


class RoomState(BaseModel):
    challenge: Challenge | None = None
    locked: bool = False  # participants may not start experiments
    leaderboard: bool = True  # participants see everyone's scores and curves
    closed: bool = False
    rank_by: Ranking = "final_val_loss"  # the leaderboard's order and the U-curve's y
    reveal_test: bool = False  # held-out test scores shown (a workshop's last reveal)


class RoomSettings(BaseModel):
    """Presenter actions; fields left out stay as they are."""

    challenge: Challenge | None = None
    clear_challenge: bool = False
    locked: bool | None = None
    leaderboard: bool | None = None
    closed: bool | None = None
    rank_by: Ranking | None = None
    reveal_test: bool | None = None

    def applied_to(self, state: RoomState) -> RoomState:
        new = state.model_copy(deep=True)
        if self.challenge is not None:
            new.challenge = self.challenge
        if self.clear_challenge:
            new.challenge = None
        for key in ("locked", "leaderboard", "closed", "rank_by", "reveal_test"):
            if getattr(self, key) is not None:
                setattr(new, key, getattr(self, key))
        return new


@dataclass(frozen=True)
class Viewer:
    """Who looks at a room: its presenter, or a browser (its client id), member or not."""

    client: str = ""
    presenter: bool = False

    def sees_all(self, state: RoomState) -> bool:
        """Everyone's scores and curves: the presenter always, others while the leaderboard
        is shown; otherwise only one's own."""
        return self.presenter or state.leaderboard

    @property
    def tag(self) -> str:
        return owner_tag(self.client)


def owner_tag(owner: str | None) -> str:
    """Who started an experiment, as a room's events say it: the same for one browser's
    experiments, and not its client id (which would let others act as it)."""
    return hashlib.sha256(f"dp-room-owner:{owner or ''}".encode()).hexdigest()[:16]


def new_code() -> str:
    pick = "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
    return f"{pick[:3]}-{pick[3:]}"


def hash_key(key: str) -> str:
    """The presenter secret as stored: only its hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def state_of(room: RoomRow) -> RoomState:
    return RoomState.model_validate_json(room.state)


def refusal(state: RoomState) -> str | None:
    """Why a participant may not start an experiment now, or None."""
    if state.closed:
        return "this room is closed: the workshop is over (experiments stay viewable)"
    if state.locked:
        return "the presenter has paused the room: wait until they open the controls"
    return None


def apply_challenge(config: ExperimentConfig, state: RoomState) -> ExperimentConfig:
    """The room's rules on a participant's config: the challenge's data (and network, if it
    fixes one) replace theirs, and more epochs than the budget are refused (a ValidationError
    on train.epochs)."""
    if state.challenge is None:
        return config
    challenge = state.challenge
    raw = config.model_dump(mode="json")
    raw["dataset"] = challenge.dataset.model_dump()  # the same data for everyone
    if challenge.hidden is not None:
        raw["model"]["hidden"] = list(challenge.hidden)
    if challenge.activation is not None:
        raw["model"]["activation"] = challenge.activation
    if raw["train"]["epochs"] > challenge.epochs:
        error = PydanticCustomError(
            "limit", "the room's challenge allows at most {budget} epochs",
            {"budget": challenge.epochs, "field": "train.epochs"})
        raise ValidationError.from_exception_data("ExperimentConfig", [InitErrorDetails(
            type=error, loc=("train", "epochs"), input=raw["train"]["epochs"])])
    return ExperimentConfig.model_validate(raw)


def network_label(config: ExperimentConfig) -> str:
    """The network and the rate(s) its first run trains at, which is the run a board draws."""
    hidden = "-".join(str(w) for w in config.model.hidden) or "linear"
    return f"{hidden} {config.model.activation} · {rate_label(plan_runs(config)[0])}"


def entry(config: ExperimentConfig, author: str | None, name: str,
          owner: str | None = None) -> dict:
    """What a room's `experiment` event says of a new experiment (its id is added by the
    store): who (a name, and a tag that tells a viewer's own experiments), and what it
    trains."""
    return {"author": author or "anonymous", "name": name, "task": config.task,
            "label": network_label(config), "owner": owner_tag(owner)}


def room_copies(exp_id: str, events: Sequence[Event]) -> tuple[str | None, list[Event]]:
    """(topic, events) for the room an experiment's new events belong to, tagged with the
    experiment's id as a room's stream shows them; (None, []) outside rooms. (Each viewer's
    stream shows snapshots of their own experiments only: app.web.stream.RoomLog.)"""
    copies = [e if not e.seq else  # the room's own events are as they were logged
              Event(e.seq, e.kind, tag(exp_id, e.data), e.ref)
              for e in events if e.ref is not None]
    return (topic(copies[0].ref.code), copies) if copies else (None, [])


def exp_of(data: str) -> str:
    """The experiment id of an experiment event as a room's log shows it (app.store.tag puts
    it first), without parsing the whole event."""
    start = len('{"exp": "')
    return data[start:data.index('"', start)]


def topic(code: str) -> str:
    """The broker topic of a room's live events."""
    return f"room:{code}"


@lru_cache(maxsize=4096)
def _run0_epochs(store: Store, exp_id: str, last_seq: int, n_runs: int) -> list[dict]:
    """Run 0's stored epochs, keyed by the log's length: 40 boards refreshing during a
    workshop parse each finished experiment's log once, not 40 times."""
    return store.epochs_by_run(exp_id, n_runs)[0]


def board_data(room: RoomRow, store: Store, viewer: Viewer) -> dict:
    """Everything a board shows a viewer: members, experiments (with their validation curve
    of run 0 and its final and best numbers), the leaderboard and the U-curve. With the
    leaderboard hidden, a participant gets only their own experiments' numbers."""
    state = state_of(room)
    members = sorted(m.name for m in store.members(room.code))
    everyone = viewer.sees_all(state)
    entries = []
    for row in store.in_room(room.code):
        mine = row.owner is not None and row.owner == viewer.client
        entries.append(_board_entry(row, store, scores=everyone or mine, mine=mine,
                                    test=state.reveal_test))
    label, key, lower = RANKINGS[state.rank_by]
    scored = [e for e in entries if e["scores"] and e["scores"].get(key) is not None]
    ranked = sorted(scored, key=lambda e: e["scores"][key] * (1 if lower else -1))
    return {"code": room.code, "name": room.name, "state": state.model_dump(),
            "members": members, "experiments": entries, "everyone": everyone,
            "leaderboard": ranked, "rank_by": {"key": state.rank_by, "label": label},
            "ucurve": ucurve(ranked if lower else scored, key, label),
            "final_statuses": list(FINAL_STATUSES)}


def _board_entry(row: ExperimentRow, store: Store, scores: bool, mine: bool,
                 test: bool) -> dict:
    config = ExperimentConfig.model_validate_json(row.config)
    run0 = plan_runs(config)[0]
    curve = _run0_epochs(store, row.id, row.last_seq, row.n_runs) if scores else []
    metric = primary_metric(config.task)
    best = min(curve, key=lambda e: e["val_loss"] if e["val_loss"] is not None
               else float("inf")) if curve else None
    return {
        "id": row.id, "author": row.author or "anonymous", "name": row.name, "mine": mine,
        "status": row.status, "task": config.task, "metric": metric,
        "hidden": config.model.hidden, "activation": config.model.activation,
        "dropout": run0.dropout, "input_dropout": run0.input_rate,
        "rate": _hidden_rate(run0), "rate_label": rate_label(run0),
        "label": network_label(config), "setup": setup_label(config),
        "epochs": [e["epoch"] for e in curve],
        "val_loss": [e["val_loss"] for e in curve],
        "scores": _scores(row, config.task, test) if scores else None,
        "best": None if best is None else {"epoch": best["epoch"], "val_loss": best["val_loss"],
                                           metric: best[metric]},  # picked on validation
    }


def _hidden_rate(spec) -> float:
    """Where a run sits on the U-curve's x axis: its hidden layers' rate (their mean when
    the layers differ; 0 with no hidden layer)."""
    rates = spec.layer_rates
    return round(sum(rates) / len(rates), 4) if rates else 0.0


def _scores(row: ExperimentRow, task: str, test: bool) -> dict | None:
    """Run 0's final and best numbers from the stored summary (None until it has ended)."""
    if not row.summary:
        return None
    runs = json.loads(row.summary).get("runs") or []
    run = runs[0] if runs else {}
    final = run.get("final")
    if not final:
        return None
    score = primary_metric(task)
    out = {"val_loss": final.get("val_loss"), "score": final.get(score),
           "best_val_loss": run.get("best_val_loss"), "best_epoch": run.get("best_epoch"),
           "epochs": run.get("epochs_trained")}
    if test and run.get("test"):  # held-out: never seen by training or by any choice
        out["test_loss"] = run["test"].get("test_loss")
        out["test_score"] = run["test"].get("test_" + score.removeprefix("val_"))
    return out


def setup_label(config: ExperimentConfig) -> str:
    """What must be equal for two experiments to sit on one U-curve: the data and the
    network (a challenge fixes them; without one, people differ)."""
    d = config.dataset
    hidden = "-".join(str(w) for w in config.model.hidden) or "linear"
    return f"{d.name} {d.n_train}, noise {d.noise:g} · {hidden} {config.model.activation}"


def ucurve(entries: list[dict], key: str, label: str) -> dict:
    """The room's picture of the lesson: each finished experiment a point (its hidden rate
    against its number), and, per setup (data and network: only like is compared with like),
    the room's mean (± sample std) at each rate; the largest setup first."""
    points = [{"exp": e["id"], "x": e["rate"], "y": e["scores"][key], "author": e["author"],
               "label": e["rate_label"], "mine": e["mine"], "setup": e["setup"]}
              for e in entries]
    by_setup: dict[str, dict[float, list[float]]] = {}
    for p in points:
        by_setup.setdefault(p["setup"], {}).setdefault(p["x"], []).append(p["y"])
    curves = [{"setup": setup, "n": sum(len(ys) for ys in rates.values()),
               "means": [{"x": x, **mean_std(ys)} for x, ys in sorted(rates.items())]}
              for setup, rates in by_setup.items()]
    curves.sort(key=lambda c: -c["n"])
    return {"metric": label, "points": points, "curves": curves}
