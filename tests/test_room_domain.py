"""The room domain (app.rooms) and the room's log in the store: rules, labels, and positions.

The store runs on a real SQLite file; experiments here are rows and events written directly,
as the executor writes them, so every position of a room's log can be checked by hand.
"""

from __future__ import annotations

import json

import pytest
from alembic import command
from alembic.config import Config
from pydantic import ValidationError
from sqlalchemy import text

from app import rooms
from app.ml.config import ExperimentConfig
from app.rooms import Challenge, RoomSettings, RoomState
from app.store import MIGRATIONS, Store

SWEEP = ExperimentConfig.model_validate({
    "model": {"hidden": [32, 16], "dropout": 0.5},
    "sweep": {"dropout": [0.1, 0.3], "target": "layer2"}})


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'rooms.sqlite'}")
    yield s
    s.close()


def room_with_experiment(store: Store, epochs: int = 3) -> tuple[str, str]:
    store.create_room("ABC-DEF", "", rooms.hash_key("k"), RoomState().model_dump())
    exp_id, _ = store.create_with_events(SWEEP.model_dump(mode="json"), 2, 2 * epochs, "me",
                                         "ABC-DEF", "Ada",
                                         room_entry=rooms.entry(SWEEP, "Ada", ""))
    store.transition(exp_id, "running")
    for epoch in range(1, epochs + 1):  # a batch: both runs' epoch and a snapshot
        store.append(exp_id, [("epoch", {"run": r, "epoch": epoch, "val_loss": 1 / epoch})
                              for r in (0, 1)] + [("snapshot", {"run": 0, "epoch": epoch})])
    store.transition(exp_id, "done", {"summary": {}})
    return "ABC-DEF", exp_id


def test_a_board_labels_an_experiment_with_the_rate_its_first_run_trains_at():
    # a sweep of layer 2: run 0 trains at 0.5 on layer 1 and 0.1 on layer 2, not model.dropout
    assert rooms.network_label(SWEEP) == "32-16 relu · p = 0.5/0.1"
    assert rooms.entry(SWEEP, None, "x", "client") == {
        "author": "anonymous", "name": "x", "task": "classification",
        "label": "32-16 relu · p = 0.5/0.1", "owner": rooms.owner_tag("client")}
    assert rooms.owner_tag("client") != rooms.owner_tag("other") and "client" not in \
        rooms.owner_tag("client")


def test_the_challenge_replaces_the_data_and_caps_the_epochs():
    state = RoomState(challenge=Challenge.model_validate(
        {"dataset": {"name": "circles", "n_train": 80}, "epochs": 20}))
    mine = ExperimentConfig.model_validate({"dataset": {"name": "xor"}, "train": {"epochs": 20}})
    ruled = rooms.apply_challenge(mine, state)
    assert ruled.dataset == state.challenge.dataset and ruled.train.epochs == 20
    with pytest.raises(ValidationError) as e:
        rooms.apply_challenge(mine.model_copy(update={"train": mine.train.model_copy(
            update={"epochs": 21})}), state)
    assert e.value.errors()[0]["loc"] == ("train", "epochs")
    assert "at most 20 epochs" in str(e.value)


def test_presenter_actions_change_only_what_they_name():
    state = RoomState(challenge=Challenge(), locked=True)
    assert RoomSettings(leaderboard=False).applied_to(state) == RoomState(
        challenge=Challenge(), locked=True, leaderboard=False)
    assert RoomSettings(clear_challenge=True, locked=False).applied_to(state) == RoomState()
    assert state.locked  # the old state is left as it was
    assert rooms.refusal(RoomState()) is None
    assert "paused" in rooms.refusal(RoomState(locked=True))
    assert "closed" in rooms.refusal(RoomState(locked=True, closed=True))


def test_the_room_log_references_each_batch_once_and_expands_it_in_order(store):
    code, exp_id = room_with_experiment(store)
    log = store.room_events_after(code)
    kinds = [e.kind for e in log]
    # experiment, queued, running, 3 x (epoch, epoch, snapshot), done
    assert kinds == ["experiment", "status", "status"] + ["epoch", "epoch", "snapshot"] * 3 + [
        "done"]
    assert [e.seq for e in log] == [0, *range(1, 13)]
    assert [e.ref.seq for e in log] == [1, 2, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7]
    assert json.loads(log[0].data) == {"exp": exp_id, **rooms.entry(SWEEP, "Ada", "")}
    epoch = json.loads(log[3].data)
    assert list(epoch)[0] == "exp" and epoch == {"exp": exp_id, "run": 0, "epoch": 1,
                                                 "val_loss": 1.0}
    assert log[5].data == ""  # a snapshot keeps its place, without its data
    # events are stored once: the room's log holds references, not copies
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, data FROM room_events ORDER BY seq")).all()
    assert [k for k, _ in rows] == ["experiment", "ref", "ref", "ref", "ref", "ref", "ref"]
    # every position resumes with exactly what follows it
    for i, e in enumerate(log):
        assert store.room_events_after(code, e.ref.seq, e.seq) == log[i + 1:], i
    assert store.room_events_after(code, 4, 4, limit=2) == log[5:7]  # a page mid-batch


def test_a_batch_of_snapshots_alone_is_referenced_too(store):
    """(A participant's page shows its own run's snapshots from the room's stream.)"""
    code, exp_id = room_with_experiment(store, epochs=1)
    before = store.room_events_after(code)
    store.append(exp_id, [("snapshot", {"run": 0, "epoch": 1, "grid": "g"})])
    after = store.room_events_after(code)
    assert after[:-1] == before and after[-1].kind == "snapshot" and after[-1].data == ""
    (own,) = store.room_events_after(code, *_position(after[-2]), owner="me")
    assert json.loads(own.data) == {"exp": exp_id, "run": 0, "epoch": 1, "grid": "g"}


def _position(e) -> tuple[int, int]:
    return e.ref.seq, e.seq


def test_room_state_and_members_are_logged_and_deleting_an_experiment_drops_its_refs(store):
    code, exp_id = room_with_experiment(store, epochs=1)
    (member,) = store.join(code, "client", "Bo")
    (changed,) = store.set_room_state(code, RoomState(locked=True).model_dump())
    assert (member.kind, json.loads(member.data)) == ("member", {"name": "Bo"})
    assert (changed.kind, json.loads(changed.data)["locked"]) == ("room", True)
    assert member.ref.seq + 1 == changed.ref.seq
    store.delete(exp_id)
    assert [e.kind for e in store.room_events_after(code)] == ["experiment", "member", "room"]


def test_rooms_from_before_the_room_log_get_their_history_logged(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    store = Store(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
        conn.execute(text("INSERT INTO rooms VALUES ('OLD-ONE', '', 'h', '2026', '{}')"))
        conn.execute(text("INSERT INTO members VALUES ('OLD-ONE', 'c', 'Ada', '2026')"))
        conn.execute(text(
            "INSERT INTO experiments (id, created_at, status, name, config, n_runs, "
            "total_epochs, epochs_done, last_seq, room, author) VALUES ('e1', '2026', 'done', "
            "'', :config, 1, 1, 1, 2, 'OLD-ONE', 'Ada')"),
            {"config": json.dumps({"model": {"hidden": [8], "dropout": 0.2}})})
        conn.execute(text("INSERT INTO events VALUES ('e1', 1, 'status', '{}'), "
                          "('e1', 2, 'epoch', '{\"run\": 0, \"epoch\": 1}')"))
        command.upgrade(cfg, "head")
    log = store.room_events_after("OLD-ONE")
    assert [e.kind for e in log] == ["member", "experiment", "status", "epoch"]
    assert json.loads(log[1].data)["label"] == "8 · p = 0.2"
    # and the room goes on numbering after its history
    (e,) = store.join("OLD-ONE", "c2", "Bo")
    assert e.ref.seq == 4
    store.close()
