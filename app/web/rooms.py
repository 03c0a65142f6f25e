"""Workshop rooms over HTTP: the pages, the presenter's actions and the room's JSON.

The rules live in app.rooms; this router checks who asks, applies them and renders. Only the
holder of the presenter secret (a header, or the cookie the presenter link sets) may change a
room; anyone else gets a 403 that says so. Every change is logged in the room's event log and
published, so boards and pages following the room's stream (app.web.stream) see it live.
"""

from __future__ import annotations

import io
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from app import rooms
from app.ml.config import describe_errors
from app.rooms import Challenge, RoomSettings, RoomState
from app.store import RoomRow, Store
from app.web import forms
from app.web.deps import BusDep, ClientDep, LimiterDep, RoomDep, StoreDep
from app.web.errors import AppError, Conflict, Forbidden, NotFound, TooBusy, responses
from app.web.render import render

router = APIRouter(tags=["rooms"], responses=responses(404))
PRESENTER_COOKIE = "dp_presenter_"


def is_presenter(request: Request, room: RoomRow) -> bool:
    key = request.headers.get("X-Presenter-Key") or request.cookies.get(
        PRESENTER_COOKIE + room.code.replace("-", ""))
    return bool(key) and secrets.compare_digest(rooms.hash_key(key), room.presenter_key)


def require_presenter(request: Request, room: RoomRow) -> None:
    if not is_presenter(request, room):
        raise Forbidden("only the presenter of this room can do that (open the presenter link "
                        "you got when you created the room)")


def room_for_play(store: Store, code: str, client: str) -> tuple[RoomRow, RoomState, str]:
    """(room, state, display name) for a participant starting an experiment in a room; a 404
    or 403 with the reason otherwise."""
    room = store.get_room(code.strip().upper())
    if room is None:
        raise NotFound(f"no room with code {code!r}")
    member = store.member(room.code, client)
    if member is None:
        raise Forbidden("join the room with a display name first")
    state = rooms.state_of(room)
    if reason := rooms.refusal(state):
        raise Forbidden(reason)
    return room, state, member.name


# -- pages ------------------------------------------------------------------------------------

@router.get("/rooms/new", response_class=HTMLResponse, include_in_schema=False)
def new_room_page(request: Request):
    """Create a workshop room."""
    return render(request, "room_new.html", {})


@router.post("/rooms", include_in_schema=False)
def create_room(store: StoreDep, client: ClientDep, limiter: LimiterDep,
                name: Annotated[str, Form(max_length=80)] = ""):
    """A new room; answers with the presenter link (it carries the presenter secret)."""
    wait = limiter.take(client)  # rooms share the per-browser creation rate
    if wait:
        raise TooBusy(f"too many new rooms and experiments: the limit is {limiter.per_minute} "
                      f"per minute; try again in {wait} s", headers={"Retry-After": str(wait)})
    key = secrets.token_urlsafe(18)
    for _ in range(20):
        code = rooms.new_code()
        if store.create_room(code, name.strip(), rooms.hash_key(key), RoomState().model_dump()):
            break
    else:  # pragma: no cover - 887 million codes
        raise Conflict("could not find a free room code; try again")
    return RedirectResponse(f"/rooms/{code}/present?key={key}", status_code=303)


@router.get("/rooms/{code}/present", response_class=HTMLResponse, include_in_schema=False)
def presenter_page(request: Request, room: RoomDep, store: StoreDep, key: str = ""):
    """The presenter's view: code, QR, join link, controls, and the board."""
    if key:  # the secret link: keep the key in a cookie, then drop it from the address bar
        if not secrets.compare_digest(rooms.hash_key(key), room.presenter_key):
            raise Forbidden("this presenter link is not valid for this room")
        response = RedirectResponse(f"/rooms/{room.code}/present", status_code=303)
        response.set_cookie(PRESENTER_COOKIE + room.code.replace("-", ""), key,
                            httponly=True, samesite="lax", max_age=7 * 86400)
        return response
    require_presenter(request, room)
    return _presenter_page(request, room, store)


def _presenter_page(request: Request, room: RoomRow, store: Store, values: dict | None = None,
                    errors: dict | None = None, status: int = 200):
    state = rooms.state_of(room)
    if values is None and state.challenge is not None:
        values = forms.config_to_flat(state.challenge.model_dump())
    join = str(request.url_for("room_page", code=room.code))
    fields = forms.challenge_fields(values, errors)
    placed = {f.name for f in fields}
    return render(request, "room_present.html", {
        **_room_context(room, store, presenter=True), "join_url": join, "qr": _qr_svg(join),
        "presenter": True, "challenge_fields": fields,
        "form_errors": [f"{k}: {v}" for k, v in (errors or {}).items() if k not in placed],
    }, status=status)


@router.get("/rooms/{code}", response_class=HTMLResponse, name="room_page", include_in_schema=False)
def room_page(request: Request, room: RoomDep, store: StoreDep, client: ClientDep):
    """A participant's view: join with a name, then the controls and the live board."""
    member = store.member(room.code, client)
    presenter = is_presenter(request, room)
    context = {**_room_context(room, store, presenter), "member": member,
               "presenter": presenter}
    if member is None:
        return render(request, "room_join.html", context)
    state = context["state"]
    params = dict(request.query_params)
    if state.challenge:  # show the challenge's data in the controls
        params.update(forms.config_to_flat({"dataset": state.challenge.dataset.model_dump()}))
        try:  # within the budget, whatever the address bar carried before the challenge
            asked = int(params.get("train.epochs") or 100)
        except ValueError:
            asked = 100
        params["train.epochs"] = str(min(asked, state.challenge.epochs))
    return render(request, "room.html", {
        **context, "sections": forms.filled_sections(params, {}), "form_errors": [],
    })


@router.post("/rooms/{code}/join", include_in_schema=False)
def join_room(room: RoomDep, store: StoreDep, client: ClientDep, bus: BusDep,
              name: Annotated[str, Form(min_length=1, max_length=40)]):
    """Join with a display name (no account)."""
    if rooms.state_of(room).closed:
        raise Forbidden("this room is closed")
    bus.publish(rooms.topic(room.code), store.join(room.code, client, name.strip() or "anonymous"))
    return RedirectResponse(f"/rooms/{room.code}", status_code=303)


@router.get("/rooms/{code}/board", response_class=HTMLResponse, include_in_schema=False)
def board_page(request: Request, room: RoomDep, store: StoreDep):
    """The board alone, for the projector."""
    presenter = is_presenter(request, room)
    return render(request, "room_board.html", {**_room_context(room, store, presenter),
                                                "presenter": presenter})


@router.get("/rooms/{code}/leaderboard", response_class=HTMLResponse, include_in_schema=False)
def leaderboard_partial(request: Request, room: RoomDep, store: StoreDep):
    """The leaderboard, drawn from what is stored (refreshed by the board as events arrive)."""
    presenter = is_presenter(request, room)
    return render(request, "partials/leaderboard.html", {
        **_room_context(room, store, presenter), "presenter": presenter})


# -- API --------------------------------------------------------------------------------------

@router.get("/api/rooms/{code}")
def room_json(request: Request, room: RoomDep, store: StoreDep) -> dict:
    """A room: its state, members and every experiment with its validation curve (run 0)."""
    return rooms.board_data(room, store, presenter=is_presenter(request, room))


@router.post("/api/rooms/{code}/settings", responses=responses(400, 403))
def room_settings(request: Request, room: RoomDep, store: StoreDep, bus: BusDep,
                  change: RoomSettings) -> dict:
    """Presenter only: set or clear the challenge, lock/open controls, show/hide the
    leaderboard, close the room."""
    require_presenter(request, room)
    state = change.applied_to(rooms.state_of(room))
    bus.publish(rooms.topic(room.code), store.set_room_state(room.code, state.model_dump()))
    return {"code": room.code, "state": state.model_dump()}


ACTIONS = {"clear": {"clear_challenge": True}, "lock": {"locked": True},
           "open": {"locked": False}, "show": {"leaderboard": True},
           "hide": {"leaderboard": False}, "close": {"closed": True}}


@router.post("/rooms/{code}/settings", response_class=HTMLResponse, include_in_schema=False)
async def room_settings_form(request: Request, room: RoomDep, store: StoreDep, bus: BusDep):
    """The presenter page's form (the same rules as the API)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    action = form.get("action", "")
    if action == "challenge":
        require_presenter(request, room)
        try:
            change = RoomSettings(challenge=Challenge.model_validate(forms.parse_challenge(form)))
        except ValidationError as e:
            errors = {d["field"]: d["message"] for d in describe_errors(e)}
            return _presenter_page(request, room, store, form, errors, status=422)
    elif action in ACTIONS:
        change = RoomSettings(**ACTIONS[action])
    else:
        raise AppError(f"no presenter action {action!r}: one of challenge, "
                       f"{', '.join(ACTIONS)}")
    room_settings(request, room, store, bus, change)
    return RedirectResponse(f"/rooms/{room.code}/present", status_code=303)


# -- helpers ----------------------------------------------------------------------------------

def _room_context(room: RoomRow, store: Store, presenter: bool = False) -> dict:
    return {"room": room, "state": rooms.state_of(room),
            "board": rooms.board_data(room, store, presenter)}


def _qr_svg(url: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=12)
    buf = io.BytesIO()
    image.save(buf)
    svg = buf.getvalue().decode()
    return svg[svg.index("<svg"):]  # drop the XML declaration: it is inlined in the page
