"""Per-client rate limiting of experiment creation: a token bucket per browser, in memory.

Each client may create `per_minute` experiments per minute, in bursts of up to a third of that.
In memory is enough for one web process; the state is small (one float pair per client seen in
the last minutes) and pruned as it goes.
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None):
        self.per_minute = per_minute
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = burst or max(1, per_minute // 3)
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, client: str) -> int:
        """Take one token: 0 if allowed, else the seconds to wait for the next one."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                self._prune(now)
                return 0
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))

    def _prune(self, now: float) -> None:
        if len(self._buckets) > 10_000:  # forget clients whose bucket is full again anyway
            full = self.burst / self.rate
            self._buckets = {c: v for c, v in self._buckets.items() if now - v[1] < full}
