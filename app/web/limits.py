"""Rate limits and caps of the web process, in memory: token buckets per browser and per
network address, and the count of open event streams.

- `RateLimiter`: a token bucket per key (a client id, or an address): `limit` per `period`
  seconds, in bursts of up to `burst` (default a third of the limit). Small state (a float
  pair per key seen lately), pruned as it goes.
- `AddressLimits`: the buckets per network address (app.web.middleware.ClientAddress says
  which): experiments created outside rooms, rooms created, joins, and unknown room codes
  looked up (code guessing). A cookie costs nothing to drop; an address does. Joins and
  lookups come in bursts of `people_per_address` (default 300: the README's tutorial behind
  one venue NAT), so a whole room can join at once, refilled over 5 minutes.
- `StreamCaps`: open event streams, per server process and per address. When many have
  closed (all of them, or another TRIM_EVERY), the memory they held is handed back to the
  system (glibc's malloc_trim, on a thread), so a flood of
  streams that came and went does not leave the process at its peak (a few page views do
  not trigger it).

In memory is enough: each server process limits what it serves (with several, each gets its
share of the traffic, as with DP_MAX_QUEUED).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import math
import random
import threading
import time
from dataclasses import dataclass, field

from app.settings import Settings
from app.web.errors import TooBusy, Unavailable

PERIODS = {60.0: "minute", 3600.0: "hour", 300.0: "5 minutes"}
TRIM_EVERY = 256  # streams closed between two hand-backs of memory (see StreamCaps)
TRIM_PAUSE = 5.0  # seconds between two hand-backs at most


class RateLimiter:
    def __init__(self, limit: int, burst: int | None = None, period: float = 60.0):
        self.limit, self.period = limit, period
        self.per_minute = limit if period == 60.0 else limit * 60.0 / period
        self.rate = limit / period  # tokens per second
        self.burst = burst or max(1, limit // 3)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def describe(self) -> str:
        """"30 per minute", "20 per hour"."""
        return f"{self.limit} per {PERIODS.get(self.period, f'{self.period:g} s')}"

    def take(self, key: str) -> int:
        """Take one token: 0 if allowed, else the seconds to wait for the next one."""
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                self._prune(now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))

    def wait(self, key: str) -> int:
        """0 if a token is there (none is taken), else the seconds until there is one."""
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(key, now)
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self.rate))

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def _prune(self, now: float) -> None:
        if len(self._buckets) > 10_000:  # forget keys whose bucket is full again anyway
            full = self.burst / self.rate
            self._buckets = {c: v for c, v in self._buckets.items() if now - v[1] < full}


@dataclass
class AddressLimits:
    """The per-address buckets (see module docstring)."""

    create: RateLimiter  # experiments created outside rooms
    rooms: RateLimiter  # rooms created
    joins: RateLimiter  # people joining rooms (new members)
    misses: RateLimiter  # room codes looked up that do not exist

    @classmethod
    def from_settings(cls, s: Settings) -> AddressLimits:
        people = s.people_per_address
        return cls(create=RateLimiter(s.create_per_minute_per_address),
                   rooms=RateLimiter(s.rooms_per_hour_per_address,
                                     burst=max(1, s.rooms_per_hour_per_address // 6),
                                     period=3600.0),
                   joins=RateLimiter(people, burst=people, period=300.0),
                   misses=RateLimiter(people, burst=people, period=300.0))


def refuse_rate(limiter: RateLimiter, wait: int, what: str) -> TooBusy:
    """The 429 of a per-address bucket, saying which limit and when to come back."""
    return TooBusy(f"too many {what} from your network address: the limit is "
                   f"{limiter.describe()}; try again in {wait} s",
                   headers={"Retry-After": str(wait)})


def retry_after(low: int = 5, high: int = 15) -> str:
    """A Retry-After that spreads the retries of many refused clients over a few seconds."""
    return str(random.randint(low, high))


@dataclass
class StreamCaps:
    """Open event streams, in total and per address. Touched only from the event loop (the
    stream routes are async), so no lock."""

    total: int
    per_address: int
    open: int = 0
    served: int = 0  # streams ever opened (for /healthz and the benchmarks)
    refused: int = 0
    by_address: dict[str, int] = field(default_factory=dict)
    closed: int = 0  # since the last hand-back of memory
    trimmed_at: float = 0.0

    def acquire(self, address: str) -> None:
        """Count one more stream of `address`, or refuse it: 503 when the server is full,
        429 when this address holds its share."""
        if self.open >= self.total:
            self.refused += 1
            raise Unavailable(f"the server serves {self.open} event streams, its limit; try "
                              "again in a few seconds", headers={"Retry-After": retry_after()})
        held = self.by_address.get(address, 0)
        if held >= self.per_address:
            self.refused += 1
            raise TooBusy(f"your network address holds {held} event streams, the limit per "
                          f"address is {self.per_address}; close some pages or try again "
                          "later", headers={"Retry-After": retry_after()})
        self.open += 1
        self.served += 1
        self.by_address[address] = held + 1

    def release(self, address: str) -> None:
        self.open -= 1
        left = self.by_address.get(address, 1) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)
        self.closed += 1
        now = time.monotonic()
        pause = 1.0 if self.open == 0 else TRIM_PAUSE  # the last one closed: hand back now
        many = self.closed >= TRIM_EVERY or (self.open == 0 and self.closed >= TRIM_EVERY // 8)
        if many and now - self.trimmed_at > pause:
            self.closed, self.trimmed_at = 0, now
            with contextlib.suppress(RuntimeError):  # (no event loop: a unit test)
                asyncio.get_running_loop().run_in_executor(None, give_back_memory)


_LIBC = ctypes.util.find_library("c")


def give_back_memory() -> None:
    """Return the freed heap pages to the system (glibc only). No garbage collection here:
    a full one holds the interpreter for as long as it takes, and the event loop with it."""
    if _LIBC and "libc" in _LIBC:
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            ctypes.CDLL(_LIBC).malloc_trim(0)
