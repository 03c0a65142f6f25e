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
from app.ml.scenarios import START
from app.rooms import Challenge, RoomSettings, RoomState
from app.store import RoomRow, Store
from app.web import forms, network
from app.web.deps import (
    PRESENTER_COOKIE,
    AddressDep,
    AddressLimitsDep,
    BusDep,
    ClientDep,
    LimiterDep,
    RoomDep,
    StoreDep,
    ViewerDep,
    is_presenter,
    look_up_room,
)
from app.web.errors import AppError, Conflict, Forbidden, NotFound, TooBusy, responses
from app.web.limits import refuse_rate
from app.web.render import render

router = APIRouter(tags=["rooms"], responses=responses(404, 429))  # 429: code guessing


def require_presenter(request: Request, room: RoomRow) -> None:
    if not is_presenter(request, room):
        raise Forbidden(f"only the presenter of this room can do that. If you are the "
                        "presenter, open the presenter link you kept when you created room "
                        f"{room.code} (its presenter page shows it again); to take part, join "
                        f"at /rooms/{room.code}")


def room_for_play(store: Store, code: str, client: str,
                  request: Request | None = None) -> tuple[RoomRow, RoomState, str]:
    """(room, state, display name) for a participant starting an experiment in a room; a 404
    or 403 with the reason otherwise (with `request`, the lookup counts against code
    guessing: app.web.deps.look_up_room)."""
    if request is not None:
        room = look_up_room(request, store, code)
    else:
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
def create_room(store: StoreDep, client: ClientDep, limiter: LimiterDep, address: AddressDep,
                address_limits: AddressLimitsDep,
                name: Annotated[str, Form(max_length=80)] = ""):
    """A new room; answers with the presenter link (it carries the presenter secret)."""
    wait = limiter.take(client)  # rooms share the per-browser creation rate
    if wait:
        raise TooBusy(f"too many new rooms and experiments: the limit is {limiter.per_minute} "
                      f"per minute; try again in {wait} s", headers={"Retry-After": str(wait)})
    if wait := address_limits.rooms.take(address):  # and a cookie costs nothing to drop
        raise refuse_rate(address_limits.rooms, wait, "new rooms")
    key = secrets.token_urlsafe(18)
    for _ in range(20):
        code = rooms.new_code()
        if store.create_room(code, name.strip(), rooms.hash_key(key), RoomState().model_dump()):
            break
    else:  # pragma: no cover - 887 million codes
        raise Conflict("could not find a free room code; try again")
    return RedirectResponse(f"/rooms/{code}/present?key={key}", status_code=303)


@router.get("/rooms/{code}/present", response_class=HTMLResponse, name="presenter_page",
            include_in_schema=False)
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
        values = forms.config_to_flat(state.challenge.model_dump(exclude_none=True))
    join = str(request.url_for("room_page", code=room.code))
    fields = forms.challenge_fields(values, errors)
    placed = {f.name for f in fields}
    return render(request, "room_present.html", {
        **_room_context(room, store, rooms.Viewer(presenter=True)), "join_url": join,
        "qr": _qr_svg(join), "presenter": True, "challenge_fields": fields,
        "form_errors": [f"{k}: {v}" for k, v in (errors or {}).items() if k not in placed],
        "lan_urls": network.lan_urls(request.url, join),
        "rankings": [(k, label) for k, (label, _, _) in rooms.RANKINGS.items()],
    }, status=status)


@router.get("/rooms/{code}/presenter-link", response_class=HTMLResponse, include_in_schema=False)
def presenter_link(request: Request, room: RoomDep, hide: bool = False):
    """The presenter's own link, for them to keep: presenter only, never cached."""
    require_presenter(request, room)
    if hide:
        return HTMLResponse(f'<button type="button" hx-get="/rooms/{room.code}/presenter-link" '
                            'hx-target="#presenter-link" hx-swap="innerHTML">Show presenter '
                            'link</button>', headers={"Cache-Control": "no-store"})
    key = request.cookies.get(PRESENTER_COOKIE + room.code.replace("-", "")) or \
        request.headers.get("X-Presenter-Key", "")
    url = f"{request.url_for('presenter_page', code=room.code)}?key={key}"
    return render(request, "partials/presenter_link.html", {"url": url, "code": room.code},
                  headers={"Cache-Control": "no-store"})


@router.get("/rooms/{code}", response_class=HTMLResponse, name="room_page", include_in_schema=False)
def room_page(request: Request, room: RoomDep, store: StoreDep, viewer: ViewerDep):
    """A participant's view: join with a name, then the controls, their run and the board.
    The room's changes reach it as events on its one stream and redraw parts in place."""
    member = store.member(room.code, viewer.client)
    context = {**_room_context(room, store, viewer), "member": member,
               "presenter": viewer.presenter}
    if member is None:
        return render(request, "room_join.html", context)
    return render(request, "room.html", {**context,
                                         **controls_context(room, request.query_params)})


@router.get("/rooms/{code}/controls", response_class=HTMLResponse, include_in_schema=False)
def room_controls(request: Request, room: RoomDep):
    """The participant's controls as the room's rules now stand, keeping the values the
    participant has typed (sent along): a challenge fills the data, a pause locks them."""
    return render(request, "partials/controls.html",
                  controls_context(room, request.query_params))


def controls_context(room: RoomRow, query, errors: dict | None = None) -> dict:
    """The controls of a room's participant: their values (`query`), with the challenge's
    data and network filled in and fixed, the budget applied, and the room's refusal (paused,
    closed) on the Train button."""
    state = rooms.state_of(room)
    items = query.multi_items() if hasattr(query, "multi_items") else query.items()
    params = {k: v for k, v in forms.form_params(items).items() if k != "room"}  # layer rows
    fixed: tuple[str, ...] = ()
    if state.challenge:  # show the challenge's data (and network) in the controls
        challenge = state.challenge
        params.update(forms.config_to_flat({"dataset": challenge.dataset.model_dump()}))
        fixed = ("dataset",)
        if challenge.hidden is not None:
            params["model.hidden"] = forms.to_text(challenge.hidden)
        if challenge.activation is not None:
            params["model.activation"] = challenge.activation
        try:  # within the budget, whatever the address bar carried before the challenge
            asked = int(params.get("train.epochs") or START.train.epochs)
        except ValueError:
            asked = START.train.epochs
        params["train.epochs"] = str(min(asked, challenge.epochs))
    return {"sections": forms.filled_sections(params, errors or {}), "form_errors": [],
            "room_code": room.code, "fixed_sections": fixed,
            "fixed_fields": _fixed_fields(state), "refused": rooms.refusal(state)}


def _fixed_fields(state: RoomState) -> tuple[str, ...]:
    challenge = state.challenge
    if challenge is None:
        return ()
    return tuple(name for name, value in (("model.hidden", challenge.hidden),
                                          ("model.activation", challenge.activation))
                 if value is not None)


@router.get("/rooms/{code}/banner", response_class=HTMLResponse, include_in_schema=False)
def room_banner(request: Request, room: RoomDep, store: StoreDep, viewer: ViewerDep):
    """The room's banner: its rules now (refreshed in place when they change)."""
    return render(request, "partials/room_banner.html", {
        "room": room, "state": rooms.state_of(room),
        "member": store.member(room.code, viewer.client)})


@router.post("/rooms/{code}/join", include_in_schema=False)
def join_room(room: RoomDep, store: StoreDep, client: ClientDep, bus: BusDep,
              address: AddressDep, address_limits: AddressLimitsDep,
              name: Annotated[str, Form(min_length=1, max_length=40)]):
    """Join with a display name (no account)."""
    if rooms.state_of(room).closed:
        raise Forbidden("this room is closed")
    if store.member(room.code, client) is None and (
            wait := address_limits.joins.take(address)):  # a rename costs nothing
        raise refuse_rate(address_limits.joins, wait, "people joining rooms")
    bus.publish(rooms.topic(room.code), store.join(room.code, client, name.strip() or "anonymous"))
    return RedirectResponse(f"/rooms/{room.code}", status_code=303)


@router.get("/rooms/{code}/board", response_class=HTMLResponse, include_in_schema=False)
def board_page(request: Request, room: RoomDep, store: StoreDep, viewer: ViewerDep):
    """The board alone, for the projector."""
    return render(request, "room_board.html", {**_room_context(room, store, viewer),
                                                "presenter": viewer.presenter})


@router.get("/rooms/{code}/leaderboard", response_class=HTMLResponse, include_in_schema=False)
def leaderboard_partial(request: Request, room: RoomDep, store: StoreDep, viewer: ViewerDep):
    """The leaderboard, drawn from what is stored (refreshed by the board as events arrive)."""
    return render(request, "partials/leaderboard.html", {
        **_room_context(room, store, viewer), "presenter": viewer.presenter})


# -- API --------------------------------------------------------------------------------------

@router.get("/api/rooms/{code}")
def room_json(room: RoomDep, store: StoreDep, viewer: ViewerDep) -> dict:
    """A room as this viewer may see it: state, members, experiments (run 0's validation
    curve and numbers: everyone's for the presenter and while the leaderboard is shown, else
    only one's own), the leaderboard and the U-curve. Someone who has not joined sees the
    room's state only: no members, no experiments."""
    return _for_outsiders(room, store, viewer, rooms.board_data(room, store, viewer))


def _for_outsiders(room: RoomRow, store: Store, viewer: rooms.Viewer, data: dict) -> dict:
    """The room's JSON without its people and their experiments, for a viewer who is neither
    a member nor the presenter (the code alone must not list everyone's experiments)."""
    if viewer.presenter or (viewer.client and store.member(room.code, viewer.client)):
        return {**data, "member": True}
    hidden = {"members": [], "experiments": [], "leaderboard": []}
    if isinstance(data.get("ucurve"), dict):
        hidden["ucurve"] = {**data["ucurve"], "points": [], "means": []}
    return {**data, **hidden, "member": False}


@router.get("/api/rooms/{code}/ucurve")
def room_ucurve(room: RoomDep, store: StoreDep, viewer: ViewerDep) -> dict:
    """The room's U-curve: each finished experiment's hidden dropout rate against the
    presenter's metric, and the room's mean ± sample std per rate."""
    data = _for_outsiders(room, store, viewer, rooms.board_data(room, store, viewer))
    return {**data["ucurve"], "everyone": data["everyone"]}


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
           "hide": {"leaderboard": False}, "close": {"closed": True},
           "reveal-test": {"reveal_test": True}, "hide-test": {"reveal_test": False}}


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
    elif action == "rank":
        try:
            change = RoomSettings(rank_by=form.get("rank_by"))
        except ValidationError as e:
            raise AppError(f"rank by one of {', '.join(rooms.RANKINGS)}") from e
    elif action in ACTIONS:
        change = RoomSettings(**ACTIONS[action])
    else:
        raise AppError(f"no presenter action {action!r}: one of challenge, "
                       f"{', '.join(ACTIONS)}")
    room_settings(request, room, store, bus, change)
    return RedirectResponse(f"/rooms/{room.code}/present", status_code=303)


# -- helpers ----------------------------------------------------------------------------------

def _room_context(room: RoomRow, store: Store, viewer: rooms.Viewer) -> dict:
    return {"room": room, "state": rooms.state_of(room),
            "board": rooms.board_data(room, store, viewer)}


def _qr_svg(url: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=12)
    buf = io.BytesIO()
    image.save(buf)
    svg = buf.getvalue().decode()
    return svg[svg.index("<svg"):]  # drop the XML declaration: it is inlined in the page
