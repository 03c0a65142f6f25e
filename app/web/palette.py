"""The colours of every chart, in one place: the server hands them to the page as data.

Okabe-Ito colours (safe for colour-blind readers) for a single run's curves and for up to eight
settings of a sweep; more settings than that get evenly spaced stops of viridis instead, so
neighbouring rates stay distinguishable and read as an ordered scale.
"""

from __future__ import annotations

# A single run's curves: train is always blue, validation vermillion.
CURVE_COLORS = {"train": "#0072B2", "val": "#D55E00", "dropout": "#56B4E9", "gap": "#009E73"}

SETTING_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                  "#000000", "#8C7A00"]

VIRIDIS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]

DROPPED = "#e6e6e6"  # a dropped unit of the thinned network (fill); outline below
DROPPED_LINE = "#8a8a8a"
INPUT_UNIT = "#555555"  # a kept input unit
EDGE = "#9fb3c8"  # a connection between two kept units


def color_at(i: int, n: int) -> str:
    """The colour of setting i of n, as #rrggbb."""
    if n <= len(SETTING_COLORS):
        return SETTING_COLORS[i]
    t = i / (n - 1) * (len(VIRIDIS) - 1)
    lo = int(t)
    hi = min(lo + 1, len(VIRIDIS) - 1)
    f = t - lo
    # rounded half up, as the page script did (Math.round), not half to even
    rgb = [int(a + f * (b - a) + 0.5) for a, b in zip(VIRIDIS[lo], VIRIDIS[hi], strict=True)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def colors(n: int) -> list[str]:
    """The colours of n settings, in order."""
    return [color_at(i, n) for i in range(n)]
