"""Workshop rooms: a presenter, a room of participants, and a live board.

A presenter creates a room and gets a short human code (K7Q-2MX), a join link with its QR
code, and a secret presenter link. Participants join with only a display name; experiments
they start in the room are tagged with it. The board (leaderboard + everyone's validation
curves) updates live: the executor's events for room experiments are also published on the
room's topic (`room:<code>`). Only the holder of the presenter secret can set a challenge
(fixed data and epoch budget), lock the controls, show or hide the leaderboard, or close the
room; anyone else gets a 403 that says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field, ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.ml.config import MAX_EPOCHS, DatasetConfig, ExperimentConfig, describe_errors
from app.ml.summary import primary_metric
from app.store import FINAL_STATUSES, Event, RoomRow, Store
from app.web import experiments, forms
from app.web.deps import BrokerDep, BusDep, ClientDep, LimiterDep, SettingsDep, StoreDep
from app.web.errors import Conflict, Forbidden, NotFound, TooBusy, responses

router = APIRouter(tags=["rooms"], responses=responses(404))
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: easy to read aloud
PRESENTER_COOKIE = "dp_presenter_"


class Challenge(BaseModel):
    """What the presenter fixes; participants choose the network and the dropout."""

    dataset: DatasetConfig = Field(
        default_factory=lambda: DatasetConfig(name="moons", n_train=100, noise=0.3),
        description="The data everyone trains on (every dataset field; unnamed ones default).")
    epochs: int = Field(200, ge=1, le=MAX_EPOCHS, description="Epoch budget per experiment.")


class RoomState(BaseModel):
    challenge: Challenge | None = None
    locked: bool = False  # participants may not start experiments
    leaderboard: bool = True  # participants see the leaderboard
    closed: bool = False


def new_code() -> str:
    pick = "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
    return f"{pick[:3]}-{pick[3:]}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def state_of(room: RoomRow) -> RoomState:
    return RoomState.model_validate_json(room.state)


def get_room(code: str, store: StoreDep) -> RoomRow:
    room = store.get_room(code.upper()) if len(code) <= 16 else None
    if room is None:
        raise NotFound(f"no room with code {code!r}")
    return room


RoomDep = Annotated[RoomRow, Depends(get_room)]


def is_presenter(request: Request, room: RoomRow) -> bool:
    key = request.headers.get("X-Presenter-Key") or request.cookies.get(
        PRESENTER_COOKIE + room.code.replace("-", ""))
    return bool(key) and secrets.compare_digest(hash_key(key), room.presenter_key)


def require_presenter(request: Request, room: RoomRow) -> None:
    if not is_presenter(request, room):
        raise Forbidden("only the presenter of this room can do that (open the presenter link "
                        "you got when you created the room)")


def apply_challenge(config: ExperimentConfig, state: RoomState) -> ExperimentConfig:
    """The room's rules on a participant's config: the challenge's data replaces theirs, and
    more epochs than the budget are refused (a 422 on train.epochs)."""
    if state.challenge is None:
        return config
    raw = config.model_dump(mode="json")
    raw["dataset"] = state.challenge.dataset.model_dump()  # the same data for everyone
    if raw["train"]["epochs"] > state.challenge.epochs:
        from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

        error = PydanticCustomError(
            "limit", "the room's challenge allows at most {budget} epochs",
            {"budget": state.challenge.epochs, "field": "train.epochs"})
        raise ValidationError.from_exception_data("ExperimentConfig", [InitErrorDetails(
            type=error, loc=("train", "epochs"), input=raw["train"]["epochs"])])
    return ExperimentConfig.model_validate(raw)


def check_open(state: RoomState) -> None:
    if state.closed:
        raise Forbidden("this room is closed: the workshop is over (experiments stay viewable)")
    if state.locked:
        raise Forbidden("the presenter has paused the room: wait until they open the controls")


# -- pages ------------------------------------------------------------------------------------

@router.get("/rooms/new", response_class=HTMLResponse, include_in_schema=False)
def new_room_page(request: Request):
    """Create a workshop room."""
    from app.web.pages import render

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
        code = new_code()
        if store.create_room(code, name.strip(), hash_key(key), RoomState().model_dump()):
            break
    else:  # pragma: no cover - 887 million codes
        raise Conflict("could not find a free room code; try again")
    return RedirectResponse(f"/rooms/{code}/present?key={key}", status_code=303)


@router.get("/rooms/{code}/present", response_class=HTMLResponse, include_in_schema=False)
def presenter_page(request: Request, room: RoomDep, store: StoreDep, key: str = ""):
    """The presenter's view: code, QR, join link, controls, and the board."""

    if key:  # the secret link: keep the key in a cookie, then drop it from the address bar
        if not secrets.compare_digest(hash_key(key), room.presenter_key):
            raise Forbidden("this presenter link is not valid for this room")
        response = RedirectResponse(f"/rooms/{room.code}/present", status_code=303)
        response.set_cookie(PRESENTER_COOKIE + room.code.replace("-", ""), key,
                            httponly=True, samesite="lax", max_age=7 * 86400)
        return response
    require_presenter(request, room)
    return _presenter_page(request, room, store)


def _presenter_page(request: Request, room: RoomRow, store: Store, error: str = "",
                    status: int = 200):
    from app.web.pages import render

    join = str(request.url_for("room_page", code=room.code))
    return render(request, "room_present.html", {
        **_room_context(room, store, presenter=True), "join_url": join, "qr": _qr_svg(join),
        "presenter": True, "datasets": forms.blank_sections()[0].fields[0].options,
        "form_error": error,
    }, status=status)


@router.get("/rooms/{code}", response_class=HTMLResponse, name="room_page", include_in_schema=False)
def room_page(request: Request, room: RoomDep, store: StoreDep, client: ClientDep):
    """A participant's view: join with a name, then the controls and the live board."""
    from app.web.pages import render

    member = store.member(room.code, client)
    presenter = is_presenter(request, room)
    context = {**_room_context(room, store, presenter), "member": member,
               "presenter": presenter}
    if member is None:
        return render(request, "room_join.html", context)
    state = context["state"]
    params = dict(request.query_params)
    if state.challenge:  # show the challenge's data in the controls
        for key, value in state.challenge.dataset.model_dump().items():
            params[f"dataset.{key}"] = forms.to_text(value)
        try:  # within the budget, whatever the address bar carried before the challenge
            asked = int(params.get("train.epochs") or 100)
        except ValueError:
            asked = 100
        params["train.epochs"] = str(min(asked, state.challenge.epochs))
    return render(request, "room.html", {
        **context, "sections": forms.filled_sections(params, {}), "form_errors": [],
    })


@router.post("/rooms/{code}/join", include_in_schema=False)
def join_room(room: RoomDep, store: StoreDep, client: ClientDep,
              name: Annotated[str, Form(min_length=1, max_length=40)]):
    """Join with a display name (no account)."""
    if state_of(room).closed:
        raise Forbidden("this room is closed")
    store.join(room.code, client, name.strip() or "anonymous")
    return RedirectResponse(f"/rooms/{room.code}", status_code=303)


@router.get("/rooms/{code}/board", response_class=HTMLResponse, include_in_schema=False)
def board_page(request: Request, room: RoomDep, store: StoreDep):
    """The board alone, for the projector."""
    from app.web.pages import render

    presenter = is_presenter(request, room)
    return render(request, "room_board.html", {**_room_context(room, store, presenter),
                                                "presenter": presenter})


@router.get("/rooms/{code}/leaderboard", response_class=HTMLResponse, include_in_schema=False)
def leaderboard_partial(request: Request, room: RoomDep, store: StoreDep):
    """The leaderboard, drawn from what is stored (refreshed by the board as events arrive)."""
    from app.web.pages import render

    presenter = is_presenter(request, room)
    return render(request, "partials/leaderboard.html", {
        **_room_context(room, store, presenter), "presenter": presenter})


# -- API --------------------------------------------------------------------------------------

class RoomSettings(BaseModel):
    """Presenter actions; fields left out stay as they are."""

    challenge: Challenge | None = None
    clear_challenge: bool = False
    locked: bool | None = None
    leaderboard: bool | None = None
    closed: bool | None = None


@router.get("/api/rooms/{code}")
def room_json(request: Request, room: RoomDep, store: StoreDep) -> dict:
    """A room: its state, members and every experiment with its validation curve (run 0)."""
    return board_data(room, store, presenter=is_presenter(request, room))


@router.post("/api/rooms/{code}/settings", responses=responses(400, 403))
def room_settings(request: Request, room: RoomDep, store: StoreDep, bus: BusDep,
                  change: RoomSettings) -> dict:
    """Presenter only: set or clear the challenge, lock/open controls, show/hide the
    leaderboard, close the room."""
    require_presenter(request, room)
    state = state_of(room)
    if change.challenge is not None:  # validated on the way in (422 if bad)
        state.challenge = change.challenge
    if change.clear_challenge:
        state.challenge = None
    for key in ("locked", "leaderboard", "closed"):
        if getattr(change, key) is not None:
            setattr(state, key, getattr(change, key))
    store.set_room_state(room.code, state.model_dump())
    bus.publish(f"room:{room.code}", [Event(0, "room", json.dumps(state.model_dump()))])
    return {"code": room.code, "state": state.model_dump()}


@router.post("/rooms/{code}/settings", response_class=HTMLResponse, include_in_schema=False)
async def room_settings_form(request: Request, room: RoomDep, store: StoreDep, bus: BusDep):
    """The presenter page's form (the same rules as the API)."""
    form = await request.form()
    change = RoomSettings()
    action = form.get("action")
    if action == "challenge":
        try:
            dataset = DatasetConfig(name=form.get("dataset.name", "moons"),
                                    n_train=form.get("dataset.n_train") or 100,
                                    noise=form.get("dataset.noise") or 0.3)
            change.challenge = Challenge(dataset=dataset, epochs=form.get("epochs") or 200)
        except ValidationError as e:
            require_presenter(request, room)
            problems = "; ".join(f"{d['field']}: {d['message']}" for d in describe_errors(e))
            return _presenter_page(request, room, store, error=problems, status=422)
    elif action == "clear":
        change.clear_challenge = True
    elif action in ("lock", "open"):
        change.locked = action == "lock"
    elif action in ("show", "hide"):
        change.leaderboard = action == "show"
    elif action == "close":
        change.closed = True
    room_settings(request, room, store, bus, change)
    return RedirectResponse(f"/rooms/{room.code}/present", status_code=303)


@router.get("/api/rooms/{code}/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Live events of the room's experiments"}})
async def room_events(room: RoomDep, broker: BrokerDep, settings: SettingsDep):
    """Live events of every experiment in the room (each with its `exp` id) and of the room
    itself (`room`). No replay: a board fetches /api/rooms/<code> when it (re)connects."""
    async def follow():
        with broker.subscribe(f"room:{room.code}") as queue:
            yield ServerSentEvent(data=json.dumps({"code": room.code}), event="hello")
            while True:
                e = await queue.get()
                yield ServerSentEvent(data=e.data, event=e.kind)

    return EventSourceResponse(follow(), ping=settings.sse_ping_seconds,
                               headers={"Cache-Control": "no-store"})


# -- helpers ----------------------------------------------------------------------------------

def _room_context(room: RoomRow, store: Store, presenter: bool = False) -> dict:
    return {"room": room, "state": state_of(room),
            "board": board_data(room, store, presenter)}


_curves: dict[str, tuple[int, list[dict]]] = {}  # experiment id -> (last_seq, run 0's epochs)


def _run0_epochs(row, store: Store) -> list[dict]:
    """Run 0's stored epochs, re-read only when the experiment has new events: 40 boards
    refreshing during a workshop parse each finished experiment's log once, not 40 times."""
    hit = _curves.get(row.id)
    if hit and hit[0] == row.last_seq:
        return hit[1]
    if len(_curves) > 5000:
        _curves.clear()
    epochs = store.epochs_by_run(row.id, row.n_runs)[0]
    _curves[row.id] = (row.last_seq, epochs)
    return epochs


def board_data(room: RoomRow, store: Store, presenter: bool) -> dict:
    """Everything a board shows: members, every experiment's validation curve (run 0) and,
    if the viewer may see it, the leaderboard."""
    return _board_data(room, state_of(room), store, presenter)


def _board_data(room: RoomRow, state: RoomState, store: Store, presenter: bool) -> dict:
    members = {m.client: m.name for m in store.members(room.code)}
    rows = store.in_room(room.code)
    entries = []
    for row in rows:
        config = experiments.config_of(row)
        curve = _run0_epochs(row, store)
        metric = primary_metric(config.task)
        best = min(curve, key=lambda e: e["val_loss"] if e["val_loss"] is not None
                   else float("inf")) if curve else None
        entries.append({
            "id": row.id, "author": row.author or "anonymous", "name": row.name,
            "status": row.status, "task": config.task, "metric": metric,
            "hidden": config.model.hidden, "activation": config.model.activation,
            "dropout": config.model.dropout, "input_dropout": config.model.input_dropout,
            "epochs": [e["epoch"] for e in curve],
            "val_loss": [e["val_loss"] for e in curve],
            "best": None if best is None else {"epoch": best["epoch"],
                                               "val_loss": best["val_loss"],
                                               metric: best[metric]},
        })
    visible = state.leaderboard or presenter
    if not visible:  # hidden: no scores at all, or the ranking could be rebuilt
        entries = [{**e, "best": None} for e in entries]
    ranked = sorted((e for e in entries if e["best"]),
                    key=lambda e: (-(e["best"][e["metric"]] or 0), e["best"]["val_loss"]))
    return {"code": room.code, "name": room.name, "state": state.model_dump(),
            "members": sorted(members.values()), "experiments": entries,
            "leaderboard": ranked if visible else None,
            "final_statuses": list(FINAL_STATUSES)}


def _qr_svg(url: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=12)
    buf = io.BytesIO()
    image.save(buf)
    svg = buf.getvalue().decode()
    return svg[svg.index("<svg"):]  # drop the XML declaration: it is inlined in the page


def room_for_play(store: Store, code: str, client: str) -> tuple[RoomRow, RoomState, str]:
    """(room, state, display name) for a participant starting an experiment in a room."""
    room = store.get_room(code.strip().upper())
    if room is None:
        raise NotFound(f"no room with code {code!r}")
    member = store.member(room.code, client)
    if member is None:
        raise Forbidden("join the room with a display name first")
    state = state_of(room)
    check_open(state)
    return room, state, member.name

