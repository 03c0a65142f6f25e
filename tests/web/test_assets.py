"""Static files (app/web/assets.py) and response compression, in-process: hashed URLs that are
immutable, encodings the browser accepts, modules that import hashed modules, the vendored
libraries as the lockfile says, /docs and /redoc under their own policy, and gzip for HTML and
JSON but never for event streams."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import time
from pathlib import Path

import brotli
import pytest
from conftest import TINY, finished

from app.web import assets as assets_module
from app.web.assets import IMMUTABLE, Assets, hashed_name, pick_encoding

ROOT = Path(__file__).resolve().parents[2]
HASHED = re.compile(r"^/static/.+\.[0-9a-f]{10}(\.\w+)?$")


@pytest.fixture(scope="module")
def shared(client) -> dict:
    """A finished experiment, for its share page."""
    exp = client.post("/api/experiments", json=TINY).json()
    body = finished(client, exp["id"])
    assert body["status"] == "done", body.get("error")
    return body


def page_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def test_pages_link_only_hashed_static_urls(client, shared):
    for url in ("/", f"/e/{shared['id']}", "/scenarios", "/docs", "/redoc"):
        links = page_assets(client.get(url).text)
        assert links, url
        assert all(HASHED.match(link) for link in links), (url, links)


def test_hashed_urls_are_immutable_and_encoded_as_the_browser_accepts(client):
    url = client.app.state.assets.url("vendor/plotly-cartesian.min.js")
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
    assert plain.headers["vary"] == "Accept-Encoding"
    body = plain.content
    # httpx decodes gzip (and brotli, when the brotli package is there) by itself: read raw
    for accept, encoding, decode in (("gzip, deflate, br", "br", brotli.decompress),
                                     ("gzip", "gzip", gzip.decompress)):
        with client.stream("GET", url, headers={"Accept-Encoding": accept}) as res:
            raw = b"".join(res.iter_raw())
            assert res.headers["content-encoding"] == encoding
            assert int(res.headers["content-length"]) == len(raw) < len(body) / 2
        assert decode(raw) == body
    assert b"plotly.js (cartesian - minified) v4" in body[:200]


def test_the_plain_url_revalidates_and_a_stale_hash_is_gone(client):
    assets = client.app.state.assets
    res = client.get("/static/style.css")
    assert res.status_code == 200 and res.headers["cache-control"] == "no-cache"
    again = client.get("/static/style.css", headers={"If-None-Match": res.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    stale = hashed_name("style.css", "0123456789")
    assert assets.url("style.css") != f"/static/{stale}"
    assert client.get(f"/static/{stale}").status_code == 404
    assert client.head(assets.url("style.css")).status_code == 200
    with pytest.raises(KeyError):
        assets.url("nope.js")


def test_modules_import_hashed_modules_that_exist(client):
    assets = client.app.state.assets
    main = client.get(assets.url("js/main.js")).text
    imports = re.findall(r'from "(\./[^"]+)"', main)
    assert imports and all(re.fullmatch(r"\./\w+\.[0-9a-f]{10}\.js", i) for i in imports)
    for spec in imports:
        assert client.get(f"/static/js/{spec[2:]}").status_code == 200
    preloads = set(assets.preload("js/main.js"))
    assert {f"/static/js/{i[2:]}" for i in imports} <= preloads
    assert all(HASHED.match(u) for u in preloads)


def write_modules(root: Path, plot_body: str) -> None:
    (root / "js").mkdir(parents=True, exist_ok=True)
    (root / "js" / "main.js").write_text('import { draw } from "./plot.js";\ndraw();\n')
    (root / "js" / "plot.js").write_text(plot_body)


def test_a_changed_dependency_changes_the_url_of_every_module_above_it(tmp_path):
    write_modules(tmp_path, "export function draw() { return 1; }\n")
    before = Assets(tmp_path)
    main_before, plot_before = before.url("js/main.js"), before.url("js/plot.js")
    time.sleep(0.01)
    write_modules(tmp_path, "export function draw() { return 2; }\n")
    after = Assets(tmp_path)
    assert after.url("js/plot.js") != plot_before
    assert after.url("js/main.js") != main_before  # main.js itself did not change
    body = after.snapshot().by_path["js/main.js"].body.decode()
    assert f'from "./{after.url("js/plot.js").rsplit("/", 1)[1]}"' in body


def test_every_import_form_is_rewritten_and_comments_are_left_alone(tmp_path):
    write_modules(tmp_path, "export function draw() {}\nexport const x = 1;\n")
    (tmp_path / "js" / "main.js").write_text(
        '// modules import each other by relative URL ("./gone.js"), from "./gone.js"\n'
        'import {\n  draw,\n  x,\n} from "./plot.js";\n'
        'import "./plot.js";\nexport { x as y } from "./plot.js";\n'
        'const later = () => import("./plot.js");\n')
    assets = Assets(tmp_path)
    plot = assets.url("js/plot.js").rsplit("/", 1)[1]
    body = assets.snapshot().by_path["js/main.js"].body.decode()
    assert body.count(f'"./{plot}"') == 4 and body.count('"./gone.js"') == 2


def test_an_import_cycle_or_a_missing_module_is_refused_at_start(tmp_path):
    write_modules(tmp_path, 'import "./main.js";\nexport function draw() {}\n')
    with pytest.raises(ValueError, match="cycle"):
        Assets(tmp_path)
    write_modules(tmp_path, 'import { x } from "./gone.js";\nexport function draw() {}\n')
    with pytest.raises(ValueError, match="gone.js"):
        Assets(tmp_path)


def test_a_stale_precompressed_twin_is_never_served(tmp_path, caplog):
    lib = tmp_path / "vendor" / "lib.js"
    lib.parent.mkdir()
    lib.write_text("var version = 2;\n" * 100)
    (tmp_path / "vendor" / "lib.js.gz").write_bytes(gzip.compress(b"var version = 1;\n" * 100))
    res = Assets(tmp_path).respond("vendor/lib.js", "gzip", None)
    assert gzip.decompress(res.body) == lib.read_bytes()
    assert "does not decode" in caplog.text


@pytest.mark.parametrize(("header", "expected"),
                         [("gzip, deflate, br", "br"), ("gzip", "gzip"), ("br;q=0, gzip", "gzip"),
                          ("identity", None), ("", None), ("*", "br"), ("gzip;q=0", None)])
def test_pick_encoding(header, expected):
    assert pick_encoding(header, {"br": b"", "gzip": b""}) == expected


def test_vendored_libraries_match_the_lockfile():
    spec = importlib.util.spec_from_file_location("vendor_assets",
                                                  ROOT / "scripts" / "vendor_assets.py")
    vendor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vendor)
    assert vendor.check() == []
    manifest = json.loads((ROOT / "static" / "vendor" / "vendor.json").read_text())
    assert set(manifest["packages"]) == set(json.loads((ROOT / "package.json").read_text())
                                             ["dependencies"])


def test_html_and_json_are_compressed(client, shared):
    for url in ("/", f"/e/{shared['id']}", f"/api/experiments/{shared['id']}", "/openapi.json"):
        with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as res:
            raw = b"".join(res.iter_raw())
        assert res.headers["content-encoding"] == "gzip", url
        assert json.loads(gzip.decompress(raw)) if "json" in res.headers["content-type"] \
            else gzip.decompress(raw).startswith(b"<!doctype html>")


def test_event_streams_are_never_compressed(client, shared):
    with client.stream("GET", f"/api/experiments/{shared['id']}/events",
                       headers={"Accept-Encoding": "gzip, br"}) as res:
        raw = b"".join(res.iter_raw())
    assert res.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in res.headers
    assert b"event: done" in raw


def test_api_docs_are_served_from_the_app_under_their_own_policy(client):
    default = client.get("/").headers["content-security-policy"]
    assert "worker-src" not in default
    for url, bundle in (("/docs", "vendor/swagger-ui/swagger-ui-bundle.js"),
                        ("/redoc", "vendor/redoc/redoc.standalone.js")):
        res = client.get(url)
        assert res.status_code == 200
        policy = res.headers["content-security-policy"]
        assert policy.startswith(default) and "worker-src 'self' blob:" in policy
        assert "script-src 'self';" in policy  # still no inline script, no other host
        assert client.app.state.assets.url(bundle) in res.text
        assert "cdn" not in res.text.lower() and "<script>" not in res.text


def test_the_plotly_python_package_is_not_needed():
    assert "plotly" not in (ROOT / "pyproject.toml").read_text().split("[project.optional")[0]
    sources = [p.read_text() for p in (ROOT / "app").rglob("*.py")]
    assert not any(re.search(r"^\s*(import|from) plotly", s, re.M) for s in sources)


def test_assets_load_once_per_process(tmp_path):
    write_modules(tmp_path, "export function draw() {}\n")
    first = Assets(tmp_path)
    assert Assets(tmp_path).snapshot() is first.snapshot()  # one build for both apps
    assert assets_module._build.cache_info().hits >= 1
