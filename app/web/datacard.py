"""The data card and the dataset pictures: what the playground draws before anything trains.

`card(params)` turns the form's dataset fields into what templates/partials/data.html draws
as an inline SVG: the points of a 2-D set (training filled, validation hollow) in the classes'
colours, the sine curve with its points, a strip of digit images, or the PCA projection of a
table, all from app.ml.preview (the numbers) and app.web.palette (the colours). The SVG is in
the page's HTML, so the data is drawn with the page, no script needed; a text alternative says
what is drawn. `pictures()` gives the small thumbnail of every dataset for the dataset picker,
built once per process (`warm` builds them ahead, off the request path).

Coordinates are mapped here to SVG user units (the template only loops), rounded to 0.1.
"""

from __future__ import annotations

import base64
import functools
import struct
import zlib
from collections.abc import Mapping

from markupsafe import Markup, escape
from pydantic import ValidationError

from app.ml.config import DatasetConfig, describe_errors
from app.ml.datasets import CATALOG
from app.ml.preview import preview
from app.ml.scenarios import START
from app.web import palette

WIDTH, HEIGHT = 480, 300  # the card's plot, in SVG user units (it scales with the card)
PAD = 6  # inner margin of the plot frame
MAX_TRAIN_DRAWN = 800  # training points drawn at most (evenly spaced: the same ones each time)
THUMB_W, THUMB_H, THUMB_POINTS = 64, 44, 70  # a dataset picture and its training points
MARKERS = ("circle", "square", "triangle")  # a class's marker shape (more than 2 classes)
IMAGES_PER_ROW = 10  # digits: sample images per row of the strip


# -- colours --------------------------------------------------------------------------------

def class_color(c: int) -> str:
    """A class's colour from the palette; classes beyond it are neutral (and get a marker
    shape of their own)."""
    colors = palette.CLASS_COLORS
    return colors[c] if 0 <= c < len(colors) else palette.NEUTRAL


def class_marker(c: int, n_classes: int) -> str:
    return "circle" if n_classes <= len(palette.CLASS_COLORS) else MARKERS[c % len(MARKERS)]


# -- the card -------------------------------------------------------------------------------

def dataset_config(params: Mapping[str, str]) -> tuple[DatasetConfig | None, str | None]:
    """The dataset fields of a form (dotted keys, over START's dataset) -> (config, None), or
    (None, "field: message") when they are not valid."""
    data = START.dataset.model_dump()
    for key in DatasetConfig.model_fields:
        raw = (params.get(f"dataset.{key}") or "").strip()
        if raw:
            data[key] = raw
    try:
        return DatasetConfig.model_validate(data), None
    except ValidationError as e:
        problem = describe_errors(e)[0]
        field = problem["field"]
        return None, f"{field if field.startswith('dataset.') else 'dataset.' + field}: " \
                     f"{problem['message']}"


def card(params: Mapping[str, str]) -> dict:
    """What partials/data.html draws for the dataset fields in `params`."""
    cfg, error = dataset_config(params)
    if cfg is None:
        return {"error": error, "query": _query(params)}
    return {**drawing(preview(cfg)), "query": _query(params), "error": None}


def _query(params: Mapping[str, str]) -> str:
    """The dataset part of the form, as the card was drawn from (controls.js compares it)."""
    from urllib.parse import urlencode

    return urlencode({f"dataset.{k}": (params.get(f"dataset.{k}") or "").strip()
                      for k in DatasetConfig.model_fields})


def drawing(p: dict) -> dict:
    """A preview (app.ml.preview) as SVG shapes in a WIDTH x HEIGHT box, with its legend and
    text alternative."""
    kind, n_classes = p["kind"], p["n_classes"]
    out = {"kind": kind, "title": p["title"], "axes": p["axes"], "width": WIDTH,
           "height": HEIGHT, "note": _note(p), "train": [], "val": [], "curve": "",
           "images": [], "legend": [], "projection": kind == "projection"}
    train_rows = _spaced(len(p["train"]["x"]), MAX_TRAIN_DRAWN)
    if kind == "images":
        out["images"] = _image_strip(p["images"])
        rows = -(-len(out["images"]) // IMAGES_PER_ROW)
        out["height"] = round(rows * (WIDTH / IMAGES_PER_ROW + 18), 1)
        out["alt"] = _alt_images(p)
        return out
    sx, sy = _scales(p["extent"], WIDTH, HEIGHT, PAD)
    regression = n_classes == 1
    for split, rows in (("train", train_rows), ("val", range(len(p["val"]["x"])))):
        xs, ys = p[split]["x"], p[split]["y"]
        out[split] = [{"x": sx(xs[i][0]), "y": sy(xs[i][1]),
                       "c": 0 if regression else int(ys[i])} for i in rows]
    if kind == "curve":
        c = p["curve"]
        out["curve"] = " ".join(f"{sx(x)},{sy(y)}" for x, y in zip(c["x"], c["y"], strict=True))
    classes = [0] if regression else list(range(n_classes))
    for c in classes:
        out["legend"].append({
            "label": "training point" if regression else f"class {c}",
            "color": palette.NEUTRAL if regression else class_color(c),
            "marker": class_marker(c, n_classes),
            "n_train": sum(1 for pt in out["train"] if pt["c"] == c)})
    out["colors"] = {c: (palette.NEUTRAL if regression else class_color(c)) for c in classes}
    out["markers"] = {c: class_marker(c, n_classes) for c in classes}
    out["alt"] = _alt_points(p, out, len(train_rows))
    return out


def _note(p: dict) -> str:
    """The preview's note; for digits, drawn as images only, without the sentences about
    their projection (the card does not draw it: ten classes have no colours of their own)."""
    if p["kind"] != "images":
        return p["note"]
    sentences = [s.strip().rstrip(".") for s in p["note"].split(". ") if s.strip()]
    return " ".join(s + "." for s in sentences if "projection" not in s)


def _spaced(n: int, most: int) -> list[int]:
    """At most `most` of range(n), evenly spaced."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def _scales(extent: list[float], width: float, height: float, pad: float):
    """Data -> SVG coordinates for the extent [x0, x1, y0, y1] (y grows upwards)."""
    x0, x1, y0, y1 = extent
    dx, dy = (x1 - x0) or 1.0, (y1 - y0) or 1.0

    def sx(v: float) -> float:
        return round(pad + (v - x0) / dx * (width - 2 * pad), 1)

    def sy(v: float) -> float:
        return round(height - pad - (v - y0) / dy * (height - 2 * pad), 1)

    return sx, sy


def _alt_points(p: dict, out: dict, n_drawn: int) -> str:
    n_train, n_val = len(p["train"]["x"]), len(p["val"]["x"])
    what = {"points": "Scatter plot", "curve": "The noise-free curve y = sin(2x) and a "
            "scatter plot", "projection": "Scatter plot of a PCA projection"}[p["kind"]]
    drawn = f"{n_drawn} of {n_train}" if n_drawn < n_train else f"{n_train}"
    text = (f"{what} of {p['title']}: {drawn} training points (filled) and {n_val} "
            f"validation points (hollow), axes {p['axes'][0]} and {p['axes'][1]}.")
    if p["n_classes"] > 1:
        parts = [f"{item['label']} ({item['n_train']} training points)"
                 for item in out["legend"]]
        text += f" {p['n_classes']} classes by colour: " + ", ".join(parts) + "."
    return text


def _alt_images(p: dict) -> str:
    labels = ", ".join(str(im["label"]) for im in p["images"])
    return (f"{len(p['images'])} training images of {p['title']}, 8 by 8 pixels each, "
            f"labelled {labels}.")


# -- digit images: tiny PNGs (data: URLs, which the page's CSP allows for images) ----------

def png_gray(pixels: list[float], size: int = 8) -> str:
    """A size x size grayscale PNG (ink dark on white) as a data: URL."""
    rows = b"".join(b"\x00" + bytes(255 - round(255 * min(max(v, 0.0), 1.0))
                                    for v in pixels[r * size:(r + 1) * size])
                    for r in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0,
                                                              0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _image_strip(images: list[dict], per_row: int = IMAGES_PER_ROW) -> list[dict]:
    """The sample images laid out in rows of `per_row`, each with its label under it."""
    cell = WIDTH / per_row
    side = cell - 8
    return [{"x": round((i % per_row) * cell + 4, 1), "y": round((i // per_row) * (cell + 18), 1),
             "size": round(side, 1), "href": png_gray(im["pixels"]), "label": im["label"]}
            for i, im in enumerate(images)]


# -- dataset pictures (the picker's thumbnails) ---------------------------------------------

@functools.lru_cache(maxsize=1)
def pictures() -> list[dict]:
    """Every dataset as the picker shows it: name, description, most training examples and a
    small SVG (aria-hidden: the name says which). Built once per process."""
    return [{"value": name, "text": name.replace("_", " "), "description": info.description,
             "max_train": info.max_train, "svg": thumbnail(name)}
            for name, info in CATALOG.items()]


def warm() -> None:
    """Build the pictures now (the real tables load scikit-learn, ~1.5 s once): for a thread
    at start-up, so no visitor waits for them."""
    pictures()


def thumbnail(name: str) -> Markup:
    """A THUMB_W x THUMB_H SVG of the dataset at START's setup (at most its largest size):
    dots drawn as zero-length round-capped strokes, one path per class."""
    info = CATALOG[name]
    cfg = DatasetConfig(name=name, n_train=min(START.dataset.n_train, info.max_train),
                        noise=START.dataset.noise)
    p = preview(cfg)
    head = (f'<svg class="thumb" viewBox="0 0 {THUMB_W} {THUMB_H}" width="{THUMB_W}" '
            f'height="{THUMB_H}" aria-hidden="true" focusable="false">')
    if p["kind"] == "images":
        side = THUMB_H - 12
        tiles = [im for im in p["images"][::2]][:3]  # one of each of the first classes
        body = "".join(f'<image x="{2 + i * (side - 8)}" y="6" width="{side - 10}" '
                       f'height="{side - 10}" href="{png_gray(im["pixels"])}"/>'
                       for i, im in enumerate(tiles))
        return Markup(head + body + "</svg>")
    sx, sy = _scales(p["extent"], THUMB_W, THUMB_H, 3)
    rows = _spaced(len(p["train"]["x"]), THUMB_POINTS)
    xs, ys = p["train"]["x"], p["train"]["y"]
    body = ""
    if p["kind"] == "curve":
        c = p["curve"]
        line = " ".join(f"{sx(x):.0f},{sy(y):.0f}" for x, y in zip(c["x"][::4], c["y"][::4],
                                                                    strict=True))
        body += (f'<polyline points="{line}" fill="none" stroke="{palette.NEUTRAL}" '
                 'stroke-width="1.5"/>')
        groups = {0: rows}
    else:
        groups = {}
        for i in rows:
            groups.setdefault(int(ys[i]), []).append(i)
    for c, members in sorted(groups.items()):
        color = palette.NEUTRAL if p["n_classes"] == 1 else class_color(c)
        d = "".join(f"M{sx(xs[i][0]):.0f} {sy(xs[i][1]):.0f}h0" for i in members)
        body += (f'<path d="{d}" stroke="{escape(color)}" stroke-width="3.2" '
                 'stroke-linecap="round"/>')
    return Markup(head + body + "</svg>")
