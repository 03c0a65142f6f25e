"""The JSON API of CONTRACT.md: create, read, cancel and export experiments.

Stopping, renaming and deleting belong to whoever started the experiment: the browser (its
client cookie), or a script that sends back the create answer's `owner_token` in the
X-Owner-Token header; in a workshop room, also to the room's presenter. Anyone else gets a
403 and can fork instead."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, ValidationError

from app import rooms
from app.ml.config import ExperimentConfig
from app.store import FINAL_STATUSES
from app.web import experiments
from app.web.deps import (
    AddressDep,
    AddressLimitsDep,
    BusDep,
    ClientDep,
    ExecutorDep,
    ExperimentDep,
    LimiterDep,
    StoreDep,
    is_presenter,
    owner_token,
)
from app.web.errors import Conflict, Forbidden, NotFound, responses
from app.web.rooms import room_for_play

router = APIRouter(prefix="/api/experiments", tags=["experiments"],
                   responses=responses(404, 503))


@router.post("", status_code=201, responses=responses(400, 403, 413, 429))
def create_experiment(config: ExperimentConfig, request: Request, store: StoreDep,
                      executor: ExecutorDep, client: ClientDep, limiter: LimiterDep,
                      address: AddressDep, address_limits: AddressLimitsDep,
                      room: str | None = Query(None, max_length=16,
                                               description="Workshop room code to start it in "
                                               "(join the room first).")) -> dict:
    """Start an experiment (one run, or a sweep); its page and stream are in the answer, and
    the `owner_token` that lets a client without cookies stop, rename or delete it (send it
    back in the X-Owner-Token header)."""
    author = None
    if not room:  # absent or empty (?room=): no room
        room = None
    else:
        room_row, state, author = room_for_play(store, room, client, request)
        room = room_row.code
        try:
            config = rooms.apply_challenge(config, state)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
    exp_id = experiments.start(config, store, executor, client, limiter, room, author,
                               address, address_limits.create)
    row = store.get(exp_id)
    queue = experiments.queue_info(row, executor) if row else None
    return {"id": exp_id, "url": f"/e/{exp_id}", "status": "queued",
            "events": f"/api/experiments/{exp_id}/events",
            "queue_position": queue and queue["position"],
            "estimated_start_seconds": queue and queue["estimated_start_seconds"],
            "owner_token": owner_token(request)}


@router.get("/{exp_id}")
def get_experiment(row: ExperimentDep, store: StoreDep, executor: ExecutorDep) -> dict:
    """An experiment: status, config, every run's epochs so far, and the summary when done."""
    return experiments.experiment_json(row, store, executor)


@router.post("/{exp_id}/cancel", responses=responses(403, 409))
def cancel_experiment(request: Request, row: ExperimentDep, store: StoreDep,
                      executor: ExecutorDep, bus: BusDep, client: ClientDep) -> dict:
    """Stop a queued or running experiment (owner only); epochs already trained are kept."""
    require_owner(request, row, client, store)
    if row.status in FINAL_STATUSES:
        raise Conflict(f"experiment {row.id} has already ended ({row.status})")
    requested = experiments.stop(row.id, store, executor, bus)
    now = store.get(row.id)
    if not requested and now is not None and now.status in FINAL_STATUSES:
        raise Conflict(f"experiment {row.id} has already ended ({now.status})")
    return {"id": row.id, "status": now.status if now else row.status,
            "cancel_requested": requested}


@router.get("/{exp_id}/points")
async def experiment_points(row: ExperimentDep) -> dict:
    """The data the decision surface or prediction curve is drawn over (2-D sets and sine)."""
    config = experiments.config_of(row)
    if experiments.insight_kind(config) is None:
        raise NotFound("points are drawn only for 2-D classification and 1-D regression")
    return await anyio.to_thread.run_sync(experiments.points_json, config)


class Rename(BaseModel):
    name: str = Field(max_length=80, description="New label (free text).")


def may_change(request: Request, row, client: str, store) -> bool:
    """Whether this request may stop, rename or delete the experiment: its owner (cookie or
    X-Owner-Token), or the presenter of the room it was started in."""
    if row.owner is not None and row.owner == client:
        return True
    room = store.get_room(row.room) if row.room else None
    return room is not None and is_presenter(request, room)


def require_owner(request: Request, row, client: str, store) -> None:
    if not may_change(request, row, client, store):
        who = ", or the presenter of its room" if row.room else ""
        raise Forbidden("only the browser that started this experiment (or a script sending "
                        f"its X-Owner-Token{who}) can stop, rename or delete it; you can fork "
                        "it instead")


@router.patch("/{exp_id}", responses=responses(400, 403))
def rename_experiment(request: Request, row: ExperimentDep, store: StoreDep, client: ClientDep,
                      change: Rename) -> dict:
    """Rename (owner only)."""
    require_owner(request, row, client, store)
    store.rename(row.id, change.name.strip())
    return {"id": row.id, "name": change.name.strip()}


@router.delete("/{exp_id}", status_code=204, responses=responses(403))
def delete_experiment(request: Request, row: ExperimentDep, store: StoreDep,
                      executor: ExecutorDep, bus: BusDep, client: ClientDep) -> Response:
    """Delete with all its epochs (owner only); a running one is stopped first, and its open
    streams end with a final `cancelled` event (`"deleted": true`)."""
    require_owner(request, row, client, store)
    experiments.delete(row, store, executor, bus)
    return Response(status_code=204)


@router.get("/{exp_id}/config.json")
def export_config(row: ExperimentDep) -> Response:
    """The experiment's config, ready to post again or to run with `python -m app train`."""
    return Response(row.config, media_type="application/json", headers=_download(row, "json"))


@router.get("/{exp_id}/metrics.csv")
def export_metrics(row: ExperimentDep, store: StoreDep) -> Response:
    """A row per run per epoch, with a header row naming the columns."""
    return PlainTextResponse(experiments.metrics_csv(row, store), media_type="text/csv",
                             headers=_download(row, "csv"))


@router.get("/{exp_id}/script.py")
def export_script(row: ExperimentDep, run: int = 0) -> Response:
    """A standalone PyTorch script (torch, NumPy, scikit-learn) that reproduces run `run`."""
    from app.ml.export import script_for

    config = experiments.config_of(row)
    if not 0 <= run < row.n_runs:
        raise NotFound(f"run must be between 0 and {row.n_runs - 1}")
    return PlainTextResponse(script_for(config, run), media_type="text/x-python",
                             headers=_download(row, "py"))


def _download(row, ext: str) -> dict[str, str]:
    name = {"json": "config", "csv": "metrics", "py": "script"}[ext]
    return {"Content-Disposition": f'attachment; filename="{name}-{row.id[:8]}.{ext}"'}
