"""Jinja2 templates and the one helper that renders them.

`render` decides nothing about fragments itself: every route passes the template it answers,
a page or a partial from templates/partials/ named after the element it replaces. Kept apart
from the routers so that any of them can render without importing another (no cycles).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.web.assets import Assets, package_dir

TEMPLATES = package_dir("templates")  # the wheel's package data, or the checkout's folder


def make_templates(assets: Assets | None = None) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["tojson_attr"] = lambda v: json.dumps(v, separators=(",", ":"))
    templates.env.globals["fmt"] = fmt
    assets = assets or Assets()
    # {{ asset("js/main.js") }}: the file's content-hashed URL (app/web/assets.py)
    templates.env.globals["asset"] = assets.url
    templates.env.globals["preload"] = assets.preload
    return templates


def fmt(v: Any, digits: int = 4) -> str:
    """A number as a table shows it: 4 significant digits, an en dash for none."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def render(request: Request, template: str, context: dict, status: int = 200,
           headers: dict | None = None) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(
        request, template, context, status_code=status, headers=headers
    )
