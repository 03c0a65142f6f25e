"""A guided sweep scenario in a real headless Chromium: started from /scenarios, its charts
colour every rate as the colour bar says (train dashed, validation solid, a key for the line
styles), the decision surface uses the classes' own colours, and the result names this run's
numbers judged by the scenario's claim.

Drives `live_server` through `page` (console errors fail the test); waits are explicit.
"""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import poll_js
from playwright.sync_api import Page, expect

from app.ml.scenarios import BY_SLUG
from app.ml.summary import run_summary
from app.web import palette

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000

# [[name, line colour, dash, marker colour(s), showlegend]] of every trace of one chart.
STYLES_JS = """(key) => {
  const el = document.querySelector(`#run [data-chart="${key}"]`);
  if (!el || !el.data) return null;
  return el.data.map((t) => [t.name || "", (t.line || {}).color || null,
                             (t.line || {}).dash || "solid", (t.marker || {}).color || null,
                             t.showlegend !== false]);
}"""
# The legend as Plotly drew it: the text of every entry.
LEGEND_JS = """(key) => Array.from(document.querySelectorAll(
  `#run [data-chart="${key}"] .legend .legendtext`)).map((t) => t.textContent)"""


def test_a_sweep_scenarios_colours_legend_colour_bar_and_result(page: Page, live_server):
    base = live_server.url
    scenario = BY_SLUG["too-much-dropout"]
    page.goto(base + "/scenarios")
    item = page.locator(f"li#{scenario.slug}")
    for claim in scenario.claims():  # the margins are shown to the learner
        expect(item.locator("details.claims")).to_contain_text(claim)
    item.get_by_role("button", name="Run it now").click()
    page.wait_for_selector("section#run[data-final='done']", timeout=TIMEOUT_MS)
    exp_id = page.get_attribute("section#run", "data-exp")
    view = json.loads(page.get_attribute("#run", "data-view"))
    settings = {s["label"]: s for s in view["settings"]}
    assert list(settings) == ["p = 0.5", "p = 0.9"]
    for label, p in (("p = 0.5", 0.5), ("p = 0.9", 0.9)):
        assert settings[label]["color"] == palette.rate_color(p)

    # The colour bar: the scale with a mark per rate, in that rate's colour, and a caption.
    bar = page.locator("#run figure[data-role=colorbar]")
    expect(bar).to_be_visible()
    marks = bar.locator("g.mark")
    expect(marks).to_have_count(2)
    assert [(marks.nth(i).get_attribute("data-p"), marks.nth(i).get_attribute("data-color"))
            for i in range(2)] == [("0.5", palette.rate_color(0.5)),
                                   ("0.9", palette.rate_color(0.9))]
    assert bar.locator("stop").count() == len(palette.RATE_STOPS)
    caption = bar.locator("figcaption")
    expect(caption).to_contain_text("dropout rate p")
    expect(caption).to_contain_text("validation solid, train (eval mode) dashed")

    # Loss chart: a rate is a colour, the split a line style; the legend names rates and styles.
    def drawn(styles):
        return styles and all(len(s) == 5 for s in styles)

    styles = poll_js(page, STYLES_JS, "loss", until=drawn)
    by_name = {}
    for name, color, dash, _, shown in styles:
        by_name.setdefault(name, []).append((color, dash, shown))
    for label, s in settings.items():
        assert (s["color"], "solid", True) in by_name[label]  # validation mean
        assert (s["color"], "dash", False) in by_name[f"{label} train"]  # train mean
    assert by_name["validation"] == [(palette.NEUTRAL, "solid", True)]
    assert by_name["train (eval mode)"] == [(palette.NEUTRAL, "dash", True)]
    run_colors = {color for name, color, *_ in styles if name.startswith("run ")}
    assert run_colors == {s["color"] for s in settings.values()}
    legend = poll_js(page, LEGEND_JS, "loss", until=lambda t: len(t) >= 4)
    assert {"p = 0.5", "p = 0.9", "validation", "train (eval mode)"} <= set(legend)

    # The sweep chart's markers wear their rate's colour too.
    expect(page.locator("#run [data-chart=sweep]")).to_have_attribute("data-points", "2")
    sweep = poll_js(page, STYLES_JS, "sweep", until=drawn)
    assert sweep[0][3] == [settings["p = 0.5"]["color"], settings["p = 0.9"]["color"]]

    # The decision surface: the classes' own colours, no rate's.
    scale = poll_js(page, """() => {
      const el = document.querySelector('#run [data-chart="surface"]');
      return el && el.data && el.data.length ? el.data[0].colorscale : null;
    }""", until=bool)
    assert [c for _, c in scale] == [palette.CLASS_COLORS[0], palette.SURFACE_MID,
                                     palette.CLASS_COLORS[1]]

    # The result: "look for", and each part of the claim with THIS run's numbers.
    result = page.locator("#summary [data-role=scenario-result]")
    expect(result).to_be_visible(timeout=TIMEOUT_MS)
    expect(result).to_contain_text(scenario.look_for)
    body = httpx.get(f"{base}/api/experiments/{exp_id}", timeout=10).json()
    summaries = [run_summary(r["epochs"], "classification") for r in body["runs"]]
    findings = scenario.judge(summaries)
    items = result.locator("li")
    expect(items).to_have_count(len(findings))
    for i, f in enumerate(findings):
        expect(items.nth(i)).to_contain_text(f"{f.claim}. Here: {f.numbers}: {f.shown}")
        expect(items.nth(i)).to_have_attribute("data-holds", str(f.holds).lower())
    # seed 0 is one the scenario was designed on: its claim shows
    expect(result).to_have_attribute("data-holds", "true")
    expect(page.locator("aside [data-role=scenario]")).to_contain_text(scenario.title)
