"""Watching a run learn, in a real headless Chromium: pacing, replay, the paired surfaces, the
live sweep chart, the rate slider, the sweep chart's hover and the log scale.

The page of one's own fresh run (the answer to Train, data-pace) draws its epochs at most at
static/js/replay.js paceRate; everything else (a share page, the status, the summary) follows
the stream at once. A recorder injected before the page's scripts (RECORDER_JS) notes, on the
page's clock, when each epoch arrived over the stream and when each was drawn; the tests hold
the drawing to the schedule the page promises (first epoch at once, then no faster than the
pace and no later than it needs).

Drives `live_server` through `page` (console errors fail the test); waits are explicit
(`poll_js`: the app's Content-Security-Policy refuses wait_for_function's eval).
"""

from __future__ import annotations

import base64
import math
import re
import time
from urllib.parse import urlencode

import httpx
import pytest
from conftest import poll_js
from playwright.sync_api import Browser, Page, expect

from app.ml.config import ExperimentConfig
from app.web import palette, texts

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000
PACE_SECONDS = 3.5  # static/js/replay.js
SLACK_S = 1.0  # a frame, a redraw of every chart, on a loaded 2-core CI machine

# Before the page's own scripts: every epoch's arrival, every redraw (the panel's data-drawn),
# the final event and the status bar's "done", on the page's clock (ms).
RECORDER_JS = """
window.__dp = { arrivals: [], draws: [], starts: [], final: null, statusDone: null,
                paneEpochs: [] };
document.addEventListener("DOMContentLoaded", () => { // when the loss chart starts drawing
  const react = Plotly.react;
  Plotly.react = function (gd, data, ...rest) {
    if (gd.dataset && gd.dataset.chart === "loss" && data.length && data[0].x.length) {
      window.__dp.starts.push([performance.now(), data[0].x.length]);
    }
    return react.call(this, gd, data, ...rest);
  };
});
const Native = window.EventSource;
window.EventSource = function (url, options) {
  const source = new Native(url, options);
  source.addEventListener("epoch", (e) => {
    const m = JSON.parse(e.data);
    if (m.run === 0) window.__dp.arrivals.push([performance.now(), m.epoch]);
  });
  return source;
};
window.EventSource.prototype = Native.prototype;
new MutationObserver((records) => {
  const now = performance.now(), dp = window.__dp;
  for (const r of records) {
    const run = r.target.id === "run" ? r.target : null;
    if (run && r.attributeName === "data-drawn") {
      const drawn = Number(run.dataset.drawn);
      const last = dp.draws.length ? dp.draws[dp.draws.length - 1][1] : null;
      if (last !== drawn) dp.draws.push([now, drawn]);
      const pane = run.querySelector("[data-pane] .chart");
      if (pane && pane.dataset.epoch) dp.paneEpochs.push(Number(pane.dataset.epoch));
    }
    if (run && r.attributeName === "data-final" && dp.final === null) dp.final = now;
  }
  const status = document.querySelector("#run [data-role=status]");
  if (dp.statusDone === null && status && status.textContent.trim() === "done") dp.statusDone = now;
}).observe(document, { subtree: true, childList: true, attributes: true,
                       attributeFilter: ["data-drawn", "data-final"] });
"""

# [[trace name, x array]] of one chart of the panel.
TRACES_JS = """(key) => {
  const el = document.querySelector(`#run [data-chart="${key}"]`);
  return el && el.data ? el.data.map((t) => [t.name || "", Array.from(t.x || [])]) : null;
}"""
PANES_JS = """() => Array.from(document.querySelectorAll('#run [data-pane]'), (p) => {
  const el = p.querySelector('.chart');
  return { run: p.dataset.run, epoch: Number(el.dataset.epoch || 0),
           rate: (p.querySelector('[data-role=pane-rate]') || {}).textContent || null,
           z: el.data && el.data.length ? el.data[0].z.map((row) => Array.from(row)) : null,
           scale: el.data && el.data.length ? el.data[0].colorscale : null };
})"""

# A run that trains in well under a second: full-batch steps on a few examples.
FAST = {"dataset.n_train": "50", "model.hidden": "8", "train.batch_size": "64",
        "train.epochs": "60", "baseline": "false"}
N = 60


def api(base: str, path: str = "", method: str = "GET", **kw) -> dict:
    r = httpx.request(method, f"{base}/api/experiments{path}", timeout=30, **kw)
    r.raise_for_status()
    return r.json()


def trained(base: str, config: dict) -> dict:
    """Start an experiment through the API and wait for it to end; its JSON."""
    exp_id = api(base, method="POST", json=config)["id"]
    body = poll_js_free(lambda: api(base, f"/{exp_id}"),
                        lambda b: b["status"] in ("done", "failed", "cancelled"))
    assert body["status"] == "done", body.get("error")
    return body


def poll_js_free(read, until, timeout: float = 90.0):
    """Poll read() until until(value) holds (outside the page); return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if until(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"not met within {timeout}s: {value!r}")


def decoded(snapshot: dict) -> list[float]:
    """A surface snapshot's p(class 1) grid, row by row from y0 up, as one list."""
    return [b / 255 for b in base64.b64decode(snapshot["p1"])]


def flat(z: list[list[float]]) -> list[float]:
    return [v for row in z for v in row]


def snapshot_at(body: dict, run: int, epoch: int) -> dict | None:
    """The latest snapshot of `run` at or before `epoch` (what the page must show)."""
    mine = [s for s in body["snapshots"] if s["run"] == run and s["epoch"] <= epoch]
    return max(mine, key=lambda s: s["epoch"]) if mine else None


def schedule(arrivals: list[float], epochs: int) -> list[float]:
    """The earliest time each epoch may be drawn: at its arrival, and no sooner after the one
    before than the pace allows (the first one at once)."""
    step = PACE_SECONDS * 1000 / max(1, epochs - 1)
    out = [arrivals[0]]
    for t in arrivals[1:]:
        out.append(max(t, out[-1] + step))
    return out


def test_a_fresh_run_is_drawn_over_seconds_and_done_is_not_delayed(page: Page, live_server):
    base = live_server.url
    page.add_init_script(RECORDER_JS)
    page.goto(f"{base}/?{urlencode(FAST)}")
    page.click("#train-button")
    run = page.wait_for_selector("section#run[data-exp]", timeout=TIMEOUT_MS)
    assert run.get_attribute("data-pace") == "1"
    poll_js(page, "() => document.querySelector('#run').dataset.drawn",
            until=lambda d: d == str(N), timeout=60)
    rec = page.evaluate("window.__dp")
    arrivals = [t for t, _ in sorted(rec["arrivals"], key=lambda a: a[1])]
    assert len(arrivals) == N
    drawn_at = {}
    for t, epoch in rec["draws"]:
        for e in range(1, epoch + 1):
            drawn_at.setdefault(e, t)
    assert sorted(drawn_at) == list(range(1, N + 1))
    # the first epoch at once (its drawing starts within a frame; Plotly then takes its
    # time), then each epoch no sooner than the pace, and no later than needed
    first_start = min(t for t, n in rec["starts"] if n >= 1)
    # (within a frame or two of its arrival, 100 ms on a loaded 2-core machine: 51 ms was seen
    # with the whole suite running; a first point held to the pace would wait a full step,
    # 59 ms, after the frame that received it)
    assert first_start - arrivals[0] <= 100, (first_start, arrivals[0])
    assert drawn_at[1] - arrivals[0] <= SLACK_S * 1000, (drawn_at[1], arrivals[0])
    # (arrival times are when the page got to each event: a busy page sees several at once, so
    # the pace is held against the first arrival, the lateness against each one's)
    step = PACE_SECONDS * 1000 / (N - 1)
    earliest = schedule(arrivals, N)
    for e in range(2, N + 1):
        assert drawn_at[e] >= arrivals[0] + (e - 1) * step - 5, (e, drawn_at[e], arrivals[0])
        assert drawn_at[e] <= earliest[e - 1] + SLACK_S * 1000, (e, drawn_at[e], earliest[e - 1])
    # so a run that arrives in a blink is seen learning for 3.5 s (plus the last redraw)
    if arrivals[-1] - arrivals[0] < 1500:
        assert drawn_at[N] - drawn_at[1] <= PACE_SECONDS * 1000 + SLACK_S * 1000
    assert len(rec["draws"]) >= 10  # about 25 a second when the machine is idle
    # done is not delayed: the final event and the status bar's "done" while still drawing
    assert rec["final"] is not None and rec["final"] < drawn_at[N] - 500
    assert rec["statusDone"] is not None and rec["statusDone"] < drawn_at[N]
    # the decision surface evolved with the curves
    assert len(set(rec["paneEpochs"])) >= 3, rec["paneEpochs"]
    lengths = [len(x) for name, x in page.evaluate(TRACES_JS, "loss")]
    assert lengths == [N, N, N]


def test_a_share_page_follows_at_once(page: Page, live_server):
    base = live_server.url
    body = trained(base, {"dataset": {"n_train": 50}, "model": {"hidden": [8]},
                          "train": {"epochs": 150, "batch_size": 64}})
    page.add_init_script(RECORDER_JS)
    page.goto(f"{base}/e/{body['id']}")
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    assert page.get_attribute("section#run", "data-pace") is None
    # everything is drawn when the final event is handled: no pacing, no catching up
    assert [len(x) for _, x in page.evaluate(TRACES_JS, "loss")] == [150, 150, 150]
    rec = page.evaluate("window.__dp")
    first = next(t for t, e in rec["draws"] if e >= 1)
    assert rec["draws"][-1][1] == 150
    assert rec["draws"][-1][0] - first < 1500


@pytest.fixture(scope="module")
def paired(live_server) -> dict:
    return trained(live_server.url, {"dataset": {"n_train": 80, "noise": 0.3},
                                     "model": {"hidden": [32, 32], "dropout": 0.5},
                                     "train": {"epochs": 60}, "baseline": True})


def test_paired_surfaces_replay_in_step_with_the_curves(page: Page, live_server, paired):
    base = live_server.url
    page.goto(f"{base}/e/{paired['id']}")
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    poll_js(page, "() => document.querySelector('#run').dataset.drawn", until=lambda d: d == "60")
    # two surfaces side by side, titled with their rates in their colours, classes' colours
    panes = poll_js(page, PANES_JS, until=lambda ps: all(p["z"] for p in ps))
    assert [(p["run"], p["rate"], p["epoch"]) for p in panes] == [
        ("0", "p = 0.5", 60), ("1", "p = 0", 60)]
    for p in panes:
        assert [c for _, c in p["scale"]] == [palette.CLASS_COLORS[0], palette.SURFACE_MID,
                                              palette.CLASS_COLORS[1]]
    for p, run in zip(panes, (0, 1), strict=True):
        assert flat(p["z"]) == pytest.approx(decoded(snapshot_at(paired, run, 60)), abs=1e-9)
    assert panes[0]["z"] != panes[1]["z"]
    colors = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#run [data-role=pane-rate]'), (el) => getComputedStyle(el).borderBottomColor)""")
    assert colors == [_rgb(palette.rate_color(0.5)), _rgb(palette.rate_color(0))]
    # what dropout changed, in words, from the stored numbers
    config = ExperimentConfig.model_validate(paired["config"])
    expect(page.locator("#run [data-role=verdict]")).to_have_text(
        texts.paired_verdict(config, paired["summary"]))

    # the scrubber: curves up to epoch 20, each surface at its last snapshot by then
    scrub = page.locator("#run [data-role=epoch]")
    expect(page.locator("#run [data-role=replay]")).to_be_visible()
    scrub.focus()
    page.keyboard.press("Home")
    for _ in range(19):
        page.keyboard.press("ArrowRight")
    expect(page.locator("#run [data-role=epoch-label]")).to_have_text("epoch 20 of 60")
    loss = dict(page.evaluate(TRACES_JS, "loss"))
    for name in ("run 0", "run 1", "p = 0.5", "p = 0", "p = 0.5 train", "p = 0 train"):
        assert loss[name] == list(range(1, 21)), name
    assert dict(page.evaluate(TRACES_JS, "gap"))["p = 0"] == list(range(1, 21))
    panes = page.evaluate(PANES_JS)
    for p, run in zip(panes, (0, 1), strict=True):
        snap = snapshot_at(paired, run, 20)
        assert snap is not None and p["epoch"] == snap["epoch"] < 60
        assert flat(p["z"]) == pytest.approx(decoded(snap), abs=1e-9)

    # Replay from the start: drawn over time, the button says Pause meanwhile
    page.keyboard.press("End")
    expect(page.locator("#run [data-role=epoch-label]")).to_have_text("epoch 60 of 60")
    play = page.locator("#run [data-role=play]")
    expect(play).to_have_text("Replay")
    play.click()
    expect(play).to_have_text("Pause")
    seen = set()
    while True:
        drawn = int(page.get_attribute("section#run", "data-drawn"))
        seen.add(drawn)
        if drawn == 60:
            break
        page.wait_for_timeout(50)
    assert min(seen) < 20 and len(seen) >= 8, sorted(seen)
    expect(play).to_have_text("Replay")
    assert page.evaluate(PANES_JS)[0]["epoch"] == 60

    # hovering an epoch on one chart shows it on the others
    box = page.locator("#run [data-chart=loss] .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    poll_js(page, """() => document.querySelectorAll(
        '#run [data-chart=score] .hoverlayer > *').length""", until=bool, timeout=10)


def _rgb(color: str) -> str:
    r, g, b = palette._rgb(color)
    return f"rgb({r}, {g}, {b})"


def test_the_log_scale_toggle(page: Page, live_server, paired):
    page.goto(f"{live_server.url}/e/{paired['id']}")
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    layout = """() => { const l = document.querySelector('#run [data-chart=loss]').layout;
                        return [l.yaxis.type, l.yaxis.range]; }"""
    poll_js(page, "() => document.querySelector('#run').dataset.drawn", until=lambda d: d == "60")
    kind, linear = page.evaluate(layout)
    assert kind == "linear"
    page.get_by_label("log scale").check()
    kind, log = page.evaluate(layout)
    assert kind == "log"
    losses = [e[k] for r in paired["runs"] for e in r["epochs"]
              for k in ("train_loss", "val_loss")]
    assert log[0] < math.log10(min(losses)) + 0.2 and log[1] > math.log10(min(losses))
    assert log[1] < math.log10(max(losses)) + 0.3
    page.get_by_label("log scale").uncheck()
    assert page.evaluate(layout)[0] == "linear"


SWEEP_LIVE = {"dataset": {"n_train": 400}, "model": {"hidden": [64, 64]},
              "train": {"epochs": 400}, "sweep": {"dropout": [0.0, 0.3, 0.6]}}


def test_the_sweep_chart_moves_while_the_sweep_trains(page: Page, live_server):
    base = live_server.url
    exp_id = api(base, method="POST", json=SWEEP_LIVE)["id"]
    try:
        page.goto(f"{base}/e/{exp_id}")
        page.wait_for_selector("section#run[data-exp]", timeout=TIMEOUT_MS)
        view = page.evaluate("JSON.parse(document.querySelector('#run').dataset.view)")
        assert view["sweep"]["x_range"] == [-0.036, 0.636]
        chart = "#run [data-chart=sweep]"
        # the axis spans the rates from the start, points or not
        assert page.evaluate(f"document.querySelector('{chart}').layout.xaxis.range") == (
            view["sweep"]["x_range"])
        poll_js(page, f"() => document.querySelector('{chart}').dataset.live",
                until=lambda n: n == "3", timeout=60)
        live = page.evaluate(f"""() => {{ const el = document.querySelector('{chart}');
          return {{ x: Array.from(el.data[0].x), y: Array.from(el.data[0].y),
                    text: Array.from(el.data[0].text), epoch: Number(el.dataset.liveEpoch),
                    status: document.querySelector('#run').dataset.status,
                    note: el.layout.annotations.map((a) => a.text).join(' ') }}; }}""")
        assert live["status"] == "running"  # before the run ends
        assert live["x"] == [0.0, 0.3, 0.6]
        # each rate at its run's latest epoch (runs may be a few epochs apart in the stream)
        epochs = [int(re.search(r"epoch (\d+)", t).group(1)) for t in live["text"]]
        k = live["epoch"]
        assert min(epochs) == k
        span = f"{k}" if max(epochs) == k else f"{k}–{max(epochs)}"
        assert f"live, at epoch {span} of 400" in live["note"]
        body = api(base, f"/{exp_id}")
        assert live["y"] == pytest.approx([r["epochs"][e - 1]["val_loss"]
                                           for r, e in zip(body["runs"], epochs, strict=True)])
        # it keeps moving
        poll_js(page, f"() => Number(document.querySelector('{chart}').dataset.liveEpoch)",
                until=lambda e: e > k, timeout=60)
    finally:
        httpx.post(f"{base}/api/experiments/{exp_id}/cancel", timeout=10)


@pytest.fixture(scope="module")
def swept(live_server) -> dict:
    return trained(live_server.url, {"dataset": {"n_train": 100}, "model": {"hidden": [16]},
                                     "train": {"epochs": 30},
                                     "sweep": {"dropout": [0.0, 0.5, 0.9], "repeats": 2}})


def test_the_rate_slider_shows_a_rates_curves_and_surface(page: Page, live_server, swept):
    page.goto(f"{live_server.url}/e/{swept['id']}")
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    expect(page.locator("#run [data-chart=sweep]")).to_have_attribute("data-points", "6")
    assert page.get_attribute("#run [data-chart=sweep]", "data-live") == "0"  # the summary now
    rate = page.locator("#run [data-role=rate]")
    poll_js(page, PANES_JS, until=lambda ps: ps[0]["z"])
    for key, run, label in (("Home", 0, "p = 0"), ("ArrowRight", 2, "p = 0.5"),
                            ("End", 4, "p = 0.9")):
        rate.focus()
        page.keyboard.press(key)
        [pane] = poll_js(page, PANES_JS, until=lambda ps, r=run: ps[0]["run"] == str(r)
                         and ps[0]["z"])
        assert pane["rate"] == label and pane["epoch"] == 30
        assert flat(pane["z"]) == pytest.approx(decoded(snapshot_at(swept, run, 30)), abs=1e-9)
        expect(page.locator("#run [data-role=rate-label]")).to_have_text(label)
        assert rate.get_attribute("aria-valuetext") == label
    # its curves forward; pinned, the other settings' bands hidden
    styles = """() => document.querySelector('#run [data-chart=loss]').data.map((t) =>
        [t.name || '', t.meta || {}, t.visible, t.opacity])"""
    traces = page.evaluate(styles)
    key = next(m["setting"] for name, m, *_ in traces if name == "p = 0.9")
    bands = [(m["setting"], visible) for _, m, visible, _ in traces if m.get("band")]
    assert {s for s, v in bands if v is not False} == {key}
    assert [op for name, m, _, op in traces if name == "p = 0"] == [0.15]
    all_rates = page.locator("#run [data-role=all-rates]")
    all_rates.click()
    traces = page.evaluate(styles)
    assert all(v is not False for _, m, v, _ in traces if m.get("band"))
    assert [op for name, m, _, op in traces if name in ("p = 0", "p = 0.9")] == [1, 1]
    expect(all_rates).to_be_hidden()


def test_hovering_a_mean_point_shows_the_means_tooltip(page: Page, live_server, swept):
    page.goto(f"{live_server.url}/e/{swept['id']}")
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    chart = page.locator("#run [data-chart=sweep]")
    expect(chart).to_have_attribute("data-points", "6")
    chart.scroll_into_view_if_needed()
    for i, label in enumerate(("p = 0", "p = 0.5", "p = 0.9")):
        x, y = page.evaluate("""(i) => {
          const el = document.querySelector('#run [data-chart=sweep]'), t = el.data[0];
          const fl = el._fullLayout, r = el.getBoundingClientRect();
          return [r.left + fl.xaxis._offset + fl.xaxis.l2p(t.x[i]),
                  r.top + fl.yaxis._offset + fl.yaxis.l2p(t.y[i])]; }""", i)
        page.mouse.move(x, y)
        tip = poll_js(page, """() => Array.from(document.querySelectorAll(
            '#run [data-chart=sweep] .hoverlayer .hovertext'), (t) => t.textContent).join(' | ')""",
                      until=lambda t, lab=label: lab in t, timeout=10)
        assert f"{label}" in tip and "mean of 2 runs" in tip and "each run:" in tip, tip
        assert "one run" not in tip
        page.mouse.move(0, 0)


@pytest.fixture
def phone(browser: Browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, errors


def test_a_phone_shows_the_panel_without_sideways_scrolling(phone: Page, live_server, paired,
                                                              swept):
    for exp in (paired, swept):
        phone.goto(f"{live_server.url}/e/{exp['id']}")
        phone.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
        # nothing sticks out of the screen, but what scrolls inside its own box (a wide table)
        wide = phone.evaluate("""() => {
          const scrolls = (el) => { for (let a = el.parentElement; a; a = a.parentElement) {
            if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX)) return true; }
            return false; };
          return Array.from(document.querySelectorAll('#run *'))
            .filter((el) => el.getBoundingClientRect().right > innerWidth + 1
                            && !el.closest('.sr-only') && !scrolls(el))
            .slice(0, 5).map((el) => el.tagName + '.' + el.className); }""")
        assert wide == []
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        run = phone.locator("section#run").bounding_box()
        for chart in ("loss", "surface"):
            box = phone.locator(f"#run [data-chart={chart}]").first.bounding_box()
            assert box["width"] >= run["width"] - 40, chart  # full width, one column
        # the replay controls can be used with a finger: at least 24 px tall targets
        for role in ("play", "epoch"):
            assert phone.locator(f"#run [data-role={role}]").bounding_box()["height"] >= 24
