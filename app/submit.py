"""`dropout-playground submit --server URL CONFIG.json`: train on a running server, from a shell.

Posts the config (POST /api/experiments), follows the experiment's event stream with a
progress bar on stderr, and prints the share link on stdout. Exit status: 0 when the
experiment is done; 2 when the server refuses the config (each problem on stderr, named by its
field, as `train` does) or the file cannot be read; 1 when the run fails or is cancelled, or
the server cannot be reached or is busy. A dropped stream is resumed with Last-Event-ID (the
server replays what was missed, nothing twice). Standard library only: no HTTP package needed.
Ctrl-C stops following, not training: the experiment goes on at its link.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

FINAL = ("done", "failed", "cancelled")
RECONNECTS = 5  # tries to resume a dropped stream, 1 s apart
TIMEOUT = 60  # seconds without a byte; the server pings every 15 s


class Refused(Exception):
    """The server answered with an error status; `code` is the exit status to give."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def submit(server: str, path: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    base = server.rstrip("/")
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as e:
        print(f"error: cannot read {path}: {e.strerror}", file=err)
        return 2
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        print(f"error: {path} is not valid JSON: {e}", file=err)
        return 2
    try:
        created = _post(f"{base}/api/experiments", raw)
    except Refused as e:
        print(f"error: {e}", file=err)
        return e.code
    link = base + created["url"]
    print(f"experiment {created['id']}: {link}", file=err)
    try:
        status, detail = _follow(base, created["id"], _total(raw), err)
    except Refused as e:
        print(f"error: {e} (the experiment is at {link})", file=err)
        return 1
    except KeyboardInterrupt:
        print(f"stopped following; it goes on training at {link}", file=err)
        return 130
    print(link, file=out)
    if status != "done":
        print(f"{status}: {detail}" if detail else status, file=err)
        return 1
    return 0


def _total(raw) -> int | None:
    """Epochs to expect (the progress bar's total), if this install reads the config alike."""
    from pydantic import ValidationError

    from app.ml.config import ExperimentConfig

    try:
        config = ExperimentConfig.model_validate(raw)
    except (ValidationError, TypeError):
        return None
    return config.n_runs * config.train.epochs


def _post(url: str, body) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as res:
            return json.loads(res.read())
    except urllib.error.HTTPError as e:
        raise _refusal(e) from None
    except (urllib.error.URLError, OSError) as e:
        raise Refused(f"cannot reach {url}: {getattr(e, 'reason', e)}", 1) from None


def _refusal(e: urllib.error.HTTPError) -> Refused:
    try:
        detail = json.loads(e.read()).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if e.code == 422 and isinstance(detail, list):  # one line per field, as `train` prints
        lines = [f"{d.get('field') or '.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
                 for d in detail]
        return Refused("the server refused the config:\n" + "\n".join(lines), 2)
    message = detail if isinstance(detail, str) else e.reason
    if e.code == 413:
        return Refused(f"the server refused the config: {message}", 2)
    retry = e.headers.get("Retry-After")
    return Refused(f"{e.code} {message}" + (f" (retry after {retry} s)" if retry else ""), 1)


def _follow(base: str, exp_id: str, total: int | None, err: TextIO) -> tuple[str, str | None]:
    """Follow the stream to its final event: (status, error message or None)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="epoch", file=err)
    last, tries = None, 0
    try:
        while True:
            try:
                for event in _events(f"{base}/api/experiments/{exp_id}/events", last):
                    last, tries = event.get("id", last), 0
                    kind = event.get("event", "message")
                    if kind == "epoch":
                        bar.update(1)
                    elif kind in FINAL:
                        data = json.loads(event.get("data") or "{}")
                        return kind, data.get("error")
                # the stream ended with no final event (204: it was already sent to us)
                return _status(base, exp_id)
            except urllib.error.HTTPError as e:
                raise _refusal(e) from None
            except (urllib.error.URLError, OSError, ValueError):
                tries += 1
                if tries > RECONNECTS:
                    raise Refused(f"lost the event stream of {exp_id}", 1) from None
                time.sleep(1)
    finally:
        bar.close()


def _status(base: str, exp_id: str) -> tuple[str, str | None]:
    with urllib.request.urlopen(f"{base}/api/experiments/{exp_id}", timeout=TIMEOUT) as res:
        status = json.loads(res.read())["status"]
    return status, None


def _events(url: str, last_id: str | None) -> Iterator[dict]:
    """Server-sent events as dicts (`event`, `data`, `id`), resuming after `last_id`."""
    headers = {"Accept": "text/event-stream"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=TIMEOUT) as res:
        if res.status == 204:
            return
        event: dict = {}
        for raw in res:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                if "data" in event or "event" in event:
                    yield event
                event = {}
                continue
            if line.startswith(":"):  # a keep-alive comment
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data" and "data" in event:
                event["data"] += "\n" + value
            else:
                event[name] = value
