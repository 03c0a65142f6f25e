"""`python -m app serve`: run the app under uvicorn with settings from flags and DP_* env.

Graceful shutdown (SIGTERM, Ctrl-C): before uvicorn closes connections, training is stopped
and every running experiment is marked failed ("the server stopped"), with its epochs kept;
that final event reaches the open streams, so browsers show the end instead of hanging.
Queued experiments stay queued and run when the server comes back (with several servers on
PostgreSQL, on whichever takes them over first). A second signal exits at
once.
"""

from __future__ import annotations

import asyncio
import logging
import os

import uvicorn

DRAIN_SECONDS = 0.5  # time for the final events to reach the streams


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
    from app.web.main import create_app

    settings = Settings(data_dir=data_dir, **overrides)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if settings.web_workers > 1:
        os.environ.update({f"DP_{k.upper()}": str(v)
                           for k, v in {"data_dir": data_dir, **overrides}.items()})
        uvicorn.run("app.web.main:create_app", factory=True, host=host, port=port,
                    workers=settings.web_workers, timeout_graceful_shutdown=5, log_level="info")
        return 0
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=5,
                            log_level="info")
    GracefulServer(config, app).run()
    return 0
