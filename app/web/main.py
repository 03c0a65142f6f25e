"""The FastAPI application: `create_app(settings)` wires store, broker, executor and routes.

Nothing is built at import time. The lifespan starts the worker pool (processes importing
torch, ~2 s, in the background: the server answers at once, experiments wait in the queue) and
stops it on shutdown. Front-end libraries are served from installed packages, never a CDN:
Plotly's bundle from the plotly Python package, htmx from node_modules (npm).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError

from app import rooms
from app.bus import Bus, bus_for
from app.events import Broker
from app.executor import Executor
from app.jobs import LocalExecutor
from app.settings import Settings
from app.store import Store
from app.web import api, pages, stream
from app.web import rooms as room_pages
from app.web.errors import (
    AppError,
    app_error_handler,
    database_error_handler,
    validation_error_handler,
)
from app.web.limits import RateLimiter
from app.web.middleware import BodyLimit, ClientCookie, SecurityHeaders
from app.web.render import make_templates

ROOT = Path(__file__).resolve().parents[2]
VENDOR = {
    "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
    "htmx.min.js": ROOT / "node_modules" / "htmx.org" / "dist" / "htmx.min.js",
}


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
                  max_run_seconds=settings.max_run_seconds,
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
        store = await asyncio.to_thread(Store, settings.db_url)  # migrates: may take a moment
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
                  description="Train small networks with dropout and watch them learn.")
    app.state.settings = settings
    app.state.create_limiter = RateLimiter(settings.create_per_minute)
    app.state.templates = make_templates()
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(OperationalError, database_error_handler)
    app.include_router(api.router)
    app.include_router(stream.router)
    app.include_router(pages.router)
    app.include_router(room_pages.router)
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")

    @app.get("/vendor/{name}", include_in_schema=False)
    def vendor(name: str) -> FileResponse:
        """Front-end libraries from installed packages (see module docstring)."""
        path = VENDOR.get(name)
        if path is None or not path.exists():
            from app.web.errors import NotFound

            raise NotFound(f"{name} is not installed (run `make setup`)")
        return FileResponse(path, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        """Liveness, and how many training workers are warm (for deploys and benchmarks)."""
        executor = app.state.executor
        return {"ok": True, "workers": executor.workers, "workers_ready": executor.ready_workers(),
                "queued": executor.queue_length(), "runner": executor.runner,
                "executor": settings.executor}

    app.add_middleware(SecurityHeaders)
    app.add_middleware(ClientCookie)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
