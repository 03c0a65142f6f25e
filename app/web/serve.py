"""`python -m app serve`: run the app under uvicorn with settings from flags and DP_* env."""

from __future__ import annotations

import logging


def serve(host: str, port: int, data_dir: str, workers: int | None = None) -> int:
    import uvicorn

    from app.settings import Settings
    from app.web.main import create_app

    overrides = {"data_dir": data_dir}
    if workers is not None:
        overrides["workers"] = workers
    settings = Settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, timeout_graceful_shutdown=5,
                log_level="info")
    return 0
