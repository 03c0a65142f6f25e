"""Command line: `dropout-playground serve | train CONFIG.json | submit --server URL CONFIG.json`.

The console script `dropout-playground` (pyproject.toml) and `python -m app` are the same
entry point; the console script also works from a folder that holds an `app.py` of its own.
`serve` starts the web app. `submit` trains on a running server (app/submit.py). `train` runs
an experiment without a server: one JSON object per line on stdout for every epoch (the fields
of the SSE `epoch` event), a progress bar on stderr, and a final `{"event": "done", ...}` line.
Exit status 0 on success, 2 on an unreadable or invalid config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pydantic import ValidationError


def format_validation_error(err: ValidationError) -> str:
    """One readable line per problem: `dataset.n_train: Input should be ...`."""
    from app.ml.config import describe_errors

    return "\n".join(f"{e['field']}: {e['message']}" for e in describe_errors(err))


def cmd_train(path: str) -> int:
    from app.ml.config import ExperimentConfig

    try:
        raw = json.loads(Path(path).read_text())
        config = ExperimentConfig.model_validate(raw)
    except OSError as e:
        print(f"error: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # not JSON text at all
        print(f"error: {path} is not valid JSON: {e}", file=sys.stderr)
        return 2
    except ValidationError as e:
        print(f"error: invalid config in {path}:\n{format_validation_error(e)}", file=sys.stderr)
        return 2

    import torch
    from tqdm import tqdm

    from app.ml.summary import summarize
    from app.ml.train import train

    torch.set_num_threads(1)  # small MLPs: one thread is fastest (and fair next to a server)
    bar = tqdm(total=config.n_runs * config.train.epochs, unit="epoch", file=sys.stderr)

    def on_epoch(rows: list[tuple[int, dict]]) -> None:
        ended_at = round(time.time(), 4)  # as in the server's epoch events
        for run, metrics in rows:
            line = {"event": "epoch", "run": run, **metrics, "ended_at": ended_at}
            sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        bar.update(len(rows))

    try:
        result = train(config, on_epoch=on_epoch)
    except KeyboardInterrupt:
        bar.close()
        return 130
    bar.close()
    print(json.dumps({"event": "done", "status": result.status,
                      "summary": summarize(result.run_dicts(), config.task)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=_prog(), description="Dropout Playground")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the web app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", default="./data", help="SQLite database and other state")
    serve.add_argument("--workers", type=int, default=None,
                       help="training processes (per web worker)")
    serve.add_argument("--web-workers", type=int, default=None,
                       help="web server processes; more than one needs --database-url "
                            "postgresql://...")
    serve.add_argument("--database-url", default=None,
                       help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: SQLite)")
    serve.add_argument("--executor", choices=["local", "ray"], default=None,
                       help="train in local worker processes (default) or on a Ray cluster")
    serve.add_argument("--ray-address", default=None, help="Ray head host:port, or auto")
    serve.add_argument("--max-header-bytes", type=int, default=None,
                       help="largest request line plus headers (default 32768); above it 431")
    serve.add_argument("--trusted-proxies", default=None,
                       help="comma-separated addresses or networks of reverse proxies whose "
                            "X-Forwarded-For names the client (e.g. the nginx of deploy/)")
    train = sub.add_parser("train", help="train one experiment from a JSON config, no server")
    train.add_argument("config", help="path to the experiment config (JSON)")
    submit = sub.add_parser("submit", help="train on a running server, following its progress")
    submit.add_argument("--server", default="http://127.0.0.1:8000",
                        help="the server's base URL (default: %(default)s)")
    submit.add_argument("config", help="path to the experiment config (JSON)")
    args = parser.parse_args(argv)
    if args.command == "train":
        return cmd_train(args.config)
    if args.command == "submit":
        from app.submit import submit as submit_config

        return submit_config(args.server, args.config)
    from app.web.serve import serve as run_server

    options = {"workers": args.workers, "web_workers": args.web_workers,
               "database_url": args.database_url,
               "executor": args.executor, "ray_address": args.ray_address,
               "max_header_bytes": args.max_header_bytes,
               "trusted_proxies": args.trusted_proxies}
    try:
        return run_server(host=args.host, port=args.port, data_dir=args.data_dir,
                          **{k: v for k, v in options.items() if v is not None})
    except ValidationError as e:  # settings that cannot work together, from flags or DP_*
        problems = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
        print(f"error: {problems}", file=sys.stderr)
        return 2


def _prog() -> str:
    """The name usage lines show: how this process was started."""
    name = Path(sys.argv[0]).name
    return "python -m app" if name in ("__main__.py", "-c", "") else name
