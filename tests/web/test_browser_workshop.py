"""A workshop rehearsed in real headless Chromium: a presenter, five participants and a
projector board, each in a browser context of their own, on one live server.

Participants join and train; the presenter sets a challenge (fixing the data and the
network), pauses, hides and reveals the leaderboard, reveals the test scores and closes the
room. No participant page ever navigates after joining: every change arrives on the page's
one event stream and redraws parts in place, and each keeps its run panel and what it typed.
The board, at 1920x1080, shows every run with the rate it trained at, the room's U-curve, and
text a projector can carry.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from conftest import poll_js
from playwright.sync_api import Browser, Page, expect

from app.ml.scenarios import START

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
RATES = ["0", "0.2", "0.4", "0.6", "0.8"]
SHOTS = Path("/tmp/dp-workshop")
TRACES_JS = """() => {
  const el = document.querySelector('[data-chart="room-curves"]');
  return el && el.data ? el.data.map((t) => ({name: t.name, n: t.x.length})) : null;
}"""
UCURVE_JS = """() => {
  const el = document.querySelector('[data-chart="room-ucurve"]');
  if (!el || !el.data) return null;
  const dots = el.data.find((t) => t.meta === "dots");
  const means = el.data.filter((t) => t.meta === "mean");
  return {dots: dots ? Array.from(dots.x) : [], means: means.map((t) => Array.from(t.x))};
}"""
# The smallest text of the board's charts: legends, axis titles and tick labels.
TEXT_SIZES_JS = """() => Array.from(document.querySelectorAll(
    '.board .legendtext, .board .xtitle, .board .ytitle, .board .xtick text, .board .ytick text'))
  .map((t) => parseFloat(getComputedStyle(t).fontSize))"""
CHARTS_SPAN_JS = """() => {
  const boxes = Array.from(document.querySelectorAll('.board .chart'))
    .map((c) => c.getBoundingClientRect());
  return {left: Math.min(...boxes.map((b) => b.left)),
          right: Math.max(...boxes.map((b) => b.right)), width: window.innerWidth};
}"""


UNFOLD_JS = """(el) => {
  for (let d = el.closest('details'); d; d = d.parentElement.closest('details')) d.open = true;
}"""


def field(name: str) -> str:
    return "#f-" + name.replace(".", r"\.")


class Participant:
    def __init__(self, browser: Browser, base: str, code: str, name: str):
        self.context = browser.new_context(viewport={"width": 1366, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" else None)
        self.page.goto(f"{base}/rooms/{code}")
        self.page.fill("#display-name", name)
        self.page.click("button:has-text('Join')")
        self.page.wait_for_selector("form#controls", timeout=TIMEOUT_MS)
        # counted from here on: the page must never load again (the address bar's own
        # history.replaceState, which carries the form's setup, is no navigation)
        self.navigations = 0
        self.page.on("domcontentloaded",
                     lambda _: setattr(self, "navigations", self.navigations + 1))
        self.page.evaluate("window.__joined = true")  # gone if the page ever reloads

    def train(self, rate: str) -> str:
        before = self.run_id()
        self.page.fill(field("model.dropout"), rate)
        self.page.fill(field("train.epochs"), "30")
        self.page.click("#train-button")
        return poll_js(self.page, "document.querySelector('#run')?.dataset.exp ?? null",
                       until=lambda exp: exp and exp != before)

    def run_id(self) -> str | None:
        return self.page.evaluate("document.querySelector('#run')?.dataset.exp ?? null")


def test_a_workshop_of_five_with_a_presenter_and_a_board(browser: Browser, live_server):
    base = live_server.url
    SHOTS.mkdir(exist_ok=True)
    presenter_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    presenter = presenter_context.new_page()
    presenter.goto(base + "/rooms/new")
    presenter.fill("#room-name", "Rehearsal")
    presenter.click("button:has-text('Create room')")
    presenter.wait_for_url(re.compile(r"/rooms/[A-Z2-9-]{7}/present$"), timeout=TIMEOUT_MS)
    code = presenter.locator(".room-code.big").inner_text().strip()
    # the projector's board, opened by the presenter (it sees everything)
    board: Page = presenter_context.new_page()
    board.set_viewport_size({"width": 1920, "height": 1080})
    board.goto(f"{base}/rooms/{code}/board")
    board.wait_for_selector('[data-chart="room-curves"][data-experiments]', timeout=TIMEOUT_MS)

    people = [Participant(browser, base, code, name)
              for name in ("Ada", "Bo", "Cy", "Dee", "Eve")]
    try:
        runs = [p.train(rate) for p, rate in zip(people, RATES, strict=True)]

        def finished() -> list[str]:
            return [httpx.get(f"{base}/api/experiments/{r}", timeout=10).json()["status"]
                    for r in runs]
        poll_js(board, "true", until=lambda _: all(s == "done" for s in finished()),
                timeout=120)
        # every run on the board, named with the rate it trained at
        traces = poll_js(board, TRACES_JS, until=lambda t: t and len(t) == 5
                         and all(x["n"] == 30 for x in t))
        assert sorted(t["name"] for t in traces) == sorted(
            f"{who} · {'-'.join(map(str, START.model.hidden))} relu · p = {rate}"
            for who, rate in zip(("Ada", "Bo", "Cy", "Dee", "Eve"), RATES, strict=True))
        curve = poll_js(board, UCURVE_JS, until=lambda u: u and len(u["dots"]) == 5)
        assert sorted(curve["dots"]) == [float(r) for r in RATES]
        assert curve["means"] == [[float(r) for r in RATES]]  # one setup: one mean curve

        # projector: the charts fill the screen, their text is large enough to read
        span = board.evaluate(CHARTS_SPAN_JS)
        assert span["right"] - span["left"] >= 0.8 * span["width"], span
        sizes = board.evaluate(TEXT_SIZES_JS)
        assert sizes and min(sizes) >= 16, sizes
        board.screenshot(path=str(SHOTS / "board-1920.png"), full_page=True)

        ada = people[0]
        ada.page.eval_on_selector(field("name"), UNFOLD_JS)  # the label is folded away
        ada.page.fill(field("name"), "my own label")  # typed, never submitted

        # a challenge fixes data and network: the participants' fields follow in place
        presenter.select_option(".challenge-form " + field("dataset.name"), "circles")
        presenter.fill(".challenge-form " + field("epochs"), "30")
        presenter.fill(".challenge-form " + field("hidden"), "16")
        presenter.click("button[value='challenge']")
        for p in people:
            expect(p.page.locator(field("dataset.name"))).to_have_value("circles",
                                                                         timeout=TIMEOUT_MS)
            expect(p.page.locator(field("dataset.name"))).to_be_disabled()
            expect(p.page.locator(field("model.hidden"))).to_have_value("16")
            expect(p.page.locator("#room-banner")).to_contain_text("circles")
        expect(ada.page.locator(field("name"))).to_have_value("my own label")

        # pause: Train is locked everywhere; open: unlocked
        presenter.click("button[value='lock']")
        for p in people:
            expect(p.page.locator("#train-button")).to_be_disabled(timeout=TIMEOUT_MS)
            expect(p.page.locator("#controls")).to_contain_text("paused")
        presenter.click("button[value='open']")
        for p in people:
            expect(p.page.locator("#train-button")).to_be_enabled(timeout=TIMEOUT_MS)

        # hidden leaderboard: participants see their own results only; the board everything
        presenter.click("button[value='hide']")
        for p in people:
            expect(p.page.locator("#leaderboard")).to_contain_text("hidden the leaderboard",
                                                                   timeout=TIMEOUT_MS)
        poll_js(ada.page, TRACES_JS, until=lambda t: t is not None and len(t) == 1)
        expect(board.locator("#leaderboard tbody tr")).to_have_count(5)
        assert len(board.evaluate(TRACES_JS)) == 5
        presenter.click("button[value='show']")
        poll_js(ada.page, TRACES_JS, until=lambda t: t is not None and len(t) == 5
                and all(x["n"] == 30 for x in t), timeout=90)

        # a participant trains under the challenge, then the room closes with test scores
        sixth = ada.train("0.5")
        assert httpx.get(f"{base}/api/experiments/{sixth}", timeout=10).json()["config"][
            "model"]["hidden"] == [16]
        presenter.click("button[value='reveal-test']")
        expect(board.locator("#leaderboard thead")).to_contain_text("test loss",
                                                                    timeout=TIMEOUT_MS)
        presenter.click("button[value='close']")
        for p in people:
            expect(p.page.locator("#train-button")).to_be_disabled(timeout=TIMEOUT_MS)
            expect(p.page.locator("#room-banner")).to_contain_text("closed")

        for p, run in zip(people, [sixth, *runs[1:]], strict=True):
            assert p.navigations == 0, "a participant page navigated"
            assert p.page.evaluate("window.__joined === true")
            assert p.run_id() == run  # the run panel survived every presenter action
            assert not p.errors, p.errors
        people[1].page.screenshot(path=str(SHOTS / "participant-1366.png"), full_page=True)
        board.screenshot(path=str(SHOTS / "board-closed-1920.png"), full_page=True)
    finally:
        for p in people:
            p.context.close()
        presenter_context.close()
