"""Typed errors carrying their HTTP status, and the one handler that renders them.

Handlers raise `AppError` subclasses; the handler answers JSON for the API and a small HTML page
for browsers (or an htmx fragment). Validation errors of the JSON API become 422 with one entry
per problem: `{"loc": [...], "field": "model.dropout", "msg": "..."}`.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import escape
from pydantic import BaseModel

from app.ml.config import clean_message, error_field

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    """Every refusal other than a validation error: a sentence saying why."""

    detail: str


def responses(*codes: int) -> dict[int, dict]:
    """OpenAPI entries for the refusals a route can answer."""
    text = {400: "Body not readable (not UTF-8 JSON)",
            403: "Not allowed (not the owner, not the presenter, room rules, another site)",
            404: "No such experiment",
            409: "Already ended", 413: "Body over the size limit",
            422: "An id or value out of range",
            429: "Busy: queue, rate or stream limit (see Retry-After)",
            503: "Database unavailable, or the server's streams are full (see Retry-After)"}
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}


class AppError(Exception):
    status = 400
    headers: dict[str, str] = {}

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class NotFound(AppError):
    status = 404


class Conflict(AppError):
    status = 409


class Forbidden(AppError):
    status = 403


class TooBusy(AppError):
    status = 429


class TooLarge(AppError):
    status = 413


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


async def app_error_handler(request: Request, exc: AppError) -> Response:
    if wants_json(request):
        return JSONResponse({"detail": exc.message}, exc.status, headers=exc.headers)
    body = f"<!doctype html><title>{exc.status}</title><p class='error'>{escape(exc.message)}</p>"
    return HTMLResponse(body, exc.status, headers=exc.headers)


def field_errors(errors: list[dict]) -> list[dict]:
    """FastAPI/pydantic errors -> [{"loc", "field", "type", "msg"}], one per field, the body
    prefix dropped (FastAPI's documented shape, plus the dotted `field`)."""
    out: dict[str, dict] = {}
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        field = error_field(loc, e.get("ctx"), e.get("type", "")).replace("config", "body", 1) \
            if loc or e.get("ctx") else "body"
        out.setdefault(field, {"loc": loc, "field": field, "type": e.get("type", "value_error"),
                               "msg": clean_message(e.get("msg", "invalid value"))})
    return list(out.values())


async def validation_error_handler(request: Request, exc: RequestValidationError) -> Response:
    return JSONResponse({"detail": field_errors(list(exc.errors()))}, 422)


async def database_error_handler(request: Request, exc: Exception) -> Response:
    """The database is locked or the disk is full: say so, keep nothing half-written (every
    write is one transaction, rolled back on error)."""
    return await app_error_handler(request, Unavailable(
        "the database is unavailable right now (locked or out of disk space); nothing was "
        "saved, try again shortly", headers={"Retry-After": "5"}))


async def damaged_database_handler(request: Request, exc: Exception) -> Response:
    """The database answered with an error other than locked or full: a damaged file, most
    likely. Say so with a 503 (not a 500 and a reset), and log it for the operator."""
    log.error("database error on %s %s: %s", request.method, request.url.path,
              str(exc).splitlines()[0][:300])
    return await app_error_handler(request, Unavailable(
        "the database could not be read (it may be damaged); nothing was saved. The "
        "operator has been told; try again later", headers={"Retry-After": "30"}))


class Unavailable(AppError):
    status = 503
