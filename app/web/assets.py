"""Static files: content-hashed URLs, served pre-compressed and cached for a year.

Every file under static/ (the page's ES modules, the stylesheet, and the front-end libraries
that scripts/vendor_assets.py vendored from npm into static/vendor/) gets a URL with a hash of
its content, `/static/js/run.3f9a0c21d4.js`, which the templates ask for with
`{{ asset("js/run.js") }}`. Such a URL never changes meaning, so it is served with
`Cache-Control: public, max-age=31536000, immutable`: a repeat visit loads none of it again, and
a release changes the URLs of exactly the files that changed. The plain URL
(`/static/js/run.js`) still answers, revalidated on every use (`no-cache` with an ETag).

The ES modules import each other by relative URL (`import ... from "./plot.js"`). Their hashed
copies import the hashed URLs instead: each module's imports are rewritten before it is
hashed, dependencies first, so a module's hash covers everything it loads and no page ever
mixes modules of two releases. (The source files stay as they are; Node's tests import them.)

Each file is served in the best encoding the browser accepts: brotli, gzip or none. Vendored
libraries ship their `.br` and `.gz` twins (brotli at its best level takes seconds per
megabyte, too slow for a server start); the app's own files are compressed when loaded. The
whole set is read once per process (a stat of every file, at most once a second, notices an
edit during development and reloads it), so a request is a dictionary lookup.

Where static/ is: `package_dir("static")`, package data of the installed wheel found with
importlib.resources (`app/static` there), or the top-level folder of a checkout.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import logging
import posixpath
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from starlette.responses import Response

log = logging.getLogger(__name__)

PREFIX = "/static"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
HASH_CHARS = 10  # hex digits of sha256 in a URL: 40 bits, plenty for one site's files
MODULES = "js/"  # ES modules whose relative imports are rewritten to hashed URLs
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".json": "application/json",
    ".txt": "text/plain; charset=utf-8", ".html": "text/html; charset=utf-8",
    ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2",
}
COMPRESSIBLE = {".js", ".mjs", ".css", ".svg", ".json", ".txt", ".html"}
MIN_COMPRESS = 256  # bytes: below this an encoded body is no smaller
BROTLI_AT_LOAD = 256 * 1024  # larger files without a .br twin get gzip only (brotli is slow)
RECHECK_SECONDS = 1.0
TWINS = {".br": "br", ".gz": "gzip"}  # pre-compressed files beside a vendored one
# A statement that starts a line, `import ... from "./x.js"` (over several lines too),
# `export ... from "./x.js"` or `import "./x.js"`, and `import("./x.js")` anywhere: the
# quote, then the relative specifier. A comment never starts with `import`.
IMPORT = re.compile(r"""(^[ \t]*(?:import|export)\b[^;'"]*?\bfrom\s*|^[ \t]*import\s*"""
                    r"""|\bimport\s*\(\s*)(["'])(\.{1,2}/[^"'\s]+)\2""", re.M)


def package_dir(name: str) -> Path:
    """`templates` or `static`: the wheel's package data (app/<name>), found with
    importlib.resources, or else the checkout's top-level folder of that name."""
    packaged = importlib.resources.files("app") / name
    if packaged.is_dir():
        return Path(str(packaged))  # an installed wheel is always a folder, never a zip
    return Path(__file__).resolve().parents[2] / name


@dataclass(frozen=True)
class Asset:
    path: str  # relative to static/, with "/": "js/run.js"
    digest: str  # the first HASH_CHARS hex digits of the served body's sha256
    url: str  # "/static/js/run.3f9a0c21d4.js"
    media_type: str
    body: bytes  # as served without an encoding (a module: with its imports rewritten)
    encoded: dict[str, bytes] = field(default_factory=dict)  # "br", "gzip" -> body


@dataclass(frozen=True)
class Snapshot:
    """Every asset of one state of static/, by path and by hashed URL path."""

    by_path: dict[str, Asset]
    by_hashed: dict[str, Asset]
    imports: dict[str, tuple[str, ...]]  # module -> the modules it imports directly


class Assets:
    """The URL helper for templates (`url`, `preload`) and the responder for /static/."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else package_dir("static")
        self._lock = threading.Lock()
        self._checked = 0.0
        self._snapshot = _build(self.root, _signature(self.root))

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        if now - self._checked > RECHECK_SECONDS:
            with self._lock:
                self._checked = now
                try:
                    self._snapshot = _build(self.root, _signature(self.root))
                except (OSError, ValueError) as e:  # a file half written: keep what was served
                    log.warning("static/ changed but cannot be loaded (%s); serving it as it was",
                                e)
        return self._snapshot

    def url(self, path: str) -> str:
        """The hashed URL of a file under static/; a KeyError for one that is not there."""
        try:
            return self.snapshot().by_path[path].url
        except KeyError:
            raise KeyError(f"static/{path} does not exist") from None

    def preload(self, module: str) -> list[str]:
        """Hashed URLs of every module that `module` imports, directly or not (for
        <link rel="modulepreload">: the browser fetches them at once, not import by import)."""
        snap, seen, order = self.snapshot(), set(), []

        def walk(path: str) -> None:
            for dep in snap.imports.get(path, ()):
                if dep not in seen:
                    seen.add(dep)
                    order.append(snap.by_path[dep].url)
                    walk(dep)

        walk(module)
        return order

    def urls(self) -> list[str]:
        """Every hashed URL (for tests and checks)."""
        return sorted(a.url for a in self.snapshot().by_path.values())

    def respond(self, path: str, accept_encoding: str, if_none_match: str | None) -> Response:
        """The answer for /static/<path>: hashed (immutable) or plain (revalidated)."""
        snap = self.snapshot()
        asset, immutable = snap.by_hashed.get(path), True
        if asset is None:
            asset, immutable = snap.by_path.get(path), False
        if asset is None:
            return Response(f"static/{path} not found", status_code=404, media_type="text/plain")
        encoding = pick_encoding(accept_encoding, asset.encoded)
        etag = f'"{asset.digest}{"-" + encoding if encoding else ""}"'
        headers = {"Cache-Control": IMMUTABLE if immutable else REVALIDATE, "ETag": etag,
                   "Vary": "Accept-Encoding"}
        if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers=headers)
        if encoding:
            headers["Content-Encoding"] = encoding
        body = asset.encoded[encoding] if encoding else asset.body
        return Response(body, headers=headers, media_type=asset.media_type)


def pick_encoding(accept_encoding: str, available: dict[str, bytes]) -> str | None:
    """brotli, else gzip, else None, among those the client accepts (q > 0) and we have."""
    accepted = set()
    for part in accept_encoding.lower().split(","):
        token, _, params = part.strip().partition(";")
        q = params.strip().removeprefix("q=")
        try:
            if params and float(q) <= 0:
                continue
        except ValueError:
            continue
        accepted.add(token.strip())
    for encoding in ("br", "gzip"):
        if encoding in available and (encoding in accepted or "*" in accepted):
            return encoding
    return None


def hashed_name(path: str, digest: str) -> str:
    """js/run.js -> js/run.<digest>.js; vendor/htmx.min.js -> vendor/htmx.min.<digest>.js"""
    stem, dot, suffix = path.rpartition(".")
    if not dot or "/" in suffix:
        return f"{path}.{digest}"
    return f"{stem}.{digest}.{suffix}"


# -- loading ------------------------------------------------------------------------------------


def _signature(root: Path) -> tuple:
    """What changes when any file under static/ does: paths, sizes and modification times."""
    entries = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            entries.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(entries)


@functools.lru_cache(maxsize=2)
def _build(root: Path, signature: tuple) -> Snapshot:
    files = {rel for rel, _, _ in signature}
    twins = {rel for rel in files if rel.endswith((".gz", ".br")) and rel[:-3] in files}
    sources = {rel: (root / rel).read_bytes() for rel in sorted(files - twins)}
    modules = {rel for rel in sources if rel.startswith(MODULES) and rel.endswith(".js")}
    imports = {rel: _imports(rel, sources[rel], sources) for rel in modules}
    by_path: dict[str, Asset] = {}

    def make(rel: str, stack: tuple[str, ...] = ()) -> Asset:
        if rel in by_path:
            return by_path[rel]
        if rel in stack:
            cycle = " -> ".join((*stack[stack.index(rel):], rel))
            raise ValueError(f"static/ modules import each other in a cycle: {cycle}")
        body = sources[rel]
        if rel in modules:  # dependencies first: their hashed URLs go into this body
            urls = {dep: make(dep, (*stack, rel)).url for dep in imports[rel]}
            body = _rewrite(rel, body, urls)
        digest = hashlib.sha256(body).hexdigest()[:HASH_CHARS]
        suffix = Path(rel).suffix.lower()
        mine = {TWINS[t[-3:]]: root / t for t in twins if t[:-3] == rel}
        encoded = _encodings(root / rel, body, rel in modules, mine)
        asset = Asset(rel, digest, f"{PREFIX}/{hashed_name(rel, digest)}",
                      MEDIA_TYPES.get(suffix, "application/octet-stream"), body, encoded)
        by_path[rel] = asset
        return asset

    for rel in sources:
        make(rel)
    by_hashed = {a.url.removeprefix(PREFIX + "/"): a for a in by_path.values()}
    return Snapshot(by_path, by_hashed, imports)


def _imports(rel: str, body: bytes, sources: dict[str, bytes]) -> tuple[str, ...]:
    found = []
    for match in IMPORT.finditer(body.decode("utf-8")):
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), match.group(3)))
        if target not in sources:
            raise ValueError(f"static/{rel} imports {match.group(3)}, which is not in static/")
        if target not in found:
            found.append(target)
    return tuple(found)


def _rewrite(rel: str, body: bytes, urls: dict[str, str]) -> bytes:
    def hashed(match: re.Match) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), match.group(3)))
        # a relative URL keeps working behind any prefix the app is mounted under
        relative = posixpath.relpath(urls[target], posixpath.dirname(f"{PREFIX}/{rel}"))
        if not relative.startswith("../"):
            relative = "./" + relative
        return f"{match.group(1)}{match.group(2)}{relative}{match.group(2)}"

    return IMPORT.sub(hashed, body.decode("utf-8")).encode("utf-8")


def _encodings(path: Path, body: bytes, rewritten: bool, twins: dict[str, Path]) -> dict:
    """The encoded bodies: the vendored twins where they match, else compressed now."""
    if Path(path).suffix.lower() not in COMPRESSIBLE or len(body) < MIN_COMPRESS:
        return {}
    if not rewritten and twins:
        return _twins(path, body, tuple(sorted(twins.items())))
    return _compress(body)


@functools.lru_cache(maxsize=64)
def _twins(path: Path, body: bytes, twins: tuple[tuple[str, Path], ...]) -> dict[str, bytes]:
    """The shipped .br/.gz twins, each checked once to decode to the file itself (a stale
    twin would serve another version of the library to every browser that accepts it)."""
    out = {}
    for encoding, twin in twins:
        data = twin.read_bytes()
        try:
            ok = _decode(encoding, data) == body
        except Exception:  # a truncated or foreign file
            ok = False
        if ok:
            out[encoding] = data
        else:
            log.warning("%s does not decode to %s: compressing it here instead", twin, path.name)
    if "gzip" not in out:
        out["gzip"] = gzip.compress(body, compresslevel=9, mtime=0)
    return out


def _decode(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    import brotli

    return brotli.decompress(data)


def _compress(body: bytes) -> dict[str, bytes]:
    out = {"gzip": gzip.compress(body, compresslevel=9, mtime=0)}
    if len(body) <= BROTLI_AT_LOAD:
        try:
            import brotli
        except ImportError:  # brotli is a dependency; without it, gzip only
            return out
        out["br"] = brotli.compress(body, quality=11)
    return out
