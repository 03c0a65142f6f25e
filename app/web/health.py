"""Liveness and readiness, apart, for orchestrators, load balancers and benchmarks.

- `GET /healthz` (liveness; the Docker HEALTHCHECK): the process answers and its database can
  be read. 503 when the database cannot: restarting the process is then the right move. Also
  says how the pool stands (workers warm, queue, streams, messages waiting to be stored), for
  deploys and benchmarks.
- `GET /readyz` (readiness): a training worker is warm (local workers have imported torch; the
  Ray executor is connected) and the database can be read, so an experiment sent here starts
  training. 503 with Retry-After while not: send traffic elsewhere, do not restart.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.web.deps import ExecutorDep, SettingsDep, StoreDep

router = APIRouter(include_in_schema=False)


def _database(store) -> str | None:
    """None if the database can be read, else why not (one line)."""
    try:
        store.readable()
    except Exception as e:  # locked for reading, damaged, gone, unreachable
        return str(e).splitlines()[0][:300] or type(e).__name__
    return None


@router.get("/healthz")
def healthz(request: Request, store: StoreDep, executor: ExecutorDep,
            settings: SettingsDep) -> JSONResponse:
    """Liveness: the process is up and its database readable."""
    problem = _database(store)
    caps = request.app.state.stream_caps
    body = {"ok": problem is None, "database": problem or "readable",
            "workers": executor.workers, "workers_ready": executor.ready_workers(),
            "queued": executor.queue_length(), "runner": executor.runner,
            "executor": settings.executor, "streams": caps.open,
            "pending_writes": getattr(executor, "pending_writes", lambda: 0)()}
    return JSONResponse(body, 200 if problem is None else 503)


@router.get("/readyz")
def readyz(store: StoreDep, executor: ExecutorDep) -> JSONResponse:
    """Readiness: a warm worker (or the Ray connection) and a readable database."""
    problem = _database(store)
    ready = executor.ready_workers()
    reason = (f"the database cannot be read: {problem}" if problem else
              None if ready else "no training worker is warm yet (starting, or replaced)")
    body = {"ready": reason is None, "workers": executor.workers, "workers_ready": ready,
            "queued": executor.queue_length()}
    if reason:
        return JSONResponse({**body, "detail": reason}, 503, headers={"Retry-After": "5"})
    return JSONResponse(body)
