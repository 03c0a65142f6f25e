"""The colours of every chart, in one place: the server hands them to the page as data.

Each colour means one thing:
- a dropout rate p: one sequential scale over 0 <= p <= 1 (viridis, cut where its colours
  get too light to read on the page), the same colour for the same rate on every page, with a
  labelled colour bar (`rate_bar`). Where rates and splits show together, the rate is the
  colour and the split the line style (`DASH`: validation solid, training dashed, the
  mini-batch loss with dropout on dotted); a sweep over weight decay marks its values with
  symbols (`DECAY_SYMBOLS`), not colours;
- a class: a palette of its own (`CLASS_COLORS`, orange and magenta: no rate has them);
- experiments on the compare page are told apart by letters and marker symbols, not colours;
- everything else (single runs' dots, the best setting's star, counts) is neutral grey.
Every line colour has at least 3:1 contrast against the page backgrounds (`contrast`,
tested), as WCAG asks of graphics. A dotted line shows as much background as ink, and its short
dots blur into it, so it is drawn thicker and in a darker shade of its colour (`dotted_color`:
3:1 even half diluted by the background); a rate written as text wears `text_color`, a shade
with the 4.5:1 that text needs.
"""

from __future__ import annotations

# static/style.css: --panel (charts sit on it) and --bg (the page around the panels)
BACKGROUNDS = ("#ffffff", "#f7f8fa")
MIN_CONTRAST = 3.0

# viridis (as plotly.colors samples it) from 0 to 0.55 of its range, at p = 0, 0.1, ..., 1:
# beyond 0.55 its greens and yellows fall below 3:1 on the page
RATE_STOPS = ["#440154", "#461466", "#482878", "#433880", "#3e4889", "#38588b", "#31678e",
              "#2c748e", "#26818e", "#238f8c", "#1f9d89"]
RATE_LABEL = "dropout rate p"

DASH = {"val": "solid", "train": "dash", "dropout": "dot"}
WIDTH = {"val": 2, "train": 2, "dropout": 3}  # px: dots thicker, so they read as a line
DOT_INK = 0.5  # share of a dotted line's length that is ink (Plotly's "dot": 3 px on, 3 off)
MIN_TEXT_CONTRAST = 4.5  # WCAG AA for text
SPLIT_LEGEND = {"val": "validation", "train": "train (eval mode)",
                "dropout": "train mini-batch, dropout on"}
DECAY_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "cross", "star-triangle-up",
                 "hexagon"]

EXPERIMENT_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "cross",
                      "triangle-down", "star"]  # experiments A, B, ... on the compare page

CLASS_COLORS = ["#b35806", "#c51b7d"]  # class 0, class 1 (decision surface, its points)
SURFACE_MID = "#f7f7f7"  # p(class 1) = 0.5 on the decision surface

NEUTRAL = "#4d4d4d"  # lines that are no rate: the sweep chart's line, the star's outline
RUN_DOTS = "rgba(80,80,80,0.45)"  # single runs on the sweep chart
POINTS = "rgba(40,40,40,0.6)"  # training points under the prediction curve
COUNTS = ["#f7f7f7", "#4d4d4d"]  # the confusion matrix's counts, light to dark

DROPPED = "#e6e6e6"  # a dropped unit of the thinned network (fill); outline below
DROPPED_LINE = "#8a8a8a"
INPUT_UNIT = "#555555"  # a kept input unit
EDGE = "#9fb3c8"  # a connection between two kept units


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(c + 0.5):02x}" for c in rgb)  # rounded half up


def mix(a: str, b: str, t: float) -> str:
    """a blended with b, t of b (0: a, 1: b), channel by channel as the screen blends them."""
    return _hex(x + t * (y - x) for x, y in zip(_rgb(a), _rgb(b), strict=True))


def _shade(color: str, ok) -> str:
    """The lightest shade of `color` towards black (in steps of 2 %) for which ok(shade)."""
    for step in range(51):
        shade = mix(color, "#000000", step / 50)
        if ok(shade):
            return shade
    return "#000000"


def dotted_color(color: str) -> str:
    """The shade of a line colour a dotted line is drawn in: 3:1 on both backgrounds even as
    seen half diluted by the background between its dots (DOT_INK)."""
    return _shade(color, lambda c: all(
        contrast(mix(c, bg, 1 - DOT_INK), bg) >= MIN_CONTRAST for bg in BACKGROUNDS))


def text_color(color: str) -> str:
    """The shade of a colour for text written in it (a rate's label): 4.5:1 on both
    backgrounds."""
    return _shade(color, lambda c: all(contrast(c, bg) >= MIN_TEXT_CONTRAST
                                       for bg in BACKGROUNDS))


def rate_color(p: float) -> str:
    """The colour of dropout rate p (0 <= p <= 1), as #rrggbb, interpolated between stops."""
    t = min(1.0, max(0.0, float(p))) * (len(RATE_STOPS) - 1)
    lo = min(int(t), len(RATE_STOPS) - 2)
    f = t - lo
    a, b = _rgb(RATE_STOPS[lo]), _rgb(RATE_STOPS[lo + 1])
    return _hex(x + f * (y - x) for x, y in zip(a, b, strict=True))


def rate_value(dropout: float | list[float]) -> float:
    """The one rate a setting is coloured by: its rate, or the mean of its per-layer rates."""
    if isinstance(dropout, list):
        return sum(dropout) / len(dropout) if dropout else 0.0
    return float(dropout)


def rate_bar(marks: list[tuple[float, str]], width: int = 320) -> dict:
    """The colour bar beside the charts: the scale from p = 0 to 1 with ticks, and a mark at
    each rate shown ((rate, label) pairs) in its colour. x positions are in SVG user units."""
    def x(p: float) -> float:
        return round(p * width, 1)

    return {"width": width, "title": RATE_LABEL,
            "stops": [{"offset": f"{100 * i / (len(RATE_STOPS) - 1):g}%", "color": c}
                      for i, c in enumerate(RATE_STOPS)],
            "ticks": [{"x": x(p), "label": f"{p:g}"} for p in (0, 0.25, 0.5, 0.75, 1)],
            "marks": [{"x": x(min(max(p, 0.0), 1.0)), "p": p, "label": label,
                       "color": rate_color(p)}
                      for p, label in marks]}


def luminance(color: str) -> float:
    """WCAG relative luminance of #rrggbb."""
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours, 1 to 21."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def line_colors() -> dict[str, str]:
    """Every colour a chart draws a line (or a class's points) in, by what it means; the
    rate scale is sampled every 0.01 (the tests hold each to MIN_CONTRAST)."""
    out = {f"p = {i / 100:g}": rate_color(i / 100) for i in range(101)}
    out.update({f"class {i}": c for i, c in enumerate(CLASS_COLORS)})
    out["neutral"] = NEUTRAL
    return out
