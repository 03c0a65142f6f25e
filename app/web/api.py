"""The JSON API of CONTRACT.md: create, read, cancel and export experiments."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, ValidationError

from app import rooms
from app.ml.config import ExperimentConfig
from app.store import FINAL_STATUSES
from app.web import experiments
from app.web.deps import BusDep, ClientDep, ExecutorDep, ExperimentDep, LimiterDep, StoreDep
from app.web.errors import Conflict, Forbidden, NotFound, responses
from app.web.rooms import room_for_play

router = APIRouter(prefix="/api/experiments", tags=["experiments"],
                   responses=responses(404, 503))


@router.post("", status_code=201, responses=responses(400, 403, 413, 429))
def create_experiment(config: ExperimentConfig, store: StoreDep, executor: ExecutorDep,
                      client: ClientDep, limiter: LimiterDep,
                      room: str | None = Query(None, max_length=16,
                                               description="Workshop room code to start it in "
                                               "(join the room first).")) -> dict:
    """Start an experiment (one run, or a sweep); its page and stream are in the answer."""
    author = None
    if room:
        room_row, state, author = room_for_play(store, room, client)
        room = room_row.code
        try:
            config = rooms.apply_challenge(config, state)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
    exp_id = experiments.start(config, store, executor, client, limiter, room, author)
    return {"id": exp_id, "url": f"/e/{exp_id}", "status": "queued",
            "events": f"/api/experiments/{exp_id}/events",
            "queue_position": executor.queue_position(exp_id)}


@router.get("/{exp_id}")
def get_experiment(row: ExperimentDep, store: StoreDep, executor: ExecutorDep) -> dict:
    """An experiment: status, config, every run's epochs so far, and the summary when done."""
    return experiments.experiment_json(row, store, executor)


@router.post("/{exp_id}/cancel", responses=responses(409))
def cancel_experiment(row: ExperimentDep, store: StoreDep, executor: ExecutorDep,
                      bus: BusDep) -> dict:
    """Stop a queued or running experiment; epochs already trained are kept."""
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


def require_owner(row, client: str) -> None:
    if row.owner != client:
        raise Forbidden("only the browser that started this experiment can change or delete "
                        "it; you can fork it instead")


@router.patch("/{exp_id}", responses=responses(400, 403))
def rename_experiment(row: ExperimentDep, store: StoreDep, client: ClientDep,
                      change: Rename) -> dict:
    """Rename (owner only)."""
    require_owner(row, client)
    store.rename(row.id, change.name.strip())
    return {"id": row.id, "name": change.name.strip()}


@router.delete("/{exp_id}", status_code=204, responses=responses(403))
def delete_experiment(row: ExperimentDep, store: StoreDep, executor: ExecutorDep,
                      bus: BusDep, client: ClientDep) -> Response:
    """Delete with all its epochs (owner only); a running one is stopped first."""
    require_owner(row, client)
    if row.status not in FINAL_STATUSES:
        experiments.stop(row.id, store, executor, bus)
    store.delete(row.id)
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
