"""Workshop rooms, in process (plus one stream over real HTTP): the presenter's secret link,
joining with a display name, experiments tagged with their room and author, the challenge, lock,
hidden leaderboard and close, escaping of names, and the room's live event stream.

Every browser is its own TestClient on the same running app (its own cookie jar), so a
presenter and participants act side by side, as in a workshop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from conftest import (
    TINY,
    cancel_quietly,
    experiment_count,
    finished,
    html_tree,
    roomy_client,
)
from fastapi.testclient import TestClient

AMBIGUOUS = set("0O1IL")  # read aloud, these get mixed up: codes never contain them
CODE = re.compile(r"[A-Z2-9]{3}-[A-Z2-9]{3}")
TINY_FORM = {"dataset.n_train": "50", "model.hidden": "16", "train.epochs": "3"}
HX = {"HX-Request": "true"}
CHALLENGE = {"dataset": {"name": "circles", "n_train": 80, "noise": 0.2}, "epochs": 20}
MARKUP = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """A dedicated app (one warm worker) whose limits stay out of the way."""
    with roomy_client(tmp_path_factory.mktemp("rooms")) as c:
        yield c


@dataclass
class Room:
    code: str
    key: str
    presenter: TestClient  # holds the presenter cookie


def new_browser(app_client: TestClient, **kwargs) -> TestClient:
    """Another browser on the same running app: its own cookies, so its own client id."""
    return TestClient(app_client.app, **kwargs)


def create_room(app_client: TestClient, name: str = "Dropout workshop") -> Room:
    presenter = new_browser(app_client)
    res = presenter.post("/rooms", data={"name": name}, follow_redirects=False)
    assert res.status_code == 303, res.text
    match = re.fullmatch(r"/rooms/([^/]+)/present\?key=(.+)", res.headers["location"])
    assert match, res.headers["location"]
    code, key = match.groups()
    assert presenter.get(res.headers["location"]).status_code == 200  # sets the cookie
    return Room(code, key, presenter)


@pytest.fixture
def room(app_client) -> Room:
    return create_room(app_client)


def join(app_client: TestClient, code: str, name: str) -> TestClient:
    participant = new_browser(app_client)
    res = participant.post(f"/rooms/{code}/join", data={"name": name}, follow_redirects=False)
    assert res.status_code == 303, res.text
    assert res.headers["location"] == f"/rooms/{code.upper()}"  # the code's canonical form
    return participant


def play(browser: TestClient, code: str, form: dict | None = None):
    """The room page's Train button (an htmx request, as the page sends it)."""
    return browser.post("/play", data={"room": code, **(form or TINY_FORM)}, headers=HX)


def started(res) -> str:
    assert res.status_code == 200, res.text
    return html_tree(res.text).find("section", id="run").attrs["data-exp"]


def settings(room: Room, **change) -> dict:
    res = room.presenter.post(f"/api/rooms/{room.code}/settings", json=change)
    assert res.status_code == 200, res.text
    return res.json()["state"]


def board(browser: TestClient, code: str) -> dict:
    res = browser.get(f"/api/rooms/{code}")
    assert res.status_code == 200, res.text
    return res.json()


# -- the presenter ---------------------------------------------------------------------------

def test_a_new_room_has_a_readable_code_and_a_secret_presenter_link(app_client):
    rooms = [create_room(app_client) for _ in range(12)]
    for r in rooms:
        assert CODE.fullmatch(r.code), r.code
        assert not AMBIGUOUS & set(r.code), r.code
        assert len(r.key) >= 16  # a secret, not a guessable number
    assert len({r.code for r in rooms}) == len(rooms)
    assert len({r.key for r in rooms}) == len(rooms)

    # Following the secret link keeps the key in an http-only cookie and drops it from the URL.
    code, key = rooms[0].code, rooms[0].key
    fresh = new_browser(app_client)
    res = fresh.get(f"/rooms/{code}/present?key={key}", follow_redirects=False)
    assert res.status_code == 303
    assert res.headers["location"] == f"/rooms/{code}/present"
    (cookie,) = [c for c in res.headers.get_list("set-cookie") if c.startswith("dp_presenter_")]
    assert f"={key};" in cookie and "httponly" in cookie.lower()

    page = fresh.get(res.headers["location"])
    assert page.status_code == 200
    assert key not in page.text  # the secret is never echoed into the page
    tree = html_tree(page.text)
    assert tree.find(class_="big").text == code
    qr = tree.find(class_="qr")
    svg = qr.find("svg")  # inline, not an image fetched from elsewhere
    assert svg.find_all("path") or svg.find_all("rect")
    join_url = f"http://testserver/rooms/{code}"
    assert join_url in tree.find(class_="join-box").text
    assert tree.find("a", href=f"/rooms/{code}")


def test_the_presenter_page_needs_the_secret(app_client, room):
    other = create_room(app_client)
    stranger = new_browser(app_client)

    res = stranger.get(f"/rooms/{room.code}/present?key=not-the-key", follow_redirects=False)
    assert res.status_code == 403
    assert "not valid" in res.text
    assert "set-cookie" not in res.headers or "dp_presenter" not in res.headers["set-cookie"]

    res = stranger.get(f"/rooms/{room.code}/present")
    assert res.status_code == 403
    assert "only the presenter of this room can do that" in html_tree(res.text).text

    # one room's presenter link is worth nothing in another room
    assert room.presenter.get(f"/rooms/{other.code}/present").status_code == 403
    assert other.presenter.get(f"/rooms/{room.code}/present?key={other.key}").status_code == 403
    assert room.presenter.get(f"/rooms/{room.code}/present").status_code == 200


def test_unknown_room_is_a_404(app_client):
    browser = new_browser(app_client)
    for url in ("/rooms/ZZZ-999", "/api/rooms/ZZZ-999", "/rooms/ZZZ-999/present"):
        assert browser.get(url).status_code == 404, url
    assert browser.post("/rooms/ZZZ-999/join", data={"name": "x"}).status_code == 404


# -- participants ----------------------------------------------------------------------------

def test_a_participant_joins_with_a_name_and_gets_the_controls_and_the_board(app_client, room):
    participant = new_browser(app_client)
    before = html_tree(participant.get(f"/rooms/{room.code}").text)
    form = before.find("form", action=f"/rooms/{room.code}/join")
    assert form.find("input", name="name")
    assert not before.find_all("form", id="controls")  # no controls before joining

    participant = join(app_client, room.code, "Ada")
    page = participant.get(f"/rooms/{room.code}")
    assert page.status_code == 200
    tree = html_tree(page.text)
    controls = tree.find("form", id="controls")
    assert controls.find("input", type="hidden", name="room").attrs["value"] == room.code
    assert controls.find("button", id="train-button")
    box = tree.find("section", id="board")
    assert box.attrs["data-room"] == room.code
    assert box.find(data_chart="room-curves")
    assert box.find(id="leaderboard")
    assert "you are Ada" in tree.find(id="room-banner").text
    assert board(room.presenter, room.code)["members"] == ["Ada"]


def test_a_room_experiment_carries_its_author_and_reaches_the_leaderboard(app_client, room):
    ada = join(app_client, room.code, "Ada")
    res = play(ada, room.code)
    exp_id = started(res)
    assert res.headers["HX-Replace-Url"] == f"/rooms/{room.code}"
    solo = ada.post("/api/experiments", json=TINY).json()["id"]  # outside the room

    body = ada.get(f"/api/experiments/{exp_id}").json()
    assert (body["room"], body["author"]) == (room.code, "Ada")
    entries = {e["id"]: e for e in board(ada, room.code)["experiments"]}
    assert set(entries) == {exp_id}  # the experiment outside the room is not on its board
    assert entries[exp_id]["author"] == "Ada"

    body = finished(ada, exp_id)
    finished(ada, solo)
    assert body["status"] == "done"
    stored = body["runs"][0]["epochs"]
    best = min(stored, key=lambda e: e["val_loss"])  # the oracle: the stored epochs themselves
    data = board(room.presenter, room.code)
    (entry,) = data["leaderboard"]
    assert entry["id"] == exp_id and entry["author"] == "Ada"
    assert entry["best"] == {"epoch": best["epoch"], "val_loss": best["val_loss"],
                             "val_acc": best["val_acc"]}
    assert entry["epochs"] == [e["epoch"] for e in stored]
    assert entry["val_loss"] == [e["val_loss"] for e in stored]

    row = html_tree(ada.get(f"/rooms/{room.code}/leaderboard").text).find("tbody").find("tr")
    assert "Ada" in row.text
    assert row.find("a", href=f"/e/{exp_id}").text == "done"


def test_the_leaderboard_ranks_by_what_the_presenter_picks(app_client, room):
    """Default: final validation loss (not picked on validation), lowest first; the presenter
    may rank by the final score (highest first) or the best-epoch loss (which says so)."""
    ada, bob = join(app_client, room.code, "Ada"), join(app_client, room.code, "Bob")
    weak = started(play(bob, room.code, {**TINY_FORM, "train.epochs": "1", "train.lr": "0.0001"}))
    strong = started(play(ada, room.code, {**TINY_FORM, "train.epochs": "30"}))
    finished(ada, weak)
    finished(ada, strong)
    data = board(ada, room.code)
    assert data["rank_by"]["key"] == "final_val_loss"
    losses = [e["scores"]["val_loss"] for e in data["leaderboard"]]
    assert losses == sorted(losses) and {e["id"] for e in data["leaderboard"]} == {weak, strong}
    stored = ada.get(f"/api/experiments/{strong}").json()["runs"][0]["epochs"]
    (mine,) = [e for e in data["leaderboard"] if e["id"] == strong]
    assert mine["scores"]["val_loss"] == stored[-1]["val_loss"]  # the final epoch, as stored
    assert mine["scores"]["score"] == stored[-1]["val_acc"]

    settings(room, rank_by="final_score")
    scores = [e["scores"]["score"] for e in board(ada, room.code)["leaderboard"]]
    assert scores == sorted(scores, reverse=True)
    settings(room, rank_by="best_val_loss")
    table = html_tree(ada.get(f"/rooms/{room.code}/leaderboard").text)
    assert "picked on validation" in table.text
    res = room.presenter.post(f"/api/rooms/{room.code}/settings", json={"rank_by": "luck"})
    assert res.status_code == 422


def test_the_api_starts_room_experiments_only_for_members(app_client, room):
    ada = join(app_client, room.code, "Ada")
    res = ada.post(f"/api/experiments?room={room.code}", json=TINY)
    assert res.status_code == 201, res.text
    body = ada.get(res.json()["url"] + ".json").json()
    assert (body["room"], body["author"]) == (room.code, "Ada")

    stranger = new_browser(app_client)
    count = experiment_count(app_client)
    res = stranger.post(f"/api/experiments?room={room.code}", json=TINY)
    assert res.status_code == 403
    assert "join the room" in res.json()["detail"]
    res = play(stranger, room.code)  # the same rule for the form
    assert res.status_code == 403
    assert "join the room" in html_tree(res.text).text
    assert ada.post("/api/experiments?room=ZZZ-999", json=TINY).status_code == 404
    assert experiment_count(app_client) == count
    finished(ada, body["id"])


# -- the presenter's rules ---------------------------------------------------------------------

def test_a_challenge_fixes_the_data_and_caps_the_epochs(app_client, room):
    ada = join(app_client, room.code, "Ada")
    # the header works without any cookie (e.g. from a script on the presenter's laptop)
    res = new_browser(app_client).post(f"/api/rooms/{room.code}/settings", json={
        "challenge": CHALLENGE}, headers={"X-Presenter-Key": room.key})
    assert res.status_code == 200, res.text
    challenge = res.json()["state"]["challenge"]
    assert challenge["epochs"] == 20
    assert challenge["dataset"].items() >= CHALLENGE["dataset"].items()

    count = experiment_count(app_client)
    res = play(ada, room.code, {**TINY_FORM, "dataset.name": "moons", "train.epochs": "50"})
    assert res.status_code == 422
    assert res.headers["HX-Retarget"] == "#controls"
    error = html_tree(res.text).find(id="err-train.epochs").text
    assert "20" in error and "epochs" in error
    res = ada.post(f"/api/experiments?room={room.code}", json={**TINY, "train": {"epochs": 50}})
    assert res.status_code == 422
    (problem,) = res.json()["detail"]
    assert problem["field"] == "train.epochs" and "20" in problem["msg"]
    assert experiment_count(app_client) == count

    exp_id = started(play(ada, room.code, {**TINY_FORM, "dataset.name": "moons",
                                           "train.epochs": "10"}))
    config = ada.get(f"/api/experiments/{exp_id}").json()["config"]
    assert config["dataset"]["name"] == "circles"
    assert config["dataset"]["n_train"] == 80
    assert config["dataset"]["noise"] == 0.2
    assert config["train"]["epochs"] == 10
    assert config["model"]["hidden"] == [16]  # the participant's own choice stays

    # The room page shows the challenge and fixes the data controls.
    tree = html_tree(ada.get(f"/rooms/{room.code}").text)
    banner = tree.find(id="room-banner").find(class_="challenge").text
    assert "circles" in banner and "80 training examples" in banner and "20 epochs" in banner
    data = tree.find("fieldset", data_section="dataset")
    assert "disabled" in data.attrs
    assert data.find("input", name="dataset.name", checked=True).attrs["value"] == "circles"
    assert tree.find("input", name="train.epochs").attrs["value"] == "20"

    # Cleared: the budget no longer applies.
    assert settings(room, clear_challenge=True)["challenge"] is None
    free = started(play(ada, room.code, {**TINY_FORM, "train.epochs": "50"}))
    finished(ada, exp_id)
    cancel_quietly(ada, free)


def test_only_the_presenter_can_change_the_room(app_client, room):
    ada = join(app_client, room.code, "Ada")
    before = board(room.presenter, room.code)["state"]
    attempts = [
        ada.post(f"/api/rooms/{room.code}/settings", json={"locked": True}),
        ada.post(f"/api/rooms/{room.code}/settings", json={"challenge": CHALLENGE}),
        ada.post(f"/api/rooms/{room.code}/settings", json={"closed": True},
                 headers={"X-Presenter-Key": "guess"}),
    ]
    for res in attempts:
        assert res.status_code == 403
        assert "only the presenter of this room can do that" in res.json()["detail"]
    res = ada.post(f"/rooms/{room.code}/settings", data={"action": "close"},
                   follow_redirects=False)
    assert res.status_code == 403
    assert "only the presenter" in html_tree(res.text).text
    assert board(room.presenter, room.code)["state"] == before


def test_lock_refuses_new_experiments_until_opened(app_client, room):
    ada = join(app_client, room.code, "Ada")
    assert settings(room, locked=True)["locked"] is True
    count = experiment_count(app_client)
    res = play(ada, room.code)
    assert res.status_code == 403
    assert "paused" in html_tree(res.text).find(id="run").text
    res = ada.post(f"/api/experiments?room={room.code}", json=TINY)
    assert res.status_code == 403 and "paused" in res.json()["detail"]
    assert experiment_count(app_client) == count
    assert "Paused" in html_tree(ada.get(f"/rooms/{room.code}").text).find(id="room-banner").text

    assert settings(room, locked=False)["locked"] is False
    finished(ada, started(play(ada, room.code)))


def test_close_refuses_joining_and_playing(app_client, room):
    ada = join(app_client, room.code, "Ada")
    exp_id = started(play(ada, room.code))
    finished(ada, exp_id)
    assert settings(room, closed=True)["closed"] is True

    late = new_browser(app_client)
    page = html_tree(late.get(f"/rooms/{room.code}").text)
    assert "This room is closed" in page.text
    assert not page.find_all("form", action=f"/rooms/{room.code}/join")
    res = late.post(f"/rooms/{room.code}/join", data={"name": "Late"})
    assert res.status_code == 403 and "closed" in res.text
    count = experiment_count(app_client)
    res = play(ada, room.code)
    assert res.status_code == 403
    assert "closed" in html_tree(res.text).find(id="run").text
    assert ada.post(f"/api/experiments?room={room.code}", json=TINY).status_code == 403
    assert experiment_count(app_client) == count
    data = board(ada, room.code)  # what was trained stays viewable
    assert data["members"] == ["Ada"]
    assert [e["id"] for e in data["experiments"]] == [exp_id]
    assert ada.get(f"/e/{exp_id}").status_code == 200


def test_a_hidden_leaderboard_is_hidden_from_participants_only(app_client, room):
    ada = join(app_client, room.code, "Ada")
    exp_id = started(play(ada, room.code))
    finished(ada, exp_id)
    assert settings(room, leaderboard=False)["leaderboard"] is False

    # Ada sees her own results only; the presenter sees everyone's
    bob = join(app_client, room.code, "Bob")
    bobs = started(play(bob, room.code))
    finished(bob, bobs)
    data = board(ada, room.code)
    assert [e["id"] for e in data["leaderboard"]] == [exp_id] and not data["everyone"]
    (others,) = [e for e in data["experiments"] if e["id"] == bobs]
    assert others["scores"] is None and others["best"] is None and others["val_loss"] == []
    assert {e["id"] for e in board(room.presenter, room.code)["leaderboard"]} == {exp_id, bobs}
    mine = html_tree(ada.get(f"/rooms/{room.code}/leaderboard").text)
    assert "hidden the leaderboard" in mine.text and "Bob" not in mine.find("tbody").text
    theirs = html_tree(room.presenter.get(f"/rooms/{room.code}/leaderboard").text)
    assert "Ada" in theirs.find("tbody").text and "Bob" in theirs.find("tbody").text

    assert settings(room, leaderboard=True)["leaderboard"] is True
    assert {e["id"] for e in board(ada, room.code)["leaderboard"]} == {exp_id, bobs}


def test_names_with_markup_are_escaped_everywhere(app_client):
    room = create_room(app_client, name="<b>" + MARKUP)
    mallory = join(app_client, room.code, MARKUP)
    exp_id = started(play(mallory, room.code))
    finished(mallory, exp_id)
    pages = {
        "join page": new_browser(app_client).get(f"/rooms/{room.code}"),
        "room page": mallory.get(f"/rooms/{room.code}"),
        "leaderboard partial": mallory.get(f"/rooms/{room.code}/leaderboard"),
        "board page": mallory.get(f"/rooms/{room.code}/board"),
        "presenter page": room.presenter.get(f"/rooms/{room.code}/present"),
        "share page": mallory.get(f"/e/{exp_id}"),
    }
    for what, res in pages.items():
        assert res.status_code == 200, what
        assert MARKUP not in res.text and "<b>" not in res.text, what
        assert ESCAPED in res.text, what  # shown, as text
    leaderboard = html_tree(pages["presenter page"].text).find(id="leaderboard")
    assert MARKUP in leaderboard.find("tbody").text  # the name itself, decoded, in its cell


# -- regressions: bugs found while writing these tests ---------------------------------------

def test_an_invalid_challenge_is_refused_with_a_422(app_client, room):
    """An invalid challenge dataset is a 422 naming the field (was a 500: pydantic's
    ValidationError raised inside the handler)."""
    presenter = new_browser(app_client, raise_server_exceptions=False)
    for dataset in ({"name": "no-such-set"}, {"n_train": 1}):
        res = presenter.post(f"/api/rooms/{room.code}/settings",
                             json={"challenge": {"dataset": dataset, "epochs": 20}},
                             headers={"X-Presenter-Key": room.key})
        assert res.status_code == 422, (dataset, res.status_code)
        (key,) = dataset
        assert any(key in d["field"] for d in res.json()["detail"]), res.json()
    assert board(room.presenter, room.code)["state"]["challenge"] is None


def test_the_presenter_form_refuses_bad_numbers_readably(app_client, room):
    """The presenter form's bad numbers are refused with a message (were 500s from
    unguarded int()/float()/Challenge())."""
    presenter = new_browser(app_client, raise_server_exceptions=False,
                            headers={"X-Presenter-Key": room.key})
    for bad in ({"epochs": "0"}, {"dataset.n_train": "many"}, {"dataset.n_train": "3"}):
        form = {"action": "challenge", "dataset.name": "circles", "dataset.n_train": "80",
                "epochs": "30", **bad}
        res = presenter.post(f"/rooms/{room.code}/settings", data=form, follow_redirects=False)
        assert 400 <= res.status_code < 500, (bad, res.status_code)
        assert html_tree(res.text).find_all(class_="error"), bad  # says what is wrong
    assert board(room.presenter, room.code)["state"]["challenge"] is None


def test_a_refused_run_keeps_the_challenge_data_fixed(app_client, room):
    """A refused run in a challenged room re-renders the controls with the Data fieldset
    still fixed to the challenge's data (it came back enabled, showing the defaults)."""
    ada = join(app_client, room.code, "Ada")
    settings(room, challenge=CHALLENGE)
    # what the room page's form sends: its Data fieldset is disabled, so no dataset.* fields
    res = play(ada, room.code, {"model.hidden": "16", "train.epochs": "50"})
    assert res.status_code == 422
    controls = html_tree(res.text).find("form", id="controls")
    assert controls.find("input", type="hidden", name="room").attrs["value"] == room.code
    data = controls.find("fieldset", data_section="dataset")
    assert "disabled" in data.attrs
    assert data.find("input", name="dataset.name", checked=True).attrs["value"] == "circles"
    assert data.find("input", name="dataset.n_train").attrs["value"] == "80"


def test_the_challenge_data_replaces_the_participants_data(app_client, room):
    """The challenge's data replaces the participant's entirely: a seed, label noise or
    extra features sent through the API cannot change the data (they were merged in)."""
    ada = join(app_client, room.code, "Ada")
    settings(room, challenge=CHALLENGE)
    mine = {"name": "moons", "n_train": 500, "seed": 7, "label_noise": 0.3, "extra_features": 5}
    res = ada.post(f"/api/experiments?room={room.code}",
                   json={**TINY, "dataset": mine, "train": {"epochs": 3}})
    assert res.status_code == 201, res.text
    exp_id = res.json()["id"]
    cancel_quietly(ada, exp_id)
    data = ada.get(f"/api/experiments/{exp_id}").json()["config"]["dataset"]
    assert (data["name"], data["n_train"], data["noise"]) == ("circles", 80, 0.2)
    assert (data["seed"], data["label_noise"], data["extra_features"]) == (0, 0.0, 0)


def test_room_codes_are_case_insensitive_everywhere(app_client, room):
    """A typed lower-case code works for /play and the API as it does for the pages (they
    answered 404 'no room')."""
    ada = join(app_client, room.code.lower(), "Ada")  # the page and join accept it
    assert board(room.presenter, room.code)["members"] == ["Ada"]
    res = ada.post(f"/api/experiments?room={room.code.lower()}", json=TINY)
    assert res.status_code == 201, res.text
    assert ada.get(f"/api/experiments/{res.json()['id']}").json()["room"] == room.code


def test_the_leaderboard_and_board_name_the_rate_run_0_trained_at(app_client, room):
    """A sweep is drawn by its run 0, which trains at the first swept rate: the labels say
    that rate (they used to say model.dropout)."""
    ada = join(app_client, room.code, "Ada")
    config = {**TINY, "model": {"hidden": [16, 8], "dropout": 0.5},
              "sweep": {"dropout": [0.1, 0.3], "target": "layer1"}}
    res = ada.post(f"/api/experiments?room={room.code}", json=config)
    assert res.status_code == 201, res.text
    finished(app_client, res.json()["id"])
    (entry,) = board(ada, room.code)["experiments"]
    assert entry["rate_label"] == "p = 0.1/0.5" and entry["label"] == "16-8 relu · p = 0.1/0.5"
    row = html_tree(ada.get(f"/rooms/{room.code}/leaderboard").text).find("tbody").find("tr")
    assert "p = 0.1/0.5" in row.text and "0.5 " not in row.text.replace("0.1/0.5", "")


def test_the_challenge_form_is_generated_from_the_challenge_model(app_client, room):
    """Every dataset field, with the challenge's own defaults and limits (none restated)."""
    from app.ml.config import DatasetConfig
    from app.rooms import Challenge

    form = html_tree(room.presenter.get(f"/rooms/{room.code}/present").text).find(
        "form", class_="challenge-form")
    names = [f.attrs["name"] for f in form.find_all("input") + form.find_all("select")]
    assert set(names) == {f"dataset.{n}" for n in DatasetConfig.model_fields} | {
        "epochs", "hidden", "activation"}
    assert form.find("input", name="dataset.n_train").attrs["value"] == str(
        Challenge().dataset.n_train)
    assert form.find("input", name="epochs").attrs["max"] == str(
        Challenge.model_fields["epochs"].metadata[1].le)
    settings(room, challenge=CHALLENGE)
    form = html_tree(room.presenter.get(f"/rooms/{room.code}/present").text).find(
        "form", class_="challenge-form")
    assert form.find("option", selected=True).attrs["value"] == "circles"
    assert form.find("input", name="epochs").attrs["value"] == "20"


def test_a_challenge_may_fix_the_network_and_the_controls_show_it(app_client, room):
    ada = join(app_client, room.code, "Ada")
    settings(room, challenge={**CHALLENGE, "hidden": [16, 8], "activation": "tanh"})
    controls = html_tree(ada.get(f"/rooms/{room.code}/controls",
                                 params={"model.hidden": "128", "name": "mine"}).text)
    # a fixed network: its layer rows are read-only (so widths and rates still submit)
    widths = [n for n in controls.find_all("input", name="model.hidden")
              if n.attrs.get("type") == "number" and "value" in n.attrs]
    assert [n.attrs["value"] for n in widths] == ["16", "8"]
    assert all("readonly" in n.attrs for n in widths)
    assert controls.find("input", name="name").attrs["value"] == "mine"  # typed: kept
    res = ada.post(f"/api/experiments?room={room.code}", json={
        **TINY, "model": {"hidden": [128], "activation": "relu", "dropout": 0.3}})
    assert res.status_code == 201, res.text
    model = ada.get(f"/api/experiments/{res.json()['id']}").json()["config"]["model"]
    assert (model["hidden"], model["activation"], model["dropout"]) == ([16, 8], "tanh", 0.3)
    banner = html_tree(ada.get(f"/rooms/{room.code}/banner").text)
    assert "network 16-8 tanh" in banner.text and "You choose the dropout" in banner.text
    cancel_quietly(ada, res.json()["id"])


def test_a_paused_or_closed_room_locks_the_train_button(app_client, room):
    ada = join(app_client, room.code, "Ada")
    button = html_tree(ada.get(f"/rooms/{room.code}/controls").text).find(
        "button", id="train-button")
    assert "disabled" not in button.attrs
    settings(room, locked=True)
    controls = html_tree(ada.get(f"/rooms/{room.code}/controls").text)
    assert "disabled" in controls.find("button", id="train-button").attrs
    assert "paused" in controls.find("p", data_role="refused").text
    settings(room, locked=False, closed=True)
    controls = html_tree(ada.get(f"/rooms/{room.code}/controls").text)
    assert "closed" in controls.find("p", data_role="refused").text


def test_the_presenter_link_is_shown_on_demand_to_the_presenter_only(app_client, room):
    page = room.presenter.get(f"/rooms/{room.code}/present")
    assert room.key not in page.text  # not in the page: it may be cached or projected
    assert html_tree(page.text).find("div", id="presenter-link") is not None
    res = room.presenter.get(f"/rooms/{room.code}/presenter-link")
    assert res.status_code == 200 and res.headers["cache-control"] == "no-store"
    link = html_tree(res.text).find("input", class_="secret-link").attrs["value"]
    assert link.endswith(f"/rooms/{room.code}/present?key={room.key}")
    assert "only key" in res.text
    assert new_browser(app_client).get(f"/rooms/{room.code}/presenter-link").status_code == 403
    board_page = room.presenter.get(f"/rooms/{room.code}/board").text
    assert room.key not in board_page and "presenter-link" not in board_page


def test_a_loopback_join_link_comes_with_the_servers_lan_addresses(app_client, room):
    from app.web.network import interface_addresses

    local = TestClient(app_client.app, base_url="http://127.0.0.1:8000",
                       headers={"X-Presenter-Key": room.key})
    page = local.get(f"/rooms/{room.code}/present")
    assert page.status_code == 200, page.text[:300]
    note = html_tree(page.text).find("div", class_="lan-note")
    want = [f"http://{a}:8000/rooms/{room.code}" for a in interface_addresses()]
    assert note is not None and [c.text for c in note.find_all("code")][:len(want)] == want
    assert "only works on this computer" in note.text
    remote = html_tree(room.presenter.get(f"/rooms/{room.code}/present").text)
    assert remote.find_all("div", class_="lan-note") == []  # testserver is not loopback


def test_test_scores_appear_only_when_the_presenter_reveals_them(app_client, room):
    ada = join(app_client, room.code, "Ada")
    exp_id = ada.post(f"/api/experiments?room={room.code}", json=TINY).json()["id"]
    test = finished(ada, exp_id)["summary"]["runs"][0]["test"]
    (row,) = board(ada, room.code)["leaderboard"]
    assert "test_loss" not in row["scores"]
    assert "test loss" not in ada.get(f"/rooms/{room.code}/leaderboard").text
    settings(room, reveal_test=True)
    (row,) = board(ada, room.code)["leaderboard"]
    assert row["scores"]["test_loss"] == test["test_loss"]
    assert row["scores"]["test_score"] == test["test_acc"]
    assert "test loss" in ada.get(f"/rooms/{room.code}/leaderboard").text


def test_the_ucurve_is_each_finished_experiment_and_the_rooms_mean_per_rate(app_client, room):
    ada, bo = join(app_client, room.code, "Ada"), join(app_client, room.code, "Bo")
    ids = [b.post(f"/api/experiments?room={room.code}", json={
        **TINY, "model": {"hidden": [16], "dropout": rate}}).json()["id"]
        for b, rate in ((ada, 0.2), (bo, 0.2), (ada, 0.5))]
    finals = [finished(ada, i)["runs"][0]["epochs"][-1]["val_loss"] for i in ids]
    curve = ada.get(f"/api/rooms/{room.code}/ucurve").json()
    assert sorted((p["x"], p["y"]) for p in curve["points"]) == sorted(
        zip((0.2, 0.2, 0.5), finals, strict=True))
    (same,) = curve["curves"]  # one setup (data and network): one mean curve
    (low, high) = same["means"]
    assert (low["x"], low["n"], high["x"], high["n"]) == (0.2, 2, 0.5, 1)
    assert low["mean"] == pytest.approx((finals[0] + finals[1]) / 2)
    assert curve["metric"] == "final validation loss"
    # another network is another curve: only like is compared with like
    other = ada.post(f"/api/experiments?room={room.code}", json={
        **TINY, "model": {"hidden": [8], "dropout": 0.2}}).json()["id"]
    finished(ada, other)
    curves = ada.get(f"/api/rooms/{room.code}/ucurve").json()["curves"]
    assert [(c["setup"], c["n"]) for c in curves] == [
        ("moons 50, noise 0.2 · 16 relu", 3), ("moons 50, noise 0.2 · 8 relu", 1)]
