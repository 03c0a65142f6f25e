"""A workshop in a real headless Chromium: a presenter and a participant, each in a browser
context of their own (own cookies), on the app served by `live_server`.

The presenter creates a room and watches the board; the participant joins with a name and
trains; the participant's curve grows live on the presenter's board and their name reaches the
leaderboard. The participant cannot use presenter actions. A challenge set on the presenter's
page reaches the participant's page in place (a `room` event) with the data fixed; a pause
locks Train in place. A board whose server is killed mid-run catches up to what is stored.

As in test_browser.py, waits are explicit (selectors, `expect`, or `poll_js` through
`page.evaluate`), never `page.wait_for_function`: the app's CSP refuses the eval it needs.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import LiveServer, poll_js, wait_until
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

TIMEOUT_S = 30.0
TIMEOUT_MS = int(TIMEOUT_S * 1000)
ONLY_PRESENTER = "only the presenter of this room can do that"

# Points of the participant's trace on the board's curve chart (None until it is drawn).
TRACE_JS = """(author) => {
  const el = document.querySelector('[data-chart="room-curves"]');
  if (!el || !el.data) return null;
  const t = el.data.find((t) => (t.name || "").startsWith(author + " · "));
  return t ? {x: Array.from(t.x), y: Array.from(t.y)} : null;
}"""
# Record the length of the participant's trace each time the board's chart is updated
# (Plotly.react on a reload, Plotly.extendTraces per live epoch), into window.__lengths.
# Event-driven, not a timer: a busy or background page may run timers late.
RECORD_LENGTHS_JS = """(author) => {
  window.__lengths = [];
  const note = (gd) => {
    const t = gd && gd.data && gd.data.find((t) => (t.name || "").startsWith(author + " · "));
    const seen = window.__lengths;
    if (t && t.x.length !== seen[seen.length - 1]) seen.push(t.x.length);
  };
  for (const name of ["react", "extendTraces"]) {
    const original = Plotly[name];
    Plotly[name] = function (gd, ...rest) {
      const out = original.call(this, gd, ...rest);
      note(gd);
      Promise.resolve(out).then(() => note(gd));
      return out;
    };
  }
}"""
# A presenter action attempted from a participant's page, with its cookies.
SETTINGS_FETCH_JS = """async ([code, change]) => {
  const r = await fetch(`/api/rooms/${code}/settings`, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(change)});
  return {status: r.status, body: await r.json()};
}"""
# Every trace of the board's curve chart, by name, in the order the experiments started.
CURVES_JS = """() => {
  const el = document.querySelector('[data-chart="room-curves"]');
  if (!el || !el.data) return null;
  return Object.fromEntries(el.data.map((t, i) => [i + " " + t.name,
                                                   {x: Array.from(t.x), y: Array.from(t.y)}]));
}"""
# The board is drawn and follows the room's stream.
BOARD_READY = '[data-chart="room-curves"][data-experiments]'




UNFOLD_JS = """(el) => {
  for (let d = el.closest('details'); d; d = d.parentElement.closest('details')) d.open = true;
}"""


def field(name: str) -> str:
    """CSS selector of the control of a dotted config key (ids contain dots)."""
    return "#f-" + name.replace(".", r"\.")


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Pages in fresh contexts (own cookies); console errors fail the test, except the 403s a
    page made with `refusals=True` is expected to get."""
    contexts, errors = [], []

    def make(refusals: bool = False, outage: bool = False) -> Page:
        """`outage`: the test stops the server, so the page's requests fail meanwhile."""
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        p = context.new_page()

        def console(m) -> None:
            expected = (refusals and "403" in m.text) or (outage and any(
                sign in m.text for sign in ("net::ERR_", "htmx:", "Failed to load")))
            if m.type == "error" and not expected:
                errors.append(m.text)
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.on("console", console)
        return p

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


def create_room(presenter: Page, base: str) -> str:
    """Through the form; returns the code read off the presenter page it lands on."""
    presenter.goto(base + "/rooms/new")
    presenter.fill("#room-name", "Browser workshop")
    presenter.click("button:has-text('Create room')")
    href = poll_js(presenter, "location.href",
                   until=lambda h: re.search(r"/rooms/[A-Z2-9-]{7}/present$", h))
    code = presenter.locator(".room-code.big").inner_text().strip()
    assert href == f"{base}/rooms/{code}/present"  # the secret is gone from the address bar
    return code


def join(participant: Page, base: str, code: str, name: str) -> None:
    participant.goto(f"{base}/rooms/{code}")
    participant.fill("#display-name", name)
    participant.click("button:has-text('Join')")
    participant.wait_for_selector("form#controls", timeout=TIMEOUT_MS)
    expect(participant.locator("#room-banner")).to_contain_text(f"you are {name}")


def test_a_workshop_in_two_browsers(new_page, live_server):
    base = live_server.url
    presenter, participant = new_page(), new_page(refusals=True)
    code = create_room(presenter, base)
    assert presenter.locator(".qr svg").count() == 1
    expect(presenter.locator(".join-box")).to_contain_text(f"{base}/rooms/{code}")
    presenter.wait_for_selector(BOARD_READY, timeout=TIMEOUT_MS)

    presenter.evaluate(RECORD_LENGTHS_JS, "Ada")
    join(participant, base, code, "Ada")
    # ~3000 small steps: a few seconds, so the presenter sees the curve grow
    for name, value in {"train.epochs": "60", "dataset.n_train": "100",
                        "train.batch_size": "2"}.items():
        participant.eval_on_selector(field(name), UNFOLD_JS)  # batch size is folded away
        participant.fill(field(name), value)
    participant.click("#train-button")
    run = participant.wait_for_selector("section#run[data-exp]", timeout=TIMEOUT_MS)
    exp_id = run.get_attribute("data-exp")

    # The presenter's board draws the participant's curve and extends it live.
    trace = poll_js(presenter, TRACE_JS, "Ada", until=lambda t: t and len(t["x"]) == 60)
    lengths = poll_js(presenter, "window.__lengths", until=lambda n: n and n[-1] == 60)
    assert lengths == sorted(lengths) and lengths[-1] == 60, lengths
    assert len({n for n in lengths if 0 < n < 60}) >= 3, lengths  # drawn while training
    participant.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    stored = httpx.get(f"{base}/api/experiments/{exp_id}", timeout=10).json()
    epochs = stored["runs"][0]["epochs"]
    assert trace["x"] == [e["epoch"] for e in epochs]
    assert trace["y"] == pytest.approx([e["val_loss"] for e in epochs])
    expect(presenter.locator("#leaderboard tbody")).to_contain_text("Ada", timeout=TIMEOUT_MS)

    # Presenter actions from the participant's browser are refused, with the reason.
    result = participant.evaluate(SETTINGS_FETCH_JS, [code, {"locked": True}])
    assert result["status"] == 403
    assert ONLY_PRESENTER in result["body"]["detail"]
    response = participant.goto(f"{base}/rooms/{code}/present")
    assert response.status == 403
    expect(participant.locator("body")).to_contain_text(ONLY_PRESENTER)
    state = httpx.get(f"{base}/api/rooms/{code}", timeout=10).json()["state"]
    assert state == {"challenge": None, "locked": False, "leaderboard": True, "closed": False,
                     "rank_by": "final_val_loss", "reveal_test": False}

    # A challenge set on the presenter's page reaches the participant's page in place.
    participant.goto(f"{base}/rooms/{code}")
    participant.wait_for_selector(BOARD_READY, timeout=TIMEOUT_MS)  # subscribed
    participant.evaluate("window.__beforeChallenge = true")
    expect(participant.locator(field("dataset.name"))).to_be_enabled()
    presenter.select_option(".challenge-form " + field("dataset.name"), "circles")
    presenter.fill(".challenge-form " + field("epochs"), "30")
    presenter.click("button[value='challenge']")
    expect(presenter.locator(".present-controls")).to_contain_text("Clear challenge")
    poll_js(participant, "window.__beforeChallenge === true"  # the same page: no reload
            " && !!document.querySelector('#room-banner .challenge')")
    banner = participant.locator("#room-banner .challenge")
    expect(banner).to_contain_text("circles")
    expect(banner).to_contain_text("at most 30 epochs")
    assert participant.evaluate(
        "document.querySelector('fieldset[data-section=\"dataset\"]').disabled") is True
    expect(participant.locator(field("dataset.name"))).to_be_disabled()
    expect(participant.locator(field("dataset.name"))).to_have_value("circles")


def test_a_paused_room_locks_train_in_place_and_opens_it_again(new_page, live_server):
    base = live_server.url
    link = httpx.post(f"{base}/rooms", data={"name": "paused"}, timeout=10).headers["location"]
    code, key = re.fullmatch(r"/rooms/(.+)/present\?key=(.+)", link).groups()
    participant = new_page(refusals=True)
    join(participant, base, code, "Bea")
    participant.wait_for_selector(BOARD_READY, timeout=TIMEOUT_MS)
    participant.evaluate("window.__joined = true")

    def presenter(change: dict) -> None:
        res = httpx.post(f"{base}/api/rooms/{code}/settings", json=change,
                         headers={"X-Presenter-Key": key}, timeout=10)
        assert res.status_code == 200

    presenter({"locked": True})
    expect(participant.locator("#room-banner")).to_contain_text("Paused", timeout=TIMEOUT_MS)
    expect(participant.locator("#train-button")).to_be_disabled()
    expect(participant.locator("#controls [data-role=refused]")).to_contain_text("paused")
    presenter({"locked": False})
    expect(participant.locator("#train-button")).to_be_enabled(timeout=TIMEOUT_MS)
    expect(participant.locator("#room-banner")).not_to_contain_text("Paused")
    assert participant.evaluate("window.__joined === true")  # never reloaded


def test_a_board_cut_off_mid_run_catches_up_to_exactly_what_is_stored(new_page, tmp_path):
    """The server is killed while Cy trains, and started again: the board's event stream
    reconnects by itself with its Last-Event-ID and the page draws exactly the stored epochs of
    every experiment (none lost, none twice), with no gap logic of its own."""
    server = LiveServer(tmp_path).start()
    base = server.url
    try:
        link = httpx.post(f"{base}/rooms", data={"name": "cut"}, timeout=10).headers["location"]
        code = re.fullmatch(r"/rooms/(.+)/present\?key=.+", link).group(1)
        board = new_page(outage=True)
        board.goto(f"{base}/rooms/{code}/board")
        board.wait_for_selector(BOARD_READY, timeout=TIMEOUT_MS)
        participant = httpx.Client(base_url=base, timeout=10)
        participant.post(f"/rooms/{code}/join", data={"name": "Cy"})
        quick = participant.post(f"/api/experiments?room={code}", json={
            "dataset": {"n_train": 50}, "model": {"hidden": [8]}, "train": {"epochs": 5}})
        long = participant.post(f"/api/experiments?room={code}", json={
            "dataset": {"name": "moons", "n_train": 400},
            "train": {"epochs": 300, "batch_size": 2}})
        ids = [quick.json()["id"], long.json()["id"]]

        def stored(exp_id: str) -> dict:
            return httpx.get(f"{base}/api/experiments/{exp_id}", timeout=10).json()

        wait_until(lambda: len(stored(ids[1])["runs"][0]["epochs"]) >= 2, 60)
        poll_js(board, CURVES_JS, until=lambda c: c and len(c) == 2)  # both drawn, live
        os.kill(server.proc.pid, signal.SIGKILL)  # no goodbye: the stream is simply cut
        server.proc.wait()
        server.start()  # the same port and database: the long run is failed, epochs kept

        for exp_id in ids:
            wait_until(lambda e=exp_id: stored(e)["status"] in ("done", "failed"), 60)
        curves = poll_js(board, CURVES_JS, until=lambda c: c and len(c) == 2 and all(
            len(c[name]["x"]) == len(stored(exp_id)["runs"][0]["epochs"])
            for name, exp_id in zip(sorted(c), ids)))
        for name, exp_id in zip(sorted(curves), ids):
            epochs = stored(exp_id)["runs"][0]["epochs"]
            assert curves[name]["x"] == [e["epoch"] for e in epochs]
            assert curves[name]["y"] == pytest.approx([e["val_loss"] for e in epochs])
    finally:
        server.stop()
