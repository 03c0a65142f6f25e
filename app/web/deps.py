"""Dependencies as `Annotated` aliases, so handler signatures read like prose.

Everything comes from `app.state`, set up by `create_app(settings)`: nothing global. The
getters that only read `app.state` or the request are `async`: FastAPI runs a plain `def`
dependency on a worker thread, and a thousand event streams opening at once would queue
every page behind their thread hops.
A browser is known by an anonymous random client id in a cookie (no accounts), a script
without cookies by the same kind of id sent back in the X-Owner-Token header (the create
answer's `owner_token`): it owns the experiments it started (recent list, stop, rename,
delete) and is the unit of per-client limits. The network address (`AddressDep`) is the unit
of the per-address ones.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Annotated

from fastapi import Depends, Request

from app import rooms
from app.bus import Bus
from app.events import Broker
from app.executor import Executor
from app.settings import Settings
from app.store import ExperimentRow, RoomRow, Store
from app.web.errors import NotFound
from app.web.limits import AddressLimits, RateLimiter, refuse_rate

CLIENT_COOKIE = "dp_client"
OWNER_HEADER = b"x-owner-token"  # the client id for clients without cookies (scripts)
CLIENT_ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_executor(request: Request) -> Executor:
    return request.app.state.executor


async def get_broker(request: Request) -> Broker:
    return request.app.state.broker


async def get_bus(request: Request) -> Bus:
    return request.app.state.bus


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_limiter(request: Request) -> RateLimiter:
    return request.app.state.create_limiter


async def get_client(request: Request) -> str:
    """The hashed client id (the id itself, cookie or owner token, is never stored)."""
    return client_of(request)


def client_of(request: Request) -> str:
    return hashlib.sha256(owner_token(request).encode()).hexdigest()[:32]


def owner_token(request: Request) -> str:
    """The raw client id of this request (app.web.middleware.ClientCookie chose it): what a
    client without cookies sends back in the X-Owner-Token header to act as the owner of what
    it created."""
    return request.state.client_id


def new_client_id() -> str:
    return secrets.token_urlsafe(16)


def valid_client_id(value: str) -> bool:
    """A client id that can be one (URL-safe characters, 8 to 64 of them: new_client_id's have
    22); anything else in the cookie is replaced with a new one."""
    return 8 <= len(value) <= 64 and CLIENT_ID_CHARS.fullmatch(value) is not None


async def get_address(request: Request) -> str:
    """The client's network address, as the per-address limits count it (middleware)."""
    return request.state.address


async def get_address_limits(request: Request) -> AddressLimits:
    return request.app.state.address_limits


StoreDep = Annotated[Store, Depends(get_store)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
BusDep = Annotated[Bus, Depends(get_bus)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[str, Depends(get_client)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
AddressDep = Annotated[str, Depends(get_address)]
AddressLimitsDep = Annotated[AddressLimits, Depends(get_address_limits)]


def get_experiment(exp_id: str, store: StoreDep) -> ExperimentRow:
    row = store.get(exp_id) if len(exp_id) <= 32 else None
    if row is None:
        raise NotFound(f"no experiment with id {exp_id!r}")
    return row


ExperimentDep = Annotated[ExperimentRow, Depends(get_experiment)]


def get_room(code: str, store: StoreDep, request: Request) -> RoomRow:
    """A room by its code, in any case (codes are read aloud and typed)."""
    return look_up_room(request, store, code)


def look_up_room(request: Request, store: Store, code: str) -> RoomRow:
    """A room by its code, guarded against guessing: each unknown code costs the address a
    token (AddressLimits.misses); an address out of tokens gets a 429 for every code, known or
    not (so a hit tells nothing), except for rooms it belongs to (joined, or presenter)."""
    misses = request.app.state.address_limits.misses
    address = request.state.address
    room = store.get_room(code.strip().upper()) if len(code) <= 16 else None
    wait = misses.wait(address)
    if wait and not (room is not None and (
            is_presenter(request, room)
            or store.member(room.code, client_of(request)) is not None)):
        raise refuse_rate(misses, wait, "room codes looked up")
    if room is None:
        misses.take(address)
        raise NotFound(f"no room with code {code!r}")
    return room


RoomDep = Annotated[RoomRow, Depends(get_room)]
PRESENTER_COOKIE = "dp_presenter_"  # + the room's code without its dash


def is_presenter(request: Request, room: RoomRow) -> bool:
    """Holds the room's presenter secret: the X-Presenter-Key header, or the cookie the
    presenter link set."""
    key = request.headers.get("X-Presenter-Key") or request.cookies.get(
        PRESENTER_COOKIE + room.code.replace("-", ""))
    return bool(key) and secrets.compare_digest(rooms.hash_key(key), room.presenter_key)


def get_viewer(request: Request, room: RoomDep, client: ClientDep) -> rooms.Viewer:
    return rooms.Viewer(client, is_presenter(request, room))


ViewerDep = Annotated[rooms.Viewer, Depends(get_viewer)]
