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
import secrets
from collections.abc import Sequence
from functools import lru_cache

from pydantic import BaseModel, Field
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from app.ml.config import MAX_EPOCHS, DatasetConfig, ExperimentConfig
from app.ml.runs import plan_runs, rate_label
from app.ml.summary import primary_metric
from app.store import FINAL_STATUSES, Event, ExperimentRow, RoomRow, Store, tag

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: easy to read aloud


class Challenge(BaseModel):
    """What the presenter fixes; participants choose the network and the dropout."""

    dataset: DatasetConfig = Field(
        default_factory=lambda: DatasetConfig(name="moons", n_train=100, noise=0.3),
        description="The data everyone trains on (every dataset field; unnamed ones default).")
    epochs: int = Field(200, ge=1, le=MAX_EPOCHS, description="Epoch budget per experiment.")


class RoomState(BaseModel):
    challenge: Challenge | None = None
    locked: bool = False  # participants may not start experiments
    leaderboard: bool = True  # participants see the leaderboard
    closed: bool = False


class RoomSettings(BaseModel):
    """Presenter actions; fields left out stay as they are."""

    challenge: Challenge | None = None
    clear_challenge: bool = False
    locked: bool | None = None
    leaderboard: bool | None = None
    closed: bool | None = None

    def applied_to(self, state: RoomState) -> RoomState:
        new = state.model_copy(deep=True)
        if self.challenge is not None:
            new.challenge = self.challenge
        if self.clear_challenge:
            new.challenge = None
        for key in ("locked", "leaderboard", "closed"):
            if getattr(self, key) is not None:
                setattr(new, key, getattr(self, key))
        return new


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
    """The room's rules on a participant's config: the challenge's data replaces theirs, and
    more epochs than the budget are refused (a ValidationError on train.epochs)."""
    if state.challenge is None:
        return config
    raw = config.model_dump(mode="json")
    raw["dataset"] = state.challenge.dataset.model_dump()  # the same data for everyone
    if raw["train"]["epochs"] > state.challenge.epochs:
        error = PydanticCustomError(
            "limit", "the room's challenge allows at most {budget} epochs",
            {"budget": state.challenge.epochs, "field": "train.epochs"})
        raise ValidationError.from_exception_data("ExperimentConfig", [InitErrorDetails(
            type=error, loc=("train", "epochs"), input=raw["train"]["epochs"])])
    return ExperimentConfig.model_validate(raw)


def network_label(config: ExperimentConfig) -> str:
    """The network and the rate(s) its first run trains at, which is the run a board draws."""
    hidden = "-".join(str(w) for w in config.model.hidden) or "linear"
    return f"{hidden} {config.model.activation} · {rate_label(plan_runs(config)[0])}"


def entry(config: ExperimentConfig, author: str | None, name: str) -> dict:
    """What a room's `experiment` event says of a new experiment (its id is added by the
    store): who, and what it trains."""
    return {"author": author or "anonymous", "name": name, "task": config.task,
            "label": network_label(config)}


def room_copies(exp_id: str, events: Sequence[Event]) -> tuple[str | None, list[Event]]:
    """(topic, events) for the room an experiment's new events belong to, tagged with the
    experiment's id as a room's stream shows them; (None, []) outside rooms. Snapshots keep
    their place in the order with no data: rooms do not show them."""
    copies = [e if not e.seq else  # the room's own events are as they were logged
              Event(e.seq, e.kind, "" if e.kind == "snapshot" else tag(exp_id, e.data), e.ref)
              for e in events if e.ref is not None]
    return (topic(copies[0].ref.code), copies) if copies else (None, [])


def topic(code: str) -> str:
    """The broker topic of a room's live events."""
    return f"room:{code}"


@lru_cache(maxsize=4096)
def _run0_epochs(store: Store, exp_id: str, last_seq: int, n_runs: int) -> list[dict]:
    """Run 0's stored epochs, keyed by the log's length: 40 boards refreshing during a
    workshop parse each finished experiment's log once, not 40 times."""
    return store.epochs_by_run(exp_id, n_runs)[0]


def board_data(room: RoomRow, store: Store, presenter: bool) -> dict:
    """Everything a board shows: members, every experiment's validation curve (run 0, labelled
    with the rate run 0 trained at) and, if the viewer may see it, the leaderboard."""
    state = state_of(room)
    members = {m.client: m.name for m in store.members(room.code)}
    entries = [_board_entry(row, store) for row in store.in_room(room.code)]
    visible = state.leaderboard or presenter
    if not visible:  # hidden: no scores at all, or the ranking could be rebuilt
        entries = [{**e, "best": None} for e in entries]
    ranked = sorted((e for e in entries if e["best"]),
                    key=lambda e: (-(e["best"][e["metric"]] or 0), e["best"]["val_loss"]))
    return {"code": room.code, "name": room.name, "state": state.model_dump(),
            "members": sorted(members.values()), "experiments": entries,
            "leaderboard": ranked if visible else None,
            "final_statuses": list(FINAL_STATUSES)}


def _board_entry(row: ExperimentRow, store: Store) -> dict:
    config = ExperimentConfig.model_validate_json(row.config)
    curve = _run0_epochs(store, row.id, row.last_seq, row.n_runs)
    metric = primary_metric(config.task)
    best = min(curve, key=lambda e: e["val_loss"] if e["val_loss"] is not None
               else float("inf")) if curve else None
    run0 = plan_runs(config)[0]
    return {
        "id": row.id, "author": row.author or "anonymous", "name": row.name,
        "status": row.status, "task": config.task, "metric": metric,
        "hidden": config.model.hidden, "activation": config.model.activation,
        "dropout": run0.dropout, "input_dropout": run0.input_rate,
        "rate_label": rate_label(run0), "label": network_label(config),
        "epochs": [e["epoch"] for e in curve],
        "val_loss": [e["val_loss"] for e in curve],
        "best": None if best is None else {"epoch": best["epoch"],
                                           "val_loss": best["val_loss"],
                                           metric: best[metric]},
    }
