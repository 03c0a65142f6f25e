"""Dependencies as `Annotated` aliases, so handler signatures read like prose.

Everything comes from `app.state`, set up by `create_app(settings)`: nothing global.
A browser is known by an anonymous random client id in a cookie (no accounts): it owns the
experiments it started (recent list, rename) and is the unit of per-client limits.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends, Request

from app.bus import Bus
from app.events import Broker
from app.executor import Executor
from app.settings import Settings
from app.store import ExperimentRow, RoomRow, Store
from app.web.errors import NotFound
from app.web.limits import RateLimiter

CLIENT_COOKIE = "dp_client"


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_executor(request: Request) -> Executor:
    return request.app.state.executor


def get_broker(request: Request) -> Broker:
    return request.app.state.broker


def get_bus(request: Request) -> Bus:
    return request.app.state.bus


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_limiter(request: Request) -> RateLimiter:
    return request.app.state.create_limiter


def get_client(request: Request) -> str:
    """The hashed client id (the cookie itself is never stored)."""
    raw = request.cookies.get(CLIENT_COOKIE) or request.state.new_client
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def new_client_id() -> str:
    return secrets.token_urlsafe(16)


StoreDep = Annotated[Store, Depends(get_store)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
BusDep = Annotated[Bus, Depends(get_bus)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[str, Depends(get_client)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]


def get_experiment(exp_id: str, store: StoreDep) -> ExperimentRow:
    row = store.get(exp_id) if len(exp_id) <= 32 else None
    if row is None:
        raise NotFound(f"no experiment with id {exp_id!r}")
    return row


ExperimentDep = Annotated[ExperimentRow, Depends(get_experiment)]


def get_room(code: str, store: StoreDep) -> RoomRow:
    """A room by its code, in any case (codes are read aloud and typed)."""
    room = store.get_room(code.upper()) if len(code) <= 16 else None
    if room is None:
        raise NotFound(f"no room with code {code!r}")
    return room


RoomDep = Annotated[RoomRow, Depends(get_room)]
