"""The pages in a real headless Chromium: train, watch the curves, share, fork, stop, sweep.

Each test drives the app served by `live_server` (a real uvicorn on a free port) through
`page` (a fresh browser context that fails the test on console errors). Waits are explicit:
Playwright's attribute selectors and `expect`, or `poll_js` below, never a fixed sleep.

`page.wait_for_function` is not used on purpose: it compiles its predicate with eval in the
page, which the app's Content-Security-Policy (script-src 'self') rightly refuses, and the
refusal shows up as a page error. `page.evaluate` goes through the DevTools protocol and is
not subject to the page's CSP, so `poll_js` polls with it instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from conftest import poll_js
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

TIMEOUT_S = 30.0
TIMEOUT_MS = int(TIMEOUT_S * 1000)

# [[trace name, x array, y array], ...] for every trace of one chart.
TRACES_JS = """(key) => {
  const el = document.querySelector(`#run [data-chart="${key}"]`);
  if (!el || !el.data) return null;
  return el.data.map((t) => [t.name || "", Array.from(t.x), Array.from(t.y)]);
}"""
# The number of points of each trace of one chart.
LENGTHS_JS = """(key) => {
  const el = document.querySelector(`#run [data-chart="${key}"]`);
  return el && el.data ? el.data.map((t) => t.x.length) : null;
}"""

# Record the loss chart's trace lengths at every redraw (static/js/run.js sets #run's
# data-drawn then).
RECORD_FLUSHES_JS = """() => {
  window.__flushes = [];
  new MutationObserver(() => {
    const el = document.querySelector('#run [data-chart="loss"]');
    if (el && el.data) window.__flushes.push(el.data.map((t) => t.x.length));
  }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["data-drawn"] });
}"""

# What the form does not show at first (folded away), and one run with no p = 0 twin: set
# through the playground's query string, which carries a whole setup (CONTRACT.md).
SINGLE = {"baseline": "false", "dataset.name": "moons"}




def field(name: str) -> str:
    """CSS selector of the control of a dotted config key (ids contain dots)."""
    return "#f-" + name.replace(".", r"\.")


def set_controls(page: Page, values: dict[str, str]) -> None:
    """Type each value into its field, unfolding the section it is folded in first."""
    for name, value in values.items():
        page.eval_on_selector(field(name), """(el) => {
          for (let d = el.closest('details'); d; d = d.parentElement.closest('details')) {
            d.open = true;
          }
        }""")
        page.fill(field(name), value)


def press_train(page: Page) -> None:
    """Click Train with the mouse, focus still in the field last typed in, as a user does."""
    page.click("#train-button")


def start_run(page: Page, base_url: str, values: dict[str, str],
              query: dict[str, str] | None = None) -> str:
    """Open the playground (with `query`, default one run), set `values`, press Train;
    returns the new experiment's id."""
    page.goto(base_url + "/?" + urlencode(SINGLE if query is None else query))
    set_controls(page, values)
    press_train(page)
    run = page.wait_for_selector("section#run[data-exp]", timeout=TIMEOUT_MS)
    return run.get_attribute("data-exp")


def wait_final(page: Page, status: str = "done") -> None:
    page.wait_for_selector(f"section#run[data-final='{status}']", timeout=TIMEOUT_MS)


def api(base_url: str, exp_id: str) -> dict:
    r = httpx.get(f"{base_url}/api/experiments/{exp_id}", timeout=10)
    r.raise_for_status()
    return r.json()


def traces(page: Page, key: str) -> dict[str, tuple[list, list]]:
    return {name: (x, y) for name, x, y in page.evaluate(TRACES_JS, key)}


def screenshot(page: Page, path: Path) -> None:
    """A full-page PNG under the test's tmp_path (never the repo)."""
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    assert len(data) > 10_000, path  # a drawn page, not an empty image


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Pages in fresh contexts of their own (like `page`), console errors failing the test."""
    contexts, errors = [], []

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        p = context.new_page()
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        return p

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


def test_train_draws_live_curves_that_match_the_api(page: Page, live_server):
    base = live_server.url
    # Tiny batches: ~2 s of training, so the stream is open well before the last epoch.
    page.goto(base + "/?" + urlencode({**SINGLE, "train.batch_size": "2"}))
    history_length = page.evaluate("history.length")

    set_controls(page, {"model.dropout": "0.3", "train.epochs": "40", "dataset.n_train": "100"})
    # The address bar carries the setup, replaced in place (no new history entry).
    href = poll_js(page, "location.href", until=lambda h: "dataset.n_train=100" in h)
    query = parse_qs(urlsplit(href).query)
    assert query["model.dropout"] == ["0.3"]
    assert query["train.epochs"] == ["40"]
    assert page.evaluate("history.length") == history_length

    page.evaluate(RECORD_FLUSHES_JS)
    press_train(page)
    run = page.wait_for_selector("section#run[data-exp]", timeout=TIMEOUT_MS)
    exp_id = run.get_attribute("data-exp")
    assert page.evaluate("history.length") == history_length

    # Points arrive while training, flush after flush, until all 40 are there.
    poll_js(page, LENGTHS_JS, "loss", until=lambda ls: ls and min(ls) == 40)
    seen = page.evaluate("window.__flushes")
    assert seen == sorted(seen) and seen[-1] == [40, 40, 40], seen
    assert len({tuple(s) for s in seen}) >= 2, f"all points came at once: {seen}"
    wait_final(page, "done")

    loss, score, gap = traces(page, "loss"), traces(page, "score"), traces(page, "gap")
    for chart in (loss, score):
        for name in ("train (eval mode)", "validation"):
            x, y = chart[name]
            assert x == list(range(1, 41)), name
            assert len(y) == 40
    assert len(gap["val − train loss"][1]) == 40

    expect(page.locator("#run [data-role=status]")).to_have_text("done")
    expect(page.locator("#run [data-role=progress-text]")).to_have_text("40 / 40 epochs")
    assert page.evaluate("document.querySelector('#run [data-role=progress]').value") == 40
    expect(page.locator("#run [data-role=stop]")).to_be_hidden()
    expect(page.locator("#summary table")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#summary")).to_contain_text("after 40 epochs")
    expect(page.locator("#recent")).to_contain_text("moons (100)")

    body = api(base, exp_id)
    assert body["status"] == "done"
    assert body["config"]["model"]["dropout"] == 0.3
    epochs = body["runs"][0]["epochs"]
    assert loss["validation"][1] == [e["val_loss"] for e in epochs]
    assert loss["train (eval mode)"][1] == [e["train_loss"] for e in epochs]
    assert score["validation"][1] == [e["val_acc"] for e in epochs]
    # Pressing Train replaced the URL with the canonical setup, still without a new entry.
    assert "model.dropout=0.3" in page.evaluate("location.href")
    assert page.evaluate("history.length") == history_length


def test_share_link_redraws_the_run_and_forks(page: Page, new_page, live_server, tmp_path):
    """Also leaves screenshots of both pages in tmp_path, for debugging CI."""
    base = live_server.url
    exp_id = start_run(page, base, {"model.dropout": "0.3", "train.epochs": "40",
                                    "dataset.n_train": "100"})
    wait_final(page, "done")
    poll_js(page, LENGTHS_JS, "loss", until=lambda ls: ls and min(ls) == 40)
    first = {key: traces(page, key) for key in ("loss", "score", "gap")}
    expect(page.locator("#summary table")).to_be_visible(timeout=TIMEOUT_MS)
    screenshot(page, tmp_path / "playground.png")
    share = page.get_attribute("#run a[data-role=share]", "href")
    assert share == f"/e/{exp_id}"

    other = new_page()  # another visitor: new context, no cookie in common
    other.goto(base + share)
    other.wait_for_selector(f"section#run[data-exp='{exp_id}'][data-final='done']",
                            timeout=TIMEOUT_MS)
    poll_js(other, LENGTHS_JS, "loss", until=lambda ls: ls and min(ls) == 40)
    for key, chart in first.items():
        again = traces(other, key)
        assert again.keys() == chart.keys(), key
        for name, (x, y) in chart.items():
            assert again[name] == (x, y), (key, name)
    expect(other.locator("#run [data-role=status]")).to_have_text("done")
    expect(other.locator("#run [data-role=progress-text]")).to_have_text("40 / 40 epochs")
    expect(other.locator("#run [data-role=stop]")).to_be_hidden()
    expect(other.locator("#summary table")).to_be_visible()
    screenshot(other, tmp_path / "share.png")
    dropout_row = other.locator("table.config tr", has=other.locator("th", has_text="dropout p"))
    expect(dropout_row.locator("td")).to_have_text("p = 0.3")

    other.click("a#fork")
    other.wait_for_url(lambda url: urlsplit(url).path == "/", timeout=TIMEOUT_MS)
    expect(other.locator(field("model.dropout"))).to_have_value("0.3")
    expect(other.locator(field("train.epochs"))).to_have_value("40")
    expect(other.locator(field("dataset.n_train"))).to_have_value("100")
    assert "model.dropout=0.3" in other.url


@pytest.mark.parametrize(("name", "value", "words", "fixed"), [
    ("model.dropout", "1.5", "below 1", "0.2"),
    ("train.epochs", "0", "greater than or equal to 1", "3"),
    ("model.dropout", "abc", "number", "0.2"),  # not "a valid list" (float | list[float])
    ("sweep.dropout", "0, 1.5", "less than 1", "0, 0.5"),  # inline, not only above the form
])
def test_invalid_value_shows_an_inline_error_and_starts_nothing(page: Page, live_server,
                                                               name, value, words, fixed):
    base = live_server.url
    page.goto(base + "/?" + urlencode(SINGLE))
    set_controls(page, {name: value})
    with page.expect_response(lambda r: r.url == base + "/play") as response:
        press_train(page)
    assert response.value.status == 422

    error = page.locator(f".field.has-error[data-field='{name}'] .error")
    expect(error).to_be_visible(timeout=TIMEOUT_MS)
    expect(error).to_contain_text(words)
    expect(page.locator(".field.has-error")).to_have_count(1)  # only the field at fault
    expect(page.locator(field(name))).to_have_value(value)  # what was typed is kept
    assert page.locator("section#run[data-exp]").count() == 0
    expect(page.locator("section#run")).to_contain_text("Train a network")

    # Nothing was stored for this browser (the recent list is per client cookie).
    recent = page.request.get(base + "/partials/recent")
    assert recent.ok
    assert "/e/" not in recent.text()
    assert "Nothing yet" in recent.text()

    # Fixing the value and pressing Train again starts the run, and the error goes away.
    set_controls(page, {"train.epochs": "3", "dataset.n_train": "100", name: fixed})
    press_train(page)
    page.wait_for_selector("section#run[data-exp]", timeout=TIMEOUT_MS)
    expect(page.locator("#controls .field.has-error")).to_have_count(0)
    expect(page.locator("#controls .error, #controls .form-errors")).to_have_count(0)
    wait_final(page, "done")


def test_stop_cancels_a_live_run_and_keeps_its_epochs(page: Page, live_server):
    base = live_server.url
    exp_id = start_run(page, base, {"train.epochs": "1000", "dataset.n_train": "2000"})
    cancel = f"{base}/api/experiments/{exp_id}/cancel"
    try:
        stop = page.locator("#run button[data-role=stop]")
        expect(stop).to_be_visible()
        poll_js(page, LENGTHS_JS, "loss", until=lambda ls: ls and min(ls) >= 3)
        expect(page.locator("#run [data-role=status]")).to_have_text("running")

        stop.click()
        wait_final(page, "cancelled")
    finally:  # never leave minutes of training behind for the next tests
        httpx.post(cancel, timeout=10)  # 409 once it has ended: fine

    expect(page.locator("#run [data-role=status]")).to_have_text("cancelled")
    expect(stop).to_be_hidden()
    # The stream is closed: no point can arrive any more.
    assert page.evaluate("document.querySelector('#run')._source.readyState") == 2
    lengths = page.evaluate(LENGTHS_JS, "loss")
    plotted = lengths[0]
    assert 3 <= plotted < 1000
    assert lengths == [plotted] * 3

    body = api(base, exp_id)
    assert body["status"] == "cancelled"
    kept = body["runs"][0]["epochs"]
    assert [e["epoch"] for e in kept] == list(range(1, len(kept) + 1))
    assert len(kept) == plotted
    expect(page.locator("#run [data-role=progress-text]")).to_have_text(
        f"{plotted} / 1000 epochs")
    assert page.evaluate(LENGTHS_JS, "loss") == lengths  # still the same after the checks


def test_sweep_draws_every_run_and_summarizes_each_rate(page: Page, live_server, tmp_path):
    base = live_server.url
    exp_id = start_run(page, base, {"sweep.dropout": "0, 0.5", "sweep.repeats": "2",
                                    "train.epochs": "15", "dataset.n_train": "100"})
    wait_final(page, "done")
    expect(page.locator("#run [data-role=progress-text]")).to_have_text("60 / 60 epochs")
    body = api(base, exp_id)
    assert [(r["dropout"], r["repeat"]) for r in body["runs"]] == [
        (0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]

    # Four runs (2 rates x 2 seeds): a validation curve per run, drawn from the stream.
    def runs_complete(ts):
        return ts and all(len(x) == 15 for name, x, _ in ts if name.startswith("run "))

    loss = poll_js(page, TRACES_JS, "loss", until=runs_complete)
    assert sum(name.startswith("run ") for name, _, _ in loss) == 4
    curves = {name: y for name, _, y in loss}
    for run in body["runs"]:
        assert curves[f"run {run['index']}"] == [e["val_loss"] for e in run["epochs"]]
    score = traces(page, "score")
    for run in body["runs"]:
        assert score[f"run {run['index']}"][1] == [e["val_acc"] for e in run["epochs"]]
    # And per rate the mean validation curve over its two seeds, named as the server labelled
    # the rate in the panel's view.
    settings = json.loads(page.get_attribute("#run", "data-view"))["settings"]
    assert [s["x"] for s in settings] == [0.0, 0.5]
    for s in settings:
        assert [body["runs"][i]["dropout"] for i in s["runs"]] == [s["x"]] * 2
        runs = [body["runs"][i]["epochs"] for i in s["runs"]]
        mean = [(a["val_loss"] + b["val_loss"]) / 2 for a, b in zip(*runs, strict=True)]
        assert curves[s["label"]] == pytest.approx(mean, rel=1e-9), s["label"]
    # The rate chart has a point per finished run.
    expect(page.locator("#run [data-chart=sweep]")).to_have_attribute("data-points", "4")

    table = page.locator("#summary table")
    expect(table).to_be_visible(timeout=TIMEOUT_MS)
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(2)
    for i, rate in enumerate(("p = 0", "p = 0.5")):
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(rate)
        expect(cells.nth(1)).to_have_text("2")  # runs per rate
        expect(cells.nth(2)).to_contain_text("±")
        expect(cells.nth(3)).to_contain_text("±")
    expect(table.locator("tbody tr.best")).to_have_count(1)  # the best rate is marked
    screenshot(page, tmp_path / "sweep.png")


def test_everything_loads_from_the_app_itself(page: Page, live_server):
    base = live_server.url
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    exp_id = start_run(page, base, {"train.epochs": "5", "dataset.n_train": "100"})
    wait_final(page, "done")
    page.goto(f"{base}/e/{exp_id}")
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)

    assert requests
    assert [u for u in requests if not u.startswith(base + "/")] == []
    paths = {urlsplit(u).path for u in requests}
    # static files only under content-hashed URLs (app/web/assets.py), the modules' imports too
    static = {p for p in paths if p.startswith("/static/")}
    unhashed = {re.sub(r"\.[0-9a-f]{10}(\.\w+)$", r"\1", p) for p in static}
    assert len(unhashed) == len(static) and not unhashed & static, static
    # the page script's ES modules, each imported by main.js or by a module it imports
    modules = {f"/static/js/{name}.js" for name in (
        "main", "run", "curves", "sweep", "insight", "board", "compare", "controls", "plot",
        "stats", "replay")}
    assert {"/static/vendor/htmx.min.js", "/static/vendor/plotly-cartesian.min.js"} | modules \
        <= unhashed
    assert {"/play", f"/api/experiments/{exp_id}/events"} <= paths
    scripts = page.evaluate("Array.from(document.scripts, (s) => s.src)")
    assert scripts and all(s.startswith(base + "/static/") for s in scripts)
    assert page.evaluate("typeof Plotly") == "object"
    assert page.evaluate("typeof htmx") == "object"


GEOMETRY_JS = """() => {
  const r = document.querySelector("#train-button").getBoundingClientRect();
  return [r.left + scrollX, r.top + scrollY, r.width, r.height];
}"""


def test_train_click_from_a_focused_field_starts_a_run(page: Page, live_server):
    """Regression: focus-only help text used to collapse on mousedown and move Train away.

    With the help in the layout flow, mousedown on Train blurred the field, its help text
    (display only on :focus-within) collapsed, the button moved up and mouseup landed beside
    it: no click, no run, from the second run on (before it, scroll anchoring hid the shift).
    """
    base = live_server.url
    first = start_run(page, base, {"train.epochs": "3", "dataset.n_train": "100"})
    wait_final(page, "done")

    # The button stays put whether or not a field above it has focus.
    page.focus(field("model.dropout"))
    focused = page.evaluate(GEOMETRY_JS)
    page.locator("#train-button").focus()
    assert page.evaluate(GEOMETRY_JS) == focused

    # What a user does next: type a new value, then click Train with the mouse.
    page.fill(field("model.dropout"), "0.2")
    page.click("#train-button")
    page.wait_for_selector(f"section#run[data-exp]:not([data-exp='{first}'])",
                           timeout=TIMEOUT_MS)
    wait_final(page, "done")
