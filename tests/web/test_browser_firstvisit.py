"""The first screen in a real Chromium: the data drawn at once, the controls people reach for,
one screen at 1366x768, a phone at 390x844, focus never hidden.

- The data card is in the page's HTML: drawn by DOMContentLoaded, redrawn when a data field
  changes (its points move).
- Sliders, layer rows and dataset pictures change what the form submits, in the canonical
  field names that the API and the query string use.
- The essentials (dataset pictures, sizes, layers with their rates, epochs, the p = 0 twin,
  Train) and the data card fit 1366x768 without scrolling; no page scrolls sideways at 390 px;
  a field reached with Tab is never under the sticky Train bar.

Screenshots go to tmp_path, or to $DP_SHOTS when it is set (a folder to look at them in).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from conftest import finished, poll_js
from playwright.sync_api import Browser, Page, expect

from app.ml.config import MAX_LAYERS, ExperimentConfig
from app.ml.datasets import CATALOG
from app.ml.scenarios import START
from app.web import forms

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
LAPTOP, PHONE, WIDE = (1366, 768), (390, 844), (1920, 1080)
TINY = {"dataset": {"n_train": 60}, "model": {"hidden": [16, 16]}, "train": {"epochs": 6}}

# Counted at DOMContentLoaded, before any module script ran: what the HTML itself draws.
AT_DCL = """
document.addEventListener("DOMContentLoaded", () => {
  const card = document.querySelector("#data");
  window.__atDcl = card ? card.querySelectorAll("g.train > *").length : -1;
});
"""
POINTS_JS = """() => [...document.querySelectorAll('#data g.train > *')]
  .map((el) => el.getAttribute('cx') + ',' + el.getAttribute('cy'))"""


def field(name: str) -> str:
    return "#f-" + name.replace(".", r"\.")


@pytest.fixture
def open_page(browser: Browser):
    """Pages at a given viewport in fresh contexts; console errors fail the test."""
    contexts, errors = [], []

    def make(size: tuple[int, int] = LAPTOP) -> Page:
        context = browser.new_context(viewport={"width": size[0], "height": size[1]})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        return page

    yield make
    for context in contexts:
        context.close()
    # htmx reports the requests a navigation cut short (a board's refresh, say): not errors
    assert not [e for e in errors if not e.startswith(("htmx:sendAbort", "htmx:afterRequest"))], \
        errors


def shot(page: Page, name: str, tmp_path: Path, full: bool = False) -> None:
    folder = Path(os.environ.get("DP_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    assert path.read_bytes().startswith(b"\x89PNG")


def submitted(page: Page) -> ExperimentConfig:
    """Press Train and read the config the form posted, as the server parses it."""
    with page.expect_request(lambda r: r.url.endswith("/play") and r.method == "POST") as req:
        page.click("#train-button")
    items = parse_qsl(req.value.post_data, keep_blank_values=True)
    config, errors = forms.validate(forms.form_params(items))
    assert errors == {}, errors
    page.wait_for_selector("section#run[data-exp]", timeout=TIMEOUT_MS)
    return config


def query(page: Page) -> dict[str, str]:
    """The address bar's setup, as the page has it now (page.url can lag a replaceState)."""
    search = page.evaluate("location.search").removeprefix("?")
    return dict(parse_qsl(search, keep_blank_values=True))


# -- the data first ---------------------------------------------------------------------------


def test_the_data_is_drawn_on_open_and_redrawn_on_change(open_page, live_server, tmp_path):
    page = open_page()
    page.add_init_script(AT_DCL)
    page.goto(live_server.url + "/")
    # drawn by the HTML itself: every training point is there at DOMContentLoaded
    assert page.evaluate("window.__atDcl") == START.dataset.n_train
    label = page.get_attribute("#data svg[role=img]", "aria-label")
    assert f"{START.dataset.n_train} training points" in label and "classes" in label
    shot(page, "firstvisit-1366x768", tmp_path)
    before = page.evaluate(POINTS_JS)

    # another dataset: its picture, then its points
    page.click("label.pick:has(input[value=circles])")
    expect(page.locator("#data h2")).to_contain_text("circles", timeout=TIMEOUT_MS)
    circles = page.evaluate(POINTS_JS)
    assert circles != before and len(circles) == START.dataset.n_train
    # the size: as many points as training examples
    page.fill(field("dataset.n_train"), "150")
    poll_js(page, POINTS_JS, until=lambda pts: len(pts) == 150)
    # the noise slider (keyboard): same count, the points move
    moved = page.evaluate(POINTS_JS)
    page.focus("[data-field='dataset.noise'] input[type=range]")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    poll_js(page, POINTS_JS, until=lambda pts: len(pts) == 150 and pts != moved)
    assert query(page)["dataset.noise"] != forms.DEFAULTS["dataset.noise"]
    # a folded field (the data seed) redraws too
    moved = page.evaluate(POINTS_JS)
    page.click("[data-fold=dataset] > summary")
    page.fill(field("dataset.seed"), "7")
    poll_js(page, POINTS_JS, until=lambda pts: len(pts) == 150 and pts != moved)
    # label noise flips some training labels: the card says how many
    page.fill(field("dataset.label_noise"), "0.2")
    expect(page.locator("#data")).to_contain_text("labels are flipped", timeout=TIMEOUT_MS)
    # a size the dataset does not have: the card says why instead of drawing
    page.fill(field("dataset.n_train"), "5")
    expect(page.locator("#data [data-role=data-error]")).to_contain_text("dataset.n_train")


@pytest.mark.parametrize(("name", "selector"), [
    ("sine", "#data polyline.truth"),
    ("digits", "#data g.digit image"),
    ("breast_cancer", "#data .projection-label"),
])
def test_each_kind_of_data_has_its_picture(open_page, live_server, tmp_path, name, selector):
    page = open_page()
    page.goto(live_server.url + "/")
    page.click(f"label.pick:has(input[value={name}])")
    expect(page.locator(selector).first).to_be_visible(timeout=TIMEOUT_MS)
    assert page.get_attribute("#data", "data-kind") in ("curve", "images", "projection")
    shot(page, f"data-{name}", tmp_path)


# -- the controls -----------------------------------------------------------------------------


def test_dataset_pictures_pick_the_data_and_bound_its_size(open_page, live_server):
    page = open_page()
    page.goto(live_server.url + "/")
    picks = page.locator("label.pick")
    expect(picks).to_have_count(len(CATALOG))
    for i in range(len(CATALOG)):
        expect(picks.nth(i).locator("svg.thumb")).to_be_visible()
    expect(page.locator(f"input[name='dataset.name'][value={START.dataset.name}]")).to_be_checked()
    # wine has fewer examples than asked: the box and the slider end at its largest split
    page.fill(field("dataset.n_train"), "3000")
    page.click("label.pick:has(input[value=wine])")
    most = str(CATALOG["wine"].max_train)
    expect(page.locator(field("dataset.n_train"))).to_have_value(most)
    assert page.get_attribute("[data-field='dataset.n_train'] input[type=range]", "max") == most
    # arrow keys move through the pictures as through any radio group
    page.focus("input[name='dataset.name'][value=wine]")
    page.keyboard.press("ArrowRight")
    expect(page.locator("input[name='dataset.name'][value=sine]")).to_be_checked()
    assert query(page)["dataset.name"] == "sine"
    config = submitted(page)
    assert config.dataset.name == "sine" and config.dataset.n_train == int(most)


def test_sliders_change_the_submitted_config(open_page, live_server):
    page = open_page()
    page.goto(live_server.url + "/?train.epochs=3")
    rows = page.locator("[data-role=layer-row]")
    expect(rows).to_have_count(len(START.model.hidden))
    # one p for every layer: the first row's slider moves them all
    page.focus("[data-role=layer-row] .slider >> nth=0")
    page.keyboard.press("ArrowLeft")
    step = float(forms.SLIDERS["model.dropout"])
    rate = round(START.model.layer_rates()[0] - step, 6)
    for i in range(len(START.model.hidden)):
        expect(rows.nth(i).locator(".rate")).to_have_value(f"{rate:g}")
    assert query(page)["model.dropout"] == f"{rate:g}"
    # per layer: untick, and the second row's slider moves alone
    page.uncheck("[data-role=same-rate]")
    page.focus("[data-role=layer-row] .slider >> nth=1")
    page.keyboard.press("ArrowLeft")
    second = round(rate - step, 6)
    expect(rows.nth(1).locator(".rate")).to_have_value(f"{second:g}")
    expect(rows.nth(0).locator(".rate")).to_have_value(f"{rate:g}")
    # typing a rate moves its slider
    rows.nth(0).locator(".rate").fill("0.2")
    assert float(rows.nth(0).locator(".slider").input_value()) == 0.2
    # the input dropout and training examples sliders
    page.focus("[data-field='model.input_dropout'] input[type=range]")
    page.keyboard.press("ArrowRight")
    expect(page.locator(field("model.input_dropout"))).to_have_value(f"{step:g}")
    page.focus("[data-field='dataset.n_train'] input[type=range]")
    page.keyboard.press("ArrowRight")
    n_train = START.dataset.n_train + int(forms.SLIDERS["dataset.n_train"])
    expect(page.locator(field("dataset.n_train"))).to_have_value(str(n_train))
    # the twin's box
    expect(page.locator(field("baseline"))).to_be_checked()
    page.uncheck(field("baseline"))
    assert query(page)["baseline"] == "false"

    config = submitted(page)
    layers = [0.2, second, *[rate] * (len(START.model.hidden) - 2)]
    assert config.model.layer_rates() == layers
    assert config.model.input_dropout == step and config.dataset.n_train == n_train
    assert config.baseline is False and config.train.epochs == 3
    # the address bar and the stored experiment say the same
    assert forms.validate(query(page))[0] == config
    exp_id = page.get_attribute("section#run", "data-exp")
    stored = httpx.get(f"{live_server.url}/api/experiments/{exp_id}", timeout=10).json()
    assert ExperimentConfig.model_validate(stored["config"]) == config
    finished(httpx.Client(base_url=live_server.url), exp_id)


def test_layers_are_added_and_removed(open_page, live_server):
    page = open_page()
    page.goto(live_server.url + "/?model.hidden=32&train.epochs=2")
    rows = page.locator("[data-role=layer-row]")
    expect(rows).to_have_count(1)
    page.click("[data-role=add-layer]")
    expect(rows).to_have_count(2)
    expect(page.locator(field("model.hidden") + "-2")).to_be_focused()  # the new width
    expect(page.locator(field("model.hidden") + "-2")).to_have_value("32")  # copies the last
    page.fill(field("model.hidden") + "-2", "8")
    assert query(page)["model.hidden"] == "32,8"
    for _ in range(MAX_LAYERS - 2):
        page.click("[data-role=add-layer]")
    expect(rows).to_have_count(MAX_LAYERS)
    expect(page.locator("[data-role=add-layer]")).to_be_disabled()  # the config's limit
    # remove the first: the others move up and take its ids
    page.click("[data-role=layer-row] >> nth=0 >> [data-role=remove-layer]")
    expect(rows).to_have_count(MAX_LAYERS - 1)
    expect(page.locator(field("model.hidden"))).to_have_value("8")
    expect(page.locator("[data-role=add-layer]")).to_be_enabled()
    assert page.get_attribute("[data-role=layer-row] >> nth=0 >> .rate", "aria-label") == \
        "layer 1: dropout rate p"
    while rows.count() > 1:
        page.click("[data-role=layer-row] >> nth=-1 >> [data-role=remove-layer]")
    config = submitted(page)
    assert config.model.hidden == [8]
    # no row at all: a network without hidden layers
    page.goto(live_server.url + "/?model.hidden=16&train.epochs=2")
    page.click("[data-role=remove-layer]")
    expect(rows).to_have_count(0)
    assert query(page)["model.hidden"] == ""
    assert submitted(page).model.hidden == []


# -- one screen, a phone, focus ---------------------------------------------------------------

ESSENTIALS = ["input[name='dataset.name'] >> xpath=..", field("dataset.n_train"),
              field("dataset.noise"), "[data-role=layer-row] >> nth=-1", "[data-role=add-layer]",
              field("model.input_dropout"), field("train.epochs"), field("baseline"),
              "#train-button", "#data svg[role=img]"]


def box(page: Page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def test_the_essentials_and_the_data_fit_one_laptop_screen(open_page, live_server, tmp_path):
    page = open_page(LAPTOP)
    page.goto(live_server.url + "/")
    bar = box(page, "[data-role=train-bar]")
    assert bar["y"] + bar["height"] <= LAPTOP[1]
    for selector in ESSENTIALS:
        b = box(page, selector)
        assert b and b["y"] >= 0 and b["y"] + b["height"] <= LAPTOP[1], (selector, b)
        assert b["x"] + b["width"] <= LAPTOP[0], selector
        if selector != "#train-button":  # above the sticky bar, not under it
            assert b["y"] + b["height"] <= bar["y"] + 1, (selector, b, bar)
    assert page.evaluate("scrollY") == 0
    # everything else is folded away
    for fold in ("dataset", "model", "train", "sweep", "label"):
        assert page.get_attribute(f"[data-fold={fold}]", "open") is None, fold
    for name in ("train.lr", "train.optimizer", "train.batch_size", "sweep.dropout", "name"):
        expect(page.locator(field(name))).to_be_hidden()
    shot(page, "firstvisit-1366x768-essentials", tmp_path)


def test_a_run_keeps_the_data_card_compact(open_page, live_server, tmp_path):
    """After Train the data card shrinks, so the run's first row has the screen."""
    page = open_page(LAPTOP)
    page.goto(live_server.url + "/")
    tall = box(page, "#data")["height"]
    page.click("#train-button")  # the starting setup: the rate and its p = 0 twin
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    compact = box(page, "#data")["height"]
    assert compact < 0.6 * tall and compact <= 200, (tall, compact)
    run = box(page, "#run")
    assert run["y"] < LAPTOP[1] / 2  # the run panel starts in the first half of the screen
    page.wait_for_timeout(500)
    shot(page, "run-1366x768", tmp_path)
    page.set_viewport_size({"width": WIDE[0], "height": WIDE[1]})
    page.evaluate("scrollTo(0, 0)")
    shot(page, "run-1920x1080", tmp_path)


def room_paths(base: str) -> tuple[str, str]:
    with httpx.Client(base_url=base, timeout=30) as http:
        res = http.post("/rooms", data={"name": "Phone room"}, follow_redirects=False)
        presenter = res.headers["location"]
    return presenter, re.search(r"/rooms/([^/]+)/present", presenter).group(1)


def test_no_page_scrolls_sideways_on_a_phone(open_page, live_server, tmp_path):
    base = live_server.url
    with httpx.Client(base_url=base, timeout=30) as http:
        ids = [http.post("/api/experiments", json={**TINY, "baseline": b}).json()["id"]
               for b in (True, False)]
        sweep = http.post("/api/experiments",
                          json={**TINY, "sweep": {"dropout": [0, 0.5]}}).json()["id"]
        for exp_id in (*ids, sweep):
            finished(http, exp_id)
    presenter, code = room_paths(base)
    page = open_page(PHONE)
    paths = ["/", "/?dataset.name=digits", "/scenarios", "/rooms/new", f"/e/{ids[0]}",
             f"/e/{ids[1]}", f"/e/{sweep}", f"/compare?ids={ids[0]},{ids[1]}", presenter,
             f"/rooms/{code}", f"/rooms/{code}/board"]
    for path in paths:
        page.goto(base + path)
        page.wait_for_load_state("load")
        if "/e/" in path:
            page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
        page.wait_for_timeout(300)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE[0], (path, width)
        if path == "/":
            bar = box(page, "[data-role=train-bar]")
            assert bar["y"] + bar["height"] <= PHONE[1]  # Train on the first screen
            assert box(page, "#data svg[role=img]")["y"] < PHONE[1] / 2  # the data first
            shot(page, "firstvisit-390x844", tmp_path)
        if path.startswith("/e/") and path.endswith(ids[0]):
            shot(page, "paired-run-390x844", tmp_path, full=True)
    page.goto(base + "/")  # the page with a run: the charts as wide as the screen
    page.click("#train-button")
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    charts = page.locator("#run .chart-box")
    for i in range(charts.count()):
        b = charts.nth(i).bounding_box()
        if b:
            assert b["x"] >= 0 and b["x"] + b["width"] <= PHONE[0], i


TAB_CHECK = """() => {
  const el = document.activeElement, bar = document.querySelector("[data-role=train-bar]");
  if (!el || el === document.body) return null;
  const r = el.getBoundingClientRect(), b = bar.getBoundingClientRect();
  const inBar = bar.contains(el);
  return {id: el.id || el.getAttribute("aria-label") || el.tagName, inBar,
          top: r.top, bottom: r.bottom, barTop: b.top, height: innerHeight,
          inForm: Boolean(el.closest("#controls"))};
}"""


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["1366x768", "390x844"])
def test_focus_is_never_hidden_under_the_train_bar(open_page, live_server, size):
    page = open_page(size)
    page.goto(live_server.url + "/")
    for fold in ("dataset", "model", "train", "sweep", "label"):  # every field reachable
        page.click(f"[data-fold={fold}] > summary")
    page.focus("input[name='dataset.name']:checked")
    seen = 0
    for _ in range(120):
        page.keyboard.press("Tab")
        state = page.evaluate(TAB_CHECK)
        if not state or not state["inForm"]:
            break
        seen += 1
        assert state["top"] >= 0 and state["bottom"] <= state["height"], state
        if not state["inBar"]:
            assert state["bottom"] <= state["barTop"] + 1, state
    assert seen > 30  # every field, toggle and row control was visited
