"""Fixtures for the web layer: an in-process app, a real uvicorn server, a real Chromium.

- `client`: FastAPI TestClient around create_app(settings) with its lifespan (so the worker
  pool really starts: one warm worker process). Module-scoped: starting torch costs ~2 s.
- `live_server`: `python -m app serve` in a subprocess on a free port with its own data dir,
  for end-to-end tests over real HTTP/SSE and for the browser tests. Session-scoped.
- `ray_cluster` (services.py) and `scaled_server` (with `postgres` from tests/conftest.py):
  the same server on PostgreSQL with training on a local two-node Ray cluster, for the
  scaled-out end-to-end tests.
- `browser`: Debian's Chromium driven by Playwright. Skipped when /usr/bin/chromium is missing,
  unless REQUIRE_BROWSER=1 (CI sets it), in which case it fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from services import RayCluster

from app.settings import Settings
from app.web.main import create_app

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll predicate() until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def finished(client, exp_id: str, timeout: float = 60.0) -> dict:
    """Poll the API until the experiment reaches a final status; returns its JSON."""
    def check():
        body = client.get(f"/api/experiments/{exp_id}").json()
        return body if body["status"] in ("done", "failed", "cancelled") else None
    return wait_until(check, timeout)


def parse_sse(text: str) -> list[dict]:
    """Parse a text/event-stream body into [{"id", "event", "data"}] (comments skipped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event: dict = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                event["data"] = event.get("data", "") + value
            else:
                event[key] = value
        if "event" in event or "data" in event:
            if "data" in event:
                event["data"] = json.loads(event["data"])
            events.append(event)
    return events


# Every in-process test client comes from one address ("testclient"), and a live server's
# from 127.0.0.1: the per-address limits out of the way, as the per-client ones (tests of
# those limits set their own).
ROOMY_ADDRESS = dict(max_queued_per_address=1000, create_per_minute_per_address=100_000,
                     rooms_per_hour_per_address=100_000, people_per_address=100_000)


def roomy_client(data_dir: Path) -> TestClient:
    """An in-process app with one warm worker and every per-client limit out of the way (use
    it as a context manager: that runs the lifespan)."""
    settings = Settings(data_dir=data_dir, workers=1, threads_per_worker=1, max_queued=100,
                        max_queued_per_client=100, create_per_minute=10_000, **ROOMY_ADDRESS)
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("data")
    # per-client limits out of the way here; tests of those limits build their own apps
    settings = Settings(data_dir=data, workers=1, threads_per_worker=1, max_queued=4,
                        max_queued_per_client=100, create_per_minute=10_000, **ROOMY_ADDRESS)
    with TestClient(create_app(settings)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, data_dir: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log = data_dir / "server.log"
        self.env = {**os.environ, "DP_WORKERS": "2", "DP_THREADS_PER_WORKER": "1",
                    "DP_MAX_QUEUED_PER_CLIENT": "100", "DP_CREATE_PER_MINUTE": "10000",
                    **{f"DP_{k.upper()}": str(v) for k, v in ROOMY_ADDRESS.items()}, **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(up, 30)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("live")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster(free_port()).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def scaled_server(tmp_path_factory, postgres, ray_cluster) -> Iterator[LiveServer]:
    """The scaled-out stack: state and live events in PostgreSQL, training on Ray."""
    server = LiveServer(tmp_path_factory.mktemp("scaled"), DP_DATABASE_URL=postgres.new_database(),
                        DP_EXECUTOR="ray", DP_RAY_ADDRESS=ray_cluster.address).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (own cookies) and page; console errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors
    yield page
    context.close()
    assert not [e for e in errors if "422" not in e and "429" not in e], errors


# -- helpers shared by test_api, test_pages and test_stream_e2e

FINAL = ("done", "failed", "cancelled")
TINY = {"dataset": {"n_train": 50}, "model": {"hidden": [16]}, "train": {"epochs": 3}}
LONG = {"dataset": {"n_train": 2000}, "train": {"epochs": 1000}}  # minutes of work: cancel it


def experiment_count(client) -> int:
    """Every experiment stored by the app behind an in-process client, whatever its status."""
    from app.store import STATUSES

    return client.app.state.store.count(*STATUSES)


def cancel_quietly(client, *exp_ids: str) -> None:
    """Cleanup: cancel experiments (queued ones first, so none of them starts), ignoring 409."""
    for exp_id in reversed(exp_ids):
        client.post(f"/api/experiments/{exp_id}/cancel")


def start_running(client, config: dict | None = None, min_epochs: int = 1,
                  timeout: float = 60.0) -> str:
    """POST a (long) experiment and wait until it runs and has stored `min_epochs` epochs."""
    res = client.post("/api/experiments", json=config or LONG)
    assert res.status_code == 201, res.text
    exp_id = res.json()["id"]

    def trained() -> bool:
        body = client.get(f"/api/experiments/{exp_id}").json()
        assert body["status"] in ("queued", "running"), body["status"]
        return body["progress"]["epochs_done"] >= min_epochs
    try:
        wait_until(trained, timeout)
    except BaseException:
        cancel_quietly(client, exp_id)
        raise
    return exp_id


def iter_sse(response: httpx.Response):
    """Events of a streaming httpx response as they arrive.

    Yields {"id", "event", "data"} for events (data parsed as JSON) and {"comment": text} for
    comment lines such as keep-alive pings, so a test can stop reading at any point.
    """
    event: dict = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in event or "event" in event:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            event[key] = event.get(key, "") + value if key == "data" else value


# -- helpers shared by test_rooms and test_workshop_pages: a small HTML tree to query


class Node:
    """An element of a parsed page: tag, attributes, children, parent and its text."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None = None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.content: list[str | Node] = []  # text and child elements, in document order

    @property
    def text(self) -> str:
        """All text inside, tags dropped and entities decoded, whitespace collapsed."""
        parts: list[str] = []

        def walk(node: Node) -> None:
            for item in node.content:
                if isinstance(item, str):
                    parts.append(item)
                else:
                    walk(item)
        walk(self)
        return " ".join(" ".join(parts).split())

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self):
        for child in self.children:
            yield child
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Node]:
        """Descendants with this tag and these attributes (data_chart= means data-chart=;
        class_= matches one class; True means the attribute is present)."""
        def matches(node: Node) -> bool:
            if tag is not None and node.tag != tag:
                return False
            for key, want in attrs.items():
                name = key.rstrip("_").replace("_", "-")
                if want is True:
                    if name not in node.attrs:
                        return False
                elif name == "class":
                    if want not in node.classes():
                        return False
                elif node.attrs.get(name) != want:
                    return False
            return True
        return [n for n in self.iter() if matches(n)]

    def find(self, tag: str | None = None, **attrs: str | bool) -> Node:
        """The first match; fails the test if there is none."""
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag or '*'} {attrs}> in the page"
        return found[0]

    def hidden(self) -> bool:
        """True if this element or one around it has the `hidden` attribute."""
        node: Node | None = self
        while node is not None:
            if "hidden" in node.attrs:
                return True
            node = node.parent
        return False


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


def html_tree(text: str) -> Node:
    """Parse an HTML page or fragment into Nodes (lenient: unmatched end tags are ignored)."""
    from html.parser import HTMLParser

    root = Node("#root", {})

    class Builder(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.stack = [root]

        def add(self, tag, attrs) -> Node:
            parent = self.stack[-1]
            node = Node(tag, {k: v or "" for k, v in attrs}, parent)
            parent.children.append(node)
            parent.content.append(node)
            return node

        def handle_starttag(self, tag, attrs):
            node = self.add(tag, attrs)
            if tag not in VOID:
                self.stack.append(node)

        def handle_startendtag(self, tag, attrs):
            self.add(tag, attrs)

        def handle_endtag(self, tag):
            for i in range(len(self.stack) - 1, 0, -1):
                if self.stack[i].tag == tag:
                    del self.stack[i:]
                    return

        def handle_data(self, data):
            self.stack[-1].content.append(data)

    Builder().feed(text)
    return root


def poll_js(page, script: str, arg=None, *, until=bool, timeout: float = 30.0):
    """Evaluate `script` in a Playwright page until `until(value)` holds; return that value.

    (page.wait_for_function would be simpler, but it evaluates with eval, which the app's
    Content-Security-Policy forbids.)"""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(script, arg)
        if until(value):
            return value
        page.wait_for_timeout(50)  # yields to Playwright's event loop between polls
    raise AssertionError(f"not met within {timeout}s; last value: {value!r}")
