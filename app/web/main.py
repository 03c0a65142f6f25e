"""The FastAPI application: `create_app(settings)` wires store, broker, executor and routes.

Nothing is built at import time. The lifespan starts the worker pool (processes importing
torch, ~2 s, in the background: the server answers at once, experiments wait in the queue) and
stops it on shutdown. Static files, the front-end libraries vendored from npm among them, are
package data served under content-hashed URLs (app/web/assets.py): never a CDN, never Node at
run time. /docs and /redoc are Swagger UI and ReDoc from those files, under a policy of their
own.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import DatabaseError, OperationalError

from app import rooms
from app.bus import Bus, bus_for
from app.events import Broker
from app.executor import Executor
from app.jobs import LocalExecutor
from app.settings import Settings
from app.store import Store, open_store
from app.web import api, health, pages, stream
from app.web import rooms as room_pages
from app.web.assets import PREFIX, Assets
from app.web.errors import (
    AppError,
    app_error_handler,
    damaged_database_handler,
    database_error_handler,
    validation_error_handler,
)
from app.web.limits import AddressLimits, RateLimiter, StreamCaps
from app.web.middleware import (
    DOCS_CSP,
    BodyLimit,
    ClientAddress,
    ClientCookie,
    Compression,
    SameOrigin,
    SecurityHeaders,
)
from app.web.render import make_templates


def _publisher(bus: Bus):
    """What the executor calls (from its thread) with an experiment's new events: they go to
    the experiment's streams and, for an experiment in a workshop room, to the room's
    (app.rooms.room_copies: the store has already logged them there)."""

    def publish(exp_id: str, events) -> None:
        mine = [e for e in events if e.seq]  # (a room's own events have no place here)
        if mine:
            bus.publish(exp_id, mine)
        room_topic, copies = rooms.room_copies(exp_id, events)
        if room_topic:
            bus.publish(room_topic, copies)

    return publish


def _executor(settings: Settings, store: Store, publish) -> Executor:
    """The local worker pool, or the Ray executor (imported only then: Ray is optional)."""
    limits = dict(max_queued=settings.max_queued, max_per_client=settings.max_queued_per_client,
                  max_per_address=settings.max_queued_per_address,
                  max_run_seconds=settings.max_run_seconds,
                  stop_grace_seconds=settings.stop_grace_seconds,
                  runner_timeout=settings.runner_timeout_seconds)
    if settings.executor == "ray":
        try:
            from app.ray_executor import RayExecutor
        except ImportError as e:
            raise RuntimeError(f"DP_EXECUTOR=ray needs Ray: pip install '.[ray]' ({e})") from e

        # how many experiments at once is set from the cluster in start()
        return RayExecutor(store, publish, address=settings.ray_address,
                           cpus_per_experiment=settings.ray_cpus_per_experiment,
                           max_running=settings.ray_max_running, **limits)
    return LocalExecutor(store, publish, settings.workers, settings.torch_threads, **limits)


def _control(app: FastAPI, message: dict) -> None:
    """A message from another server process (app.bus): stop an experiment if it is ours."""
    executor = getattr(app.state, "executor", None)
    if executor is not None and "cancel" in message:
        executor.cancel(message["cancel"])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = await asyncio.to_thread(  # migrates; checks, unless `serve` just did
            open_store, settings.db_url, not getattr(app.state, "database_checked", False))
        broker = Broker(asyncio.get_running_loop())
        bus = bus_for(store, settings.db_url, broker, on_control=lambda m: _control(app, m))
        await asyncio.to_thread(bus.start)
        executor = _executor(settings, store, _publisher(bus))
        app.state.store, app.state.broker, app.state.bus = store, broker, bus
        await asyncio.to_thread(executor.start)
        app.state.executor = executor
        try:
            yield
        finally:
            await asyncio.to_thread(executor.stop)
            bus.stop()
            store.close()

    app = FastAPI(title="Dropout Playground", version="0.1.0", lifespan=lifespan,
                  description="Train small networks with dropout and watch them learn.",
                  docs_url=None, redoc_url=None)  # FastAPI's would load them from a CDN
    app.state.settings = settings
    app.state.create_limiter = RateLimiter(settings.create_per_minute)
    app.state.address_limits = AddressLimits.from_settings(settings)
    app.state.stream_caps = StreamCaps(settings.max_streams, settings.max_streams_per_address)
    app.state.assets = assets = Assets()
    app.state.templates = make_templates(assets)
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(OperationalError, database_error_handler)
    app.add_exception_handler(DatabaseError, damaged_database_handler)
    app.include_router(api.router)
    app.include_router(stream.router)
    app.include_router(pages.router)
    app.include_router(room_pages.router)
    app.include_router(health.router)

    @app.api_route(PREFIX + "/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def static(path: str, request: Request) -> Response:
        """A static file: hashed URLs are immutable, plain ones revalidate (app/web/assets)."""
        return assets.respond(path, request.headers.get("accept-encoding", ""),
                              request.headers.get("if-none-match"))

    def api_docs(request: Request, kind: str, bundle: str) -> HTMLResponse:
        page = app.state.templates.TemplateResponse(
            request, "api_docs.html",
            {"kind": kind, "bundle": bundle, "title": f"{app.title} API",
             "openapi_url": app.openapi_url})
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        """The API's operations, to read and try (Swagger UI, vendored from npm)."""
        return api_docs(request, "swagger", "vendor/swagger-ui/swagger-ui-bundle.js")

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        """The API reference as one page (ReDoc, vendored from npm)."""
        return api_docs(request, "redoc", "vendor/redoc/redoc.standalone.js")

    app.add_middleware(SecurityHeaders)
    app.add_middleware(Compression)
    app.add_middleware(ClientCookie)
    app.add_middleware(ClientAddress, proxies=settings.proxy_networks)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SameOrigin, allowed=settings.extra_origins)
    return app
