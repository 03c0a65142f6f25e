"""/docs and /redoc in headless Chromium: Swagger UI and ReDoc, vendored from npm, list every
operation of the API with no console error (the `page` fixture fails a test on one), load
nothing from another host, and stay inside the app's Content-Security-Policy."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser
TIMEOUT_MS = 30_000


def operations(base: str) -> set[tuple[str, str]]:
    import httpx

    spec = httpx.get(f"{base}/openapi.json", timeout=10).json()
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_swagger_ui_lists_every_operation(page: Page, live_server):
    base = live_server.url
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{base}/docs")
    expected = operations(base)
    blocks = page.locator(".opblock-summary")
    expect(blocks).to_have_count(len(expected), timeout=TIMEOUT_MS)
    shown = set()
    for i in range(blocks.count()):
        block = blocks.nth(i)
        method = block.locator(".opblock-summary-method").inner_text().strip()
        path = block.locator(".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path))
    assert shown == expected
    assert [u for u in requests if urlsplit(u).netloc != urlsplit(base).netloc] == []


def test_redoc_lists_every_operation(page: Page, live_server):
    base = live_server.url
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{base}/redoc")
    expected = operations(base)
    sections = page.locator("[data-section-id^='operation/']")
    expect(sections).to_have_count(len(expected), timeout=TIMEOUT_MS)
    assert [u for u in requests if not u.startswith(("data:", "blob:"))
            and urlsplit(u).netloc != urlsplit(base).netloc] == []


def test_the_top_bar_api_link_opens_the_docs(page: Page, live_server):
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="API").click()
    expect(page.locator(".opblock-summary").first).to_be_visible(timeout=TIMEOUT_MS)
