"""Server settings: one declarative table, each with a default and help text.

Built once in `create_app(settings)` (never at import time), so a test can make ten differently
configured apps. Every field can be set from the environment with the prefix `DP_`
(e.g. `DP_WORKERS=1`); the README's settings table is generated from these descriptions and a
test fails if they drift apart.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DP_", extra="forbid")

    data_dir: Path = Field(Path("./data"), description="Folder for the SQLite database and state.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file playground.db in data_dir. "
        "A `postgresql://` URL lets several server processes share the state, and live events "
        "travel between them with LISTEN/NOTIFY.",
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="Where experiments train: `local` worker processes, or `ray`: "
        "one Ray task per experiment on a Ray cluster (pip install .[ray]).",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join (host:port of the head, or `auto`); default: "
        "start a private one-machine Ray.",
    )
    ray_cpus_per_experiment: int = Field(
        1, ge=1, le=64, description="CPUs (and torch threads) each experiment's Ray task uses.",
    )
    ray_max_running: int | None = Field(
        None, ge=1, le=10_000, description="Experiments training on Ray at once; default: the "
        "cluster's CPUs / ray_cpus_per_experiment, read at start.",
    )
    runner_timeout_seconds: float = Field(
        30.0, gt=0, description="A server process silent this long is taken for dead: another "
        "takes over its queue and fails what it was training (several servers on PostgreSQL).",
    )
    workers: int = Field(
        default_factory=lambda: max(1, min(2, _cores())), ge=1, le=64,
        description="Training worker processes (kept warm: torch is imported once).",
    )
    web_workers: int = Field(
        1, ge=1, le=64,
        description="Web server processes (uvicorn workers) on this host; more than one needs "
        "a PostgreSQL database_url. Each has its own training workers.",
    )
    threads_per_worker: int | None = Field(
        None, ge=1, le=64,
        description="torch threads per worker; default cores // (web_workers x workers), so "
        "training threads never exceed the cores (oversubscription ran ~30x slower).",
    )
    max_queued: int = Field(
        32, ge=1, le=10_000,
        description="Experiments waiting for a worker, in total; above it the API answers 429.",
    )
    max_queued_per_client: int = Field(
        4, ge=1, le=1000,
        description="Experiments one browser may have queued or running at once; above it 429.",
    )
    max_run_seconds: float = Field(
        900.0, gt=0,
        description="Wall time one experiment may train; then it is stopped (epochs kept) and "
        "marked failed.",
    )
    create_per_minute: int = Field(
        30, ge=1, description="Experiments one browser may create per minute (rate limit)."
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request body accepted (bytes); above it 413."
    )
    sse_ping_seconds: float = Field(
        15.0, gt=0, description="Keep-alive comment interval on event streams (seconds)."
    )
    recent_limit: int = Field(12, ge=1, le=100, description="Experiments in the recent list.")
    stop_grace_seconds: float = Field(
        10.0, gt=0, le=600,
        description="A training process that has not stopped this long after a cancel or the "
        "time limit is killed and replaced; its experiment fails with the reason (epochs kept).",
    )
    # -- per network address (a cookie is free to drop; an address is not) ---------------------
    trusted_proxies: str = Field(
        "", description="Comma-separated addresses or networks of reverse proxies (the nginx "
        "of deploy/) whose X-Forwarded-For names the client; from anyone else the header is "
        "ignored and the connection's address counts.",
    )
    people_per_address: int = Field(
        300, ge=1, le=100_000,
        description="How many people one network address may stand for (a venue's NAT: the "
        "300-person tutorial of the README). Joins and unknown room codes per address come in "
        "bursts of this many, refilled over 5 minutes.",
    )
    max_queued_per_address: int = Field(
        16, ge=1, le=10_000,
        description="Experiments one network address may have queued or running outside "
        "workshop rooms (inside a room each member counts alone); above it 429.",
    )
    create_per_minute_per_address: int = Field(
        60, ge=1, description="Experiments one network address may create per minute outside "
        "workshop rooms; above it 429 with Retry-After.",
    )
    rooms_per_hour_per_address: int = Field(
        30, ge=1, description="Workshop rooms one network address may create per hour.",
    )
    allowed_origins: str = Field(
        "", description="Comma-separated origins (https://host:port) allowed besides the "
        "server's own; a request with any other Origin header is refused with 403.",
    )
    # -- event streams and connections ---------------------------------------------------------
    max_streams: int = Field(
        4000, ge=1, le=100_000,
        description="Event streams one server process serves at once; above it 503 with "
        "Retry-After.",
    )
    max_streams_per_address: int = Field(
        600, ge=1, le=100_000,
        description="Event streams one network address may hold at once (two per person of a "
        "300-person room behind one NAT); above it 429 with Retry-After.",
    )
    sse_send_timeout_seconds: float = Field(
        30.0, gt=0, description="A stream client that takes no data for this long (its "
        "buffers full) is dropped; a browser reconnects and resumes with Last-Event-ID.",
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=4096, le=1024 * 1024,
        description="Largest request line plus headers `serve` reads (bytes); above it 431.",
    )

    @model_validator(mode="after")
    def _several_processes_share_postgres(self) -> Settings:
        if self.web_workers > 1 and not self.db_url.startswith("postgres"):
            raise ValueError("web_workers > 1 needs a PostgreSQL database_url: SQLite serves "
                             "one server process")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in _split(value):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {part!r} is not an address or network "
                                 "(e.g. 10.0.0.0/8)") from None
        return value

    @property
    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p, strict=False) for p in _split(self.trusted_proxies)]

    @property
    def extra_origins(self) -> set[str]:
        return {o.rstrip("/").lower() for o in _split(self.allowed_origins)}

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'playground.db'}"

    @property
    def torch_threads(self) -> int:
        return self.threads_per_worker or max(1, _cores() // (self.web_workers * self.workers))
