"""What the web layer may ask of an executor (who trains the experiments), as one protocol.

Two executors answer it: the local pool of worker processes (app.jobs.LocalExecutor) and the
Ray executor (app.ray_executor.RayExecutor); both are the same dispatcher with different
slots. The web layer, main.py and the bus's control messages see only this protocol, so they
never depend on which one runs, nor on anything torch or Ray import. `QueueFull` (a refusal
the API turns into 429) and `Publish` (how an executor hands stored events to live streams)
live here because both sides of the protocol use them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from app.store import Event

Publish = Callable[[str, Sequence[Event]], None]  # (experiment id, its new events); thread-safe


class QueueFull(Exception):
    """Over a queue limit (in total, for one client or one address): the API answers 429 with
    this text, and `retry_after` (seconds, from the queue's estimate) in Retry-After."""

    def __init__(self, message: str, retry_after: int = 10):
        super().__init__(message)
        self.retry_after = retry_after


@runtime_checkable
class Executor(Protocol):
    """Who trains experiments: a queue in front of workers, seen from a request handler."""

    workers: int  # experiments that can train at once
    runner: str  # this executor's name in the database (app.store: who holds what)
    publish: Publish  # also used by a request that cancels an experiment held elsewhere

    def start(self) -> None:
        """Start training (workers warm up in the background); adopt orphaned experiments."""

    def stop(self) -> None:
        """Stop training; experiments still running are marked failed (epochs kept)."""

    def submit(self, exp_id: str, owner: str | None = None,
               address: str | None = None) -> None:
        """Queue a stored (queued) experiment; raise QueueFull over a limit (`address`: the
        network address it counts against, None inside a room)."""

    def cancel(self, exp_id: str) -> bool:
        """Ask an experiment to stop; True if it was queued or running here."""

    def check_room(self, owner: str | None, new: str | None = None,
                   address: str | None = None) -> None:
        """Raise QueueFull if `owner` (or `address`) may not queue one more (`new`: already
        stored)."""

    def queue_position(self, exp_id: str) -> int | None:
        """1-based place in the queue, or None when not waiting here."""

    def queue_length(self) -> int:
        """Experiments waiting here."""

    def estimate_start(self, exp_id: str) -> float | None:
        """Seconds until a waiting experiment should start, or None when not waiting here."""

    def ready_workers(self) -> int:
        """Workers ready to train (warmed up)."""
