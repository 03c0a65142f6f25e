"""`python -m app serve`: run the app under uvicorn with settings from flags and DP_* env.

Graceful shutdown (SIGTERM, Ctrl-C): before uvicorn closes connections, training is stopped
and every running experiment is marked failed ("the server stopped"), with its epochs kept;
that final event reaches the open streams, so browsers show the end instead of hanging.
Queued experiments stay queued and run when the server comes back (with several servers on
PostgreSQL, on whichever takes them over first). A second signal exits at
once.

Before it listens, `serve` opens and checks the database (a damaged file is refused with a
clear message and exit status 2, not served with 500s). Connections: a request whose line and
headers exceed DP_MAX_HEADER_BYTES is answered 431 and closed as soon as the bytes arrive
(`LimitedHttpTools`; h11 has the same limit built in); each connection buffers at most
WRITE_BUFFER bytes of a response in the process before its sender waits (the kernel's socket
buffers hold the rest), which is what a stalled event stream costs until its send timeout
drops it; and the process may hold as many sockets as the system allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import resource
import sys

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DRAIN_SECONDS = 0.5  # time for the final events to reach the streams
M_ARENA_MAX = -8  # glibc's mallopt parameter
WRITE_BUFFER = 8 * 1024  # bytes of a response held per connection before its sender waits


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a limit on the request line and headers (the limit
    is the config's h11_max_incomplete_event_size, the same knob h11 uses) and a smaller
    write buffer. httptools alone accepts any size, and collects a huge header slowly."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=WRITE_BUFFER)
        self._head, self._tail, self._in_head, self._refused = 0, b"", True, False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head, self._head = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head, self._tail = True, 0, b""

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            probe = self._tail + data
            end = probe.find(b"\r\n\r\n")
            self._head += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = data[-3:]
            limit = self.config.h11_max_incomplete_event_size or 65536
            if self._head > limit:
                self._refused = True
                self.logger.warning("refused a request with headers over %d bytes", limit)
                body = (f"request headers are larger than the limit of {limit} bytes"
                        .encode())
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"content-type: text/plain; charset=utf-8\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n"
                    b"connection: close\r\n\r\n" + body)
                self.transport.close()
                return
        super().data_received(data)


class _DroppedStreams(logging.Filter):
    """An event stream dropped after its send timeout ends unfinished on purpose
    (app.web.stream.CappedStream); uvicorn would log each as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def _fewer_malloc_arenas() -> None:
    """glibc gives each thread that allocates an arena of its own (up to 8 per core), and
    memory freed in one rarely goes back to the system: after a burst of streams the server
    would keep its peak. Two arenas are plenty for one event loop and its helper threads."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_ARENA_MAX, 2)


def _more_sockets() -> None:
    """Raise the open-files limit to what the system allows: every stream is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app):
        super().__init__(config)
        self.app = app
        self._draining = False

    def handle_exit(self, sig, frame) -> None:
        if self._draining:
            return super().handle_exit(sig, frame)
        self._draining = True
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain_then_exit(sig, frame)))

    async def _drain_then_exit(self, sig, frame) -> None:
        executor = getattr(self.app.state, "executor", None)
        try:
            if executor is not None:
                await asyncio.to_thread(executor.stop)
                await asyncio.sleep(DRAIN_SECONDS)
        finally:
            super().handle_exit(sig, frame)


def serve(host: str, port: int, data_dir: str, **overrides) -> int:
    """Flags given on the command line win over DP_* environment variables.

    With several web workers, uvicorn's supervisor runs them (each builds its app from the
    environment, so the flags are passed on as DP_* variables); they share the state through
    PostgreSQL, and each one stops its own training on SIGTERM."""
    from app.settings import Settings
    from app.store import DatabaseDamaged, open_store
    from app.web.main import create_app

    settings = Settings(data_dir=data_dir, **overrides)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        open_store(settings.db_url).close()  # a damaged database: refuse before listening
    except DatabaseDamaged as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    _more_sockets()
    _fewer_malloc_arenas()
    logging.getLogger("uvicorn.error").addFilter(_DroppedStreams())
    # forwarded headers are believed only from DP_TRUSTED_PROXIES (app.web.middleware), not
    # from uvicorn's default of any local process
    connections = {"http": LimitedHttpTools, "proxy_headers": False,
                   "h11_max_incomplete_event_size": settings.max_header_bytes}
    if settings.web_workers > 1:
        os.environ.update({f"DP_{k.upper()}": str(v)
                           for k, v in {"data_dir": data_dir, **overrides}.items()})
        uvicorn.run("app.web.main:create_app", factory=True, host=host, port=port,
                    workers=settings.web_workers, timeout_graceful_shutdown=5, log_level="info",
                    **connections)
        return 0
    app = create_app(settings)
    app.state.database_checked = True
    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=5,
                            log_level="info", backlog=4096, **connections)
    GracefulServer(config, app).run()
    return 0
