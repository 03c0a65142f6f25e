"""Limits per network address, on a real server behind a trusted proxy (127.0.0.1, as the nginx
of deploy/ would be): dropping the cookie no longer bypasses the limits, X-Forwarded-For is
believed only from the proxy, and a room of people behind one address (a venue's NAT) still
works: inside a room each member counts alone, and joins come in bursts of
DP_PEOPLE_PER_ADDRESS (300 by default: a whole tutorial joins at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import LONG, TINY, LiveServer, finished

from app.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("addresses"), DP_WORKERS="1",
                        DP_TRUSTED_PROXIES="127.0.0.1", DP_MAX_QUEUED_PER_ADDRESS="2",
                        DP_PEOPLE_PER_ADDRESS="6", DP_ROOMS_PER_HOUR_PER_ADDRESS="12",
                        DP_MAX_QUEUED="50").start()
    yield server
    server.stop()


def via(address: str) -> dict:
    """Headers of a request the proxy forwards for a client at `address`."""
    return {"X-Forwarded-For": f"203.0.113.9, {address}"}  # the first hop is the client's say


def cleanup(server: LiveServer, created: list[httpx.Response]) -> None:
    for res in created:
        if res.status_code == 201:
            body = res.json()
            httpx.post(f"{server.url}/api/experiments/{body['id']}/cancel",
                       headers={"X-Owner-Token": body["owner_token"]})


def test_dropping_the_cookie_does_not_bypass_the_per_address_queue_limit(server):
    flood = [httpx.post(f"{server.url}/api/experiments", json=LONG, headers=via("10.1.0.1"))
             for _ in range(5)]  # no cookies: a new client id each time
    try:
        assert [r.status_code for r in flood] == [201, 201, 429, 429, 429]
        refusal = flood[-1]
        assert "the limit per address is 2" in refusal.json()["detail"]
        assert int(refusal.headers["Retry-After"]) >= 1
        with httpx.Client(base_url=server.url) as browser:  # a cookie changes nothing
            assert browser.post("/api/experiments", json=TINY,
                                headers=via("10.1.0.1")).status_code == 429
        other = httpx.post(f"{server.url}/api/experiments", json=TINY, headers=via("10.1.0.2"))
        flood.append(other)
        assert other.status_code == 201  # someone else is not refused
    finally:
        cleanup(server, flood)


def test_forwarded_addresses_are_believed_only_from_the_trusted_proxy(server):
    # from 127.0.0.2 (not the proxy): X-Forwarded-For is ignored, the peer counts
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.url, transport=transport) as direct:
        created = [direct.post("/api/experiments", json=LONG,
                               headers={"X-Forwarded-For": f"10.7.0.{i}"},
                               cookies={"dp_client": f"client-number-{i:08d}"})
                   for i in range(3)]
    try:
        assert [r.status_code for r in created] == [201, 201, 429]
    finally:
        cleanup(server, created)


def test_in_a_room_each_member_counts_alone_behind_one_address(server):
    presenter = httpx.Client(base_url=server.url, headers=via("10.2.0.1"))
    code = presenter.post("/rooms", data={"name": "venue"}).headers["location"].split("/")[2]
    members = [httpx.Client(base_url=server.url, headers=via("10.2.0.1")) for _ in range(4)]
    for i, member in enumerate(members):
        assert member.post(f"/rooms/{code}/join", data={"name": f"p{i}"}).status_code == 303
    created = [m.post(f"/api/experiments?room={code}", json=TINY) for m in members]
    assert [r.status_code for r in created] == [201] * 4  # the address limit is 2
    for member, res in zip(members, created):
        assert finished(member, res.json()["id"])["status"] == "done"


def test_joins_come_in_bursts_of_people_per_address_and_a_rename_is_free(server):
    presenter = httpx.Client(base_url=server.url, headers=via("10.3.0.9"))
    code = presenter.post("/rooms", data={"name": "joins"}).headers["location"].split("/")[2]
    people = [httpx.Client(base_url=server.url, headers=via("10.3.0.1")) for _ in range(7)]
    answers = [p.post(f"/rooms/{code}/join", data={"name": f"p{i}"})
               for i, p in enumerate(people)]
    assert [r.status_code for r in answers] == [303] * 6 + [429]
    assert "people joining rooms" in answers[-1].text
    assert int(answers[-1].headers["Retry-After"]) >= 1
    rename = people[0].post(f"/rooms/{code}/join", data={"name": "renamed"})
    assert rename.status_code == 303


def test_guessing_room_codes_is_throttled_for_every_code_but_ones_own(server):
    presenter = httpx.Client(base_url=server.url, headers=via("10.4.0.9"))
    code = presenter.post("/rooms", data={"name": "guess"}).headers["location"].split("/")[2]
    member = httpx.Client(base_url=server.url, headers=via("10.4.0.1"))
    assert member.post(f"/rooms/{code}/join", data={"name": "m"}).status_code == 303
    guesses = [httpx.get(f"{server.url}/api/rooms/ZZZ-ZZ{i}", headers=via("10.4.0.1"))
               for i in range(2, 9)]
    assert [r.status_code for r in guesses] == [404] * 6 + [429]
    # out of guesses: the real code answers the same 429 (a hit tells nothing) ...
    hit = httpx.get(f"{server.url}/api/rooms/{code}", headers=via("10.4.0.1"))
    assert hit.status_code == 429 and hit.headers["Retry-After"]
    assert httpx.post(f"{server.url}/api/experiments?room=ZZZ-ZZZ", json=TINY,
                      headers=via("10.4.0.1")).status_code == 429
    # ... but a member behind the same address still gets in, and other addresses too
    assert member.get(f"/api/rooms/{code}").status_code == 200
    assert httpx.get(f"{server.url}/api/rooms/{code}", headers=via("10.4.0.2")).status_code \
        == 200


def test_room_creation_is_limited_per_address(server):
    answers = [httpx.post(f"{server.url}/rooms", data={"name": "r"}, headers=via("10.5.0.1"))
               for _ in range(3)]  # 12 per hour, in bursts of 2
    assert [r.status_code for r in answers] == [303, 303, 429]
    assert "new rooms" in answers[-1].text


# -- the defaults: a 300-person room behind one address ---------------------------------------

@pytest.fixture(scope="module")
def venue(tmp_path_factory) -> Iterator[LiveServer]:
    """A server with every per-address limit at its default."""
    defaults = {f"DP_{name.upper()}": str(field.default)
                for name, field in Settings.model_fields.items()
                if "address" in name and field.default is not None}
    server = LiveServer(tmp_path_factory.mktemp("venue"), DP_WORKERS="1", **defaults).start()
    yield server
    server.stop()


def test_a_300_person_room_behind_one_address_joins_and_follows_its_stream(venue):
    """Every default per-address limit leaves room for the README's 300-person tutorial."""
    async def main() -> None:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=venue.url, timeout=60) as presenter:
            res = await presenter.post("/rooms", data={"name": "tutorial"})
            code = res.headers["location"].split("/")[2]
        people = [httpx.AsyncClient(base_url=venue.url, timeout=60, limits=limits)
                  for _ in range(300)]
        try:
            for chunk in range(0, 300, 50):  # all from 127.0.0.1, as behind one NAT
                joined = await asyncio.gather(*(
                    p.post(f"/rooms/{code}/join", data={"name": f"person {chunk + i}"})
                    for i, p in enumerate(people[chunk:chunk + 50])))
                assert [r.status_code for r in joined] == [303] * 50
            pages = await asyncio.gather(*(p.get(f"/rooms/{code}") for p in people[:50]))
            assert {r.status_code for r in pages} == {200}

            async def first_event(p: httpx.AsyncClient) -> int:
                async with p.stream("GET", f"/api/rooms/{code}/events") as r:
                    if r.status_code != 200:
                        return r.status_code
                    async for line in r.aiter_lines():
                        if line.startswith("event:"):
                            return 200
                return 0
            assert await asyncio.gather(*(first_event(p) for p in people)) == [200] * 300
        finally:
            await asyncio.gather(*(p.aclose() for p in people))
    # on a thread of its own: a browser test's session (Playwright's loop) may hold this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()
