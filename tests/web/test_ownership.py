"""Whose experiment it is, on a real server: stopping, renaming and deleting belong to whoever
started it (a browser by its cookie, a script by the owner token the create answer gave it)
and, in a workshop room, to the presenter; everyone else gets a 403 and no Stop button. A
request with another site's Origin is refused; one with no Origin (curl, scripts) is not. A
room's JSON lists its experiments only to its members and presenter."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import LONG, TINY, LiveServer, finished, html_tree

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("owners"), DP_WORKERS="1").start()
    yield server
    server.stop()


def browser(server: LiveServer) -> httpx.Client:
    """A client that keeps cookies, like a browser; it gets its client cookie on first sight."""
    client = httpx.Client(base_url=server.url, timeout=30)
    client.get("/partials/recent")
    assert client.cookies.get("dp_client")
    return client


def test_a_script_without_cookies_owns_what_it_creates_by_its_owner_token(server):
    res = httpx.post(f"{server.url}/api/experiments", json=LONG)  # no cookie jar at all
    assert res.status_code == 201
    body = res.json()
    exp_id, token = body["id"], body["owner_token"]
    assert token
    url = f"{server.url}/api/experiments/{exp_id}"
    refused = httpx.post(f"{url}/cancel")
    assert refused.status_code == 403 and "X-Owner-Token" in refused.json()["detail"]
    assert httpx.post(f"{url}/cancel", headers={"X-Owner-Token": "x" * 22}).status_code == 403
    assert httpx.patch(url, json={"name": "nope"}).status_code == 403
    mine = {"X-Owner-Token": token}
    assert httpx.patch(url, json={"name": "mine"}, headers=mine).json()["name"] == "mine"
    stopped = httpx.post(f"{url}/cancel", headers=mine)
    assert stopped.status_code == 200 and stopped.json()["cancel_requested"] is True
    assert finished(httpx.Client(base_url=server.url), exp_id)["status"] == "cancelled"
    assert httpx.delete(url).status_code == 403
    assert httpx.delete(url, headers=mine).status_code == 204
    assert httpx.get(url).status_code == 404


def test_a_browser_owns_by_its_cookie_and_others_get_403_and_no_stop_button(server):
    alice, bob = browser(server), browser(server)
    exp_id = alice.post("/api/experiments", json=LONG).json()["id"]
    try:
        own = html_tree(alice.get(f"/e/{exp_id}").text)
        assert own.find("button", data_role="stop")
        assert own.find_all("details", class_="owner-actions")
        other = html_tree(bob.get(f"/e/{exp_id}").text)
        assert not other.find_all("button", data_role="stop")  # no Stop for a visitor
        assert not other.find_all("details", class_="owner-actions")
        bar = html_tree(bob.get(f"/e/{exp_id}/statusbar").text)
        assert not bar.find_all("button", data_role="stop")
        for res in (bob.post(f"/api/experiments/{exp_id}/cancel"),
                    bob.patch(f"/api/experiments/{exp_id}", json={"name": "x"}),
                    bob.delete(f"/api/experiments/{exp_id}"),
                    bob.post(f"/e/{exp_id}/delete")):
            assert res.status_code == 403, res.text
        assert alice.get(f"/api/experiments/{exp_id}").json()["status"] in ("queued",
                                                                            "running")
    finally:
        assert alice.post(f"/api/experiments/{exp_id}/cancel").status_code == 200
    assert finished(alice, exp_id)["status"] == "cancelled"


def test_another_sites_origin_is_refused_and_no_origin_is_allowed(server):
    http = browser(server)
    before = len(http.get("/partials/recent").text)
    evil = http.post("/api/experiments", json=TINY, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "another site" in evil.json()["detail"]
    assert http.post("/play", data={"train.epochs": "2"},
                     headers={"Origin": "null"}).status_code == 403
    assert http.get("/", headers={"Origin": "http://127.0.0.1:1"}).status_code == 403
    assert len(http.get("/partials/recent").text) == before  # nothing was started
    same = http.post("/api/experiments", json=TINY, headers={"Origin": server.url})
    assert same.status_code == 201
    plain = http.post("/api/experiments", json=TINY)  # no Origin: curl, a script
    assert plain.status_code == 201
    for res in (same, plain):
        finished(http, res.json()["id"])


def _room(server: LiveServer) -> tuple[httpx.Client, str, str]:
    """A new room: (the presenter's client, with the presenter cookie; the code; the key)."""
    presenter = browser(server)
    res = presenter.post("/rooms", data={"name": "owners"})
    assert res.status_code == 303
    where = urlparse(res.headers["location"])
    key = parse_qs(where.query)["key"][0]
    code = where.path.split("/")[2]
    presenter.get(res.headers["location"])  # keeps the presenter cookie
    return presenter, code, key


def _member(server: LiveServer, code: str, name: str) -> httpx.Client:
    client = browser(server)
    assert client.post(f"/rooms/{code}/join", data={"name": name}).status_code == 303
    return client


def test_the_presenter_may_stop_a_participants_experiment_and_others_may_not(server):
    presenter, code, key = _room(server)
    ada, bea = _member(server, code, "Ada"), _member(server, code, "Bea")
    res = ada.post(f"/api/experiments?room={code}", json={**LONG, "train": {"epochs": 200}})
    assert res.status_code == 201, res.text
    exp_id = res.json()["id"]
    refused = bea.post(f"/api/experiments/{exp_id}/cancel")
    assert refused.status_code == 403 and "presenter of its room" in refused.json()["detail"]
    by_key = httpx.post(f"{server.url}/api/experiments/{exp_id}/cancel",
                        headers={"X-Presenter-Key": key})
    assert by_key.status_code == 200
    assert finished(presenter, exp_id)["status"] == "cancelled"
    page = html_tree(presenter.get(f"/e/{exp_id}").text)
    assert page.find_all("details", class_="owner-actions")  # the presenter may tidy up


def test_a_room_lists_its_people_and_experiments_only_to_members(server):
    presenter, code, _ = _room(server)
    ada = _member(server, code, "Ada")
    exp_id = ada.post(f"/api/experiments?room={code}", json=TINY).json()["id"]
    finished(ada, exp_id)
    outsider = httpx.get(f"{server.url}/api/rooms/{code}").json()
    assert outsider["member"] is False
    assert outsider["experiments"] == [] and outsider["members"] == []
    assert exp_id not in httpx.get(f"{server.url}/api/rooms/{code}").text
    for viewer in (ada, presenter):
        seen = viewer.get(f"/api/rooms/{code}").json()
        assert [e["id"] for e in seen["experiments"]] == [exp_id]
        assert seen["members"] == ["Ada"]
