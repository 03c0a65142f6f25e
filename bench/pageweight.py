"""Benchmark: what a first visit costs a browser, and how soon it shows a chart.

Starts `python -m app serve` on a free port, trains one experiment for its share page, and
drives Debian's headless Chromium (Playwright, over the DevTools protocol) through:

1. a first visit of `/` (empty cache): bytes transferred per resource, DOMContentLoaded, the
   load event, then Train pressed at once and the time from navigation until the first chart
   holds data (Plotly must have loaded: deferring it must not hide a slow chart);
2. a first visit of a share page `/e/<id>`: bytes, and the time until its first chart is drawn
   with data (the stored epochs replayed over the event stream);
3. a repeat visit of both, in a new tab of the same browser (warm cache). The target is for
   `/`; a share page also replays its experiment's event stream, which is data, not a file.

Each runs unthrottled and at 10 Mbit/s with 40 ms latency (a workshop's wifi: Chromium's
network emulation). The baseline in the same run is the same first visit of `/` with
compression refused (`Accept-Encoding: identity`), as every file was sent before. Targets
(issue 16): first load of `/` <= 700 KB; first chart <= 2.5 s after navigation at 10 Mbit/s;
a repeat visit < 30 KB.

    python bench/pageweight.py [--runs 3] [--json bench/out/pageweight.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHARED = {"dataset": {"name": "moons", "n_train": 200}, "train": {"epochs": 60},
          "sweep": {"dropout": [0.0, 0.3, 0.6]}}
SLOW = {"latency": 40, "downloadThroughput": 10e6 / 8, "uploadThroughput": 10e6 / 8}
TARGETS = {"first_kb": 700, "chart_s": 2.5, "repeat_kb": 30}

# Runs before any page script (CDP, so the pages' CSP does not apply): records when a chart
# first holds data, as performance.now() (milliseconds since navigation started).
FIRST_CHART = """
(() => {
  const drawn = () => [...document.querySelectorAll("[data-chart]")].some((el) =>
    el.querySelector(".main-svg") && (el.data || []).some((t) => (t.x || t.z || []).length));
  const look = () => {
    if (drawn()) { window.__firstChart = performance.now(); return; }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
})();
"""


def start_server(data_dir: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DP_WORKERS": "1", "DP_THREADS_PER_WORKER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                             "--data-dir", data_dir], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).json()["workers_ready"]:
                return proc, url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not start")


class Visit:
    """One page load in one tab, with the DevTools protocol counting bytes per request."""

    def __init__(self, context, throttle: dict | None, identity: bool = False):
        self.page = context.new_page()
        self.page.add_init_script(FIRST_CHART)
        self.cdp = context.new_cdp_session(self.page)
        self.cdp.send("Network.enable")
        if throttle:
            self.cdp.send("Network.emulateNetworkConditions", {"offline": False, **throttle})
        if identity:
            self.cdp.send("Network.setExtraHTTPHeaders",
                          {"headers": {"Accept-Encoding": "identity"}})
        self.urls: dict[str, str] = {}
        self.bytes: dict[str, int] = {}
        self.cached: set[str] = set()
        self.cdp.on("Network.requestWillBeSent",
                    lambda e: self.urls.__setitem__(e["requestId"], e["request"]["url"]))
        self.cdp.on("Network.requestServedFromCache",
                    lambda e: self.cached.add(e["requestId"]))
        self.cdp.on("Network.dataReceived", self._data)
        self.cdp.on("Network.loadingFinished", self._finished)

    def _data(self, e: dict) -> None:  # streams (SSE) may not finish while we look
        rid = e["requestId"]
        self.bytes[rid] = self.bytes.get(rid, 0) + e["encodedDataLength"]

    def _finished(self, e: dict) -> None:
        self.bytes[e["requestId"]] = max(self.bytes.get(e["requestId"], 0),
                                         int(e["encodedDataLength"]))

    def timing(self) -> dict:
        t = self.page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
            return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd,
                    chart: window.__firstChart ?? null}; }""")
        return {k: (v / 1000 if v else None) for k, v in t.items()}

    def resources(self) -> list[tuple[str, int]]:
        out = []
        for rid, url in self.urls.items():
            path = urlsplit(url).path + (f"?{urlsplit(url).query}" if urlsplit(url).query else "")
            out.append((path, 0 if rid in self.cached else self.bytes.get(rid, 0)))
        return out

    def total(self, kind: str | None = None) -> int:
        return sum(b for path, b in self.resources() if kind is None or kind_of(path) == kind)

    def close(self) -> None:
        self.page.close()


def kind_of(path: str) -> str:
    """static (files under /static), data (the API: streams, points) or page (HTML)."""
    return "static" if path.startswith("/static/") else (
        "data" if path.startswith("/api/") else "page")


def wait_chart(page, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while page.evaluate("window.__firstChart ?? null") is None:
        if time.monotonic() > deadline:
            raise TimeoutError("no chart was drawn")
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    time.sleep(seconds)  # late requests (the recent list, htmx partials) get counted


def visit_playground(context, url: str, throttle, identity=False) -> tuple[Visit, dict]:
    v = Visit(context, throttle, identity)
    v.page.goto(url + "/", wait_until="load")
    loaded = v.total()  # the page itself, at its load event, before any experiment's data
    v.page.click("#train-button")
    wait_chart(v.page)
    settle()
    return v, {**v.timing(), "page_bytes": loaded}


def visit_share(context, url: str, exp_id: str, throttle) -> tuple[Visit, dict]:
    v = Visit(context, throttle)
    v.page.goto(f"{url}/e/{exp_id}", wait_until="load")
    wait_chart(v.page)
    settle()
    return v, v.timing()


def run_once(browser, url: str, exp_id: str, throttle) -> dict:
    out = {}
    # first visit of "/", then a repeat in a new tab of the same context (its warm cache)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    first, t = visit_playground(ctx, url, throttle)
    out["home"] = {"bytes": t.pop("page_bytes"), "with_run": first.total(),
                   "requests": len(first.resources()), **t,
                   "resources": sorted(first.resources(), key=lambda r: -r[1])}
    first.close()
    again = Visit(ctx, throttle)
    again.page.goto(url + "/", wait_until="load")
    settle()
    out["home_repeat"] = {"bytes": again.total(), "requests": len(again.resources()),
                          "resources": sorted(again.resources(), key=lambda r: -r[1])}
    again.close()
    ctx.close()
    # first visit of a share page, then a repeat
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    share, t = visit_share(ctx, url, exp_id, throttle)
    out["share"] = {"bytes": share.total(), "data": share.total("data"),
                    "requests": len(share.resources()), **t,
                    "resources": sorted(share.resources(), key=lambda r: -r[1])}
    share.close()
    again, t = visit_share(ctx, url, exp_id, throttle)
    out["share_repeat"] = {"bytes": again.total(), "static": again.total("static"),
                           "data": again.total("data"), "requests": len(again.resources()), **t}
    again.close()
    ctx.close()
    # baseline: the first visit of "/" with compression refused
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    plain, t = visit_playground(ctx, url, throttle, identity=True)
    out["home_identity"] = {"bytes": t.pop("page_bytes"), **t}
    plain.close()
    ctx.close()
    return out


def kb(n: float) -> str:
    return f"{n / 1000:,.1f} KB"


def report(name: str, runs: list[dict]) -> dict:
    med = lambda key, field: statistics.median(r[key][field] for r in runs)  # noqa: E731
    first = runs[0]
    print(f"\n== {name} ({len(runs)} runs, medians)")
    print(f"first visit of /: {kb(med('home', 'bytes'))} until loaded "
          f"({kb(med('home', 'with_run'))} with the first experiment's data, "
          f"{first['home']['requests']} requests); DOMContentLoaded {med('home', 'dcl'):.2f} s, "
          f"load {med('home', 'load'):.2f} s, first chart (Train pressed at load) "
          f"{med('home', 'chart'):.2f} s")
    for path, size in first["home"]["resources"][:12]:
        print(f"    {size / 1000:9.1f} KB  {path}")
    print(f"  baseline, compression refused: {kb(med('home_identity', 'bytes'))}: compressed is "
          f"{med('home', 'bytes') / med('home_identity', 'bytes'):.2f}x of it; first chart "
          f"{med('home_identity', 'chart'):.2f} s")
    print(f"share page: {kb(med('share', 'bytes'))} in {first['share']['requests']} requests "
          f"(of it the experiment's data: {kb(med('share', 'data'))}); DOMContentLoaded "
          f"{med('share', 'dcl'):.2f} s, first chart {med('share', 'chart'):.2f} s")
    print(f"repeat visit of /: {kb(med('home_repeat', 'bytes'))} "
          f"({first['home_repeat']['requests']} requests, static files from the cache)")
    for path, size in first["home_repeat"]["resources"]:
        if size:
            print(f"    {size / 1000:9.1f} KB  {path}")
    print(f"repeat visit of the share page: {kb(med('share_repeat', 'bytes'))} (static files "
          f"{kb(med('share_repeat', 'static'))}; the experiment's event stream and points, "
          f"replayed: {kb(med('share_repeat', 'data'))}), first chart "
          f"{med('share_repeat', 'chart'):.2f} s")
    summary = {
        "first_kb": med("home", "bytes") / 1000,
        "chart_s": max(med("home", "chart"), med("share", "chart")),
        "repeat_kb": med("home_repeat", "bytes") / 1000,
    }
    for key, value in summary.items():
        print(f"  {key}: {value:.2f} / target {TARGETS[key]}: {value / TARGETS[key]:.2f}x "
              f"({'met' if value <= TARGETS[key] else 'MISSED'})")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None, help="write every measurement here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as data:
        proc, url = start_server(data)
        try:
            exp_id = httpx.post(f"{url}/api/experiments", json=SHARED).json()["id"]
            while httpx.get(f"{url}/api/experiments/{exp_id}").json()["status"] != "done":
                time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-sync"])
                results = {}
                for name, throttle in (("unthrottled", None), ("10 Mbit/s, 40 ms", SLOW)):
                    runs = [run_once(browser, url, exp_id, throttle) for _ in range(args.runs)]
                    results[name] = {"summary": report(name, runs), "runs": runs}
                browser.close()
        finally:
            proc.terminate()
            proc.wait(20)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
