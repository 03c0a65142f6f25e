"""Colours that mean one thing (app/web/palette.py): a dropout rate is a colour on one sequential
scale, a class has colours of its own, every line colour is readable on the page (WCAG 3:1
for graphics, computed here), and no page script picks a hue itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.web import palette

ROOT = Path(__file__).resolve().parents[2]
HEX = re.compile(r"#[0-9a-fA-F]{6}")


def test_contrast_is_computed_as_wcag_says():
    assert palette.contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert palette.contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert palette.contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert palette.contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # AA grey


def test_the_backgrounds_are_the_pages_own():
    css = (ROOT / "static" / "style.css").read_text()
    declared = {name: value.lower() for name, value in
                re.findall(r"--(panel|bg):\s*(#[0-9a-fA-F]{6})", css)}
    assert set(palette.BACKGROUNDS) == {declared["panel"], declared["bg"]}


@pytest.mark.parametrize("background", palette.BACKGROUNDS)
def test_every_line_colour_has_3_to_1_contrast_on_the_page(background):
    colors = palette.line_colors()
    assert len([k for k in colors if k.startswith("p = ")]) == 101  # the scale, every 0.01
    low = {what: round(palette.contrast(c, background), 2) for what, c in colors.items()
           if palette.contrast(c, background) < palette.MIN_CONTRAST}
    assert not low, f"below 3:1 on {background}: {low}"


def test_rates_lie_on_one_sequential_scale():
    assert palette.rate_color(0) == palette.RATE_STOPS[0]
    assert palette.rate_color(1) == palette.RATE_STOPS[-1]
    assert palette.rate_color(0.5) == palette.RATE_STOPS[5]
    assert palette.rate_color(-1) == palette.rate_color(0) and palette.rate_color(2) == (
        palette.rate_color(1))
    lum = [palette.luminance(palette.rate_color(i / 100)) for i in range(101)]
    assert all(a < b for a, b in zip(lum, lum[1:]))  # lighter with every step of p
    assert all(HEX.fullmatch(palette.rate_color(i / 7)) for i in range(8))
    assert palette.rate_value([0.2, 0.5]) == pytest.approx(0.35)
    assert palette.rate_value([]) == 0.0 and palette.rate_value(0.3) == 0.3


def _distance(a: str, b: str) -> float:
    ra, rb = palette._rgb(a), palette._rgb(b)
    return sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) ** 0.5


def test_classes_have_colours_no_rate_has():
    rates = [palette.rate_color(i / 100) for i in range(101)]
    for c in palette.CLASS_COLORS:
        assert min(_distance(c, r) for r in rates) > 100, c
    assert _distance(*palette.CLASS_COLORS) > 100


def test_the_colour_bar_marks_each_rate_in_its_colour():
    bar = palette.rate_bar([(0.0, "p = 0"), (0.5, "p = 0.5")], width=200)
    assert bar["title"] == "dropout rate p"
    assert [t["label"] for t in bar["ticks"]] == ["0", "0.25", "0.5", "0.75", "1"]
    assert [t["x"] for t in bar["ticks"]] == [0, 50, 100, 150, 200]
    assert [(m["x"], m["label"], m["color"]) for m in bar["marks"]] == [
        (0, "p = 0", palette.rate_color(0)), (100, "p = 0.5", palette.rate_color(0.5))]
    assert [s["color"] for s in bar["stops"]] == palette.RATE_STOPS
    assert bar["stops"][0]["offset"] == "0%" and bar["stops"][-1]["offset"] == "100%"


def test_page_scripts_take_every_hue_from_the_server():
    """A page module may use greys (outlines, annotations) of its own; a colour with a hue
    comes from the server, except a room board's per-participant palette (static/js/plot.js
    PALETTE, drawn by board.js)."""
    for path in sorted((ROOT / "static" / "js").glob("*.js")):
        text = path.read_text()
        if path.name == "plot.js":
            text = re.sub(r"export const PALETTE = \[[^\]]*\];", "", text)
        for color in re.findall(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b", text):
            digits = color[1:] if len(color) == 7 else "".join(ch * 2 for ch in color[1:])
            r, g, b = digits[0:2], digits[2:4], digits[4:6]
            assert r == g == b, f"{path.name}: {color} is a colour the server should hand over"


@pytest.mark.parametrize("background", palette.BACKGROUNDS)
def test_a_dotted_line_keeps_3_to_1_between_its_dots(background):
    """A dotted line is half ink, half background: seen from reading distance its colour is
    the mix (that is how the old p = 0.5 dotted line measured 2.3:1). Its shade keeps 3:1
    even so, for every rate."""
    old = palette.mix(palette.rate_color(0.5), "#ffffff", 1 - palette.DOT_INK)
    assert palette.contrast(old, "#ffffff") == pytest.approx(2.3, abs=0.05)
    for i in range(101):
        dotted = palette.dotted_color(palette.rate_color(i / 100))
        seen = palette.mix(dotted, background, 1 - palette.DOT_INK)
        assert palette.contrast(seen, background) >= palette.MIN_CONTRAST, (i, dotted)
    assert palette.WIDTH["dropout"] > palette.WIDTH["val"]  # and drawn thicker


@pytest.mark.parametrize("background", palette.BACKGROUNDS)
def test_a_rate_written_as_text_has_4_5_to_1(background):
    for i in range(101):
        color = palette.rate_color(i / 100)
        text = palette.text_color(color)
        assert palette.contrast(text, background) >= palette.MIN_TEXT_CONTRAST, (i, text)
        if all(palette.contrast(color, bg) >= 4.5 for bg in palette.BACKGROUNDS):
            assert text == color  # a shade only where the colour itself falls short
    assert palette.text_color(palette.rate_color(1.0)) != palette.rate_color(1.0)


def test_shades_keep_their_hue():
    assert palette.mix("#000000", "#ffffff", 0.5) == "#808080"
    assert palette.mix("#123456", "#ffffff", 0) == "#123456"
    r, g, b = palette._rgb(palette.dotted_color(palette.rate_color(0.9)))
    r0, g0, b0 = palette._rgb(palette.rate_color(0.9))
    assert r / max(1, g) == pytest.approx(r0 / g0, abs=0.1)  # darker, same proportions
    assert g / max(1, b) == pytest.approx(g0 / b0, abs=0.1)
