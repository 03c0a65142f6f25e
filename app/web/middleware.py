"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks long SSE streams).

- BodyLimit: refuses bodies over `max_bytes` with 413, by Content-Length up front and by
  counting chunks for streamed bodies, before any handler parses them.
- SameOrigin: refuses (403) a request whose Origin header names another site: a form or
  script of another site cannot act for a visitor (requests with no Origin: curl, scripts,
  plain navigation, pass).
- ClientAddress: the client's network address, for the per-address limits: the connection's
  peer, or, when that peer is a trusted proxy, the first address in X-Forwarded-For (read
  from the right) that is not one.
- ClientCookie: who is asking: the owner token header, a valid client cookie, or a new id
  sent as the cookie (a malformed or empty cookie is replaced).
- SecurityHeaders: a Content-Security-Policy that only allows the app's own scripts. A route
  that needs another policy sets its own header, which is kept (/docs and /redoc: DOCS_CSP).
- Compression: gzip for HTML, JSON and other text the routes answer; never for event streams
  (each event must leave when it is sent) nor for static files (app/web/assets.py serves
  those already encoded).
"""

from __future__ import annotations

import ipaddress
import json

from starlette.exceptions import HTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.deps import CLIENT_COOKIE, OWNER_HEADER, new_client_id, valid_client_id

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)  # Plotly sets inline styles on its SVG; scripts come only from /static
# Swagger UI (/docs) and ReDoc (/redoc), vendored under /static: the same, and ReDoc's search
# runs in a worker it starts from a blob: URL.
DOCS_CSP = CSP + "; worker-src 'self' blob:"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a streamed body: FastAPI renders this as 413
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"request body is larger than the limit of {self.max_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self._message()}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class ClientCookie:
    """Who is asking: the client id from a valid `X-Owner-Token` header (scripts without
    cookies), else from a valid client cookie, else a new one, sent back as the cookie. A
    malformed or empty cookie is replaced, never trusted. The id (raw) goes to
    `scope["state"]["client_id"]`; app.web.deps hashes it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        token = headers.get(OWNER_HEADER, b"").decode("latin-1").strip()
        cookie = cookie_parser(headers.get(b"cookie", b"").decode("latin-1")).get(
            CLIENT_COOKIE, "")
        new = None
        if valid_client_id(token):
            client = token
        elif valid_client_id(cookie):
            client = cookie
        else:
            client = new = new_client_id()
        state = scope.setdefault("state", {})
        state["client_id"], state["new_client"] = client, new

        async def send_with_cookie(message: Message) -> None:
            if new and message["type"] == "http.response.start":
                value = (f"{CLIENT_COOKIE}={new}; Path=/; Max-Age=31536000; HttpOnly; "
                         "SameSite=Lax")
                message.setdefault("headers", []).append((b"set-cookie", value.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                if not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", CSP.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"same-origin"))
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Compression(GZipMiddleware):
    """Starlette's gzip, which passes through what is already encoded (static files) and
    what is excluded by type; text/event-stream is excluded by name here, not only by
    Starlette's default, since a compressed stream would hold events back."""

    def __init__(self, app: ASGIApp):
        excluded = tuple({*DEFAULT_EXCLUDED_CONTENT_TYPES, "text/event-stream"})
        super().__init__(app, minimum_size=500, compresslevel=6,
                         exclude_content_types=excluded)
        self.plain = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/static/"):
            return await self.plain(scope, receive, send)  # encoded already, as asked
        await super().__call__(scope, receive, send)


def _refuse(status: int, detail: str, headers: list | None = None):
    """A JSON refusal sent straight from a middleware, before any route."""
    body = json.dumps({"detail": detail}).encode()

    async def respond(send: Send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                *(headers or [])]})
        await send({"type": "http.response.body", "body": body})
    return respond


def _netloc(value: str, scheme: str = "") -> str:
    """host[:port] in lower case, the scheme's default port dropped."""
    value = value.strip().lower()
    if "://" in value:
        scheme, value = value.split("://", 1)
    value = value.split("/", 1)[0]
    for default, port in (("http", ":80"), ("https", ":443"), ("ws", ":80"), ("wss", ":443")):
        if scheme == default and value.endswith(port):
            return value[: -len(port)]
    return value


def _hostname(netloc: str) -> str:
    if netloc.startswith("["):  # [v6]:port
        return netloc.split("]", 1)[0] + "]"
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


class SameOrigin:
    """Refuse requests from another site's pages: an Origin header that is neither this
    server's (the Host it was asked as: the same host and port, or the same host behind a
    proxy that dropped the port) nor one of `allowed`."""

    def __init__(self, app: ASGIApp, allowed: set[str] | None = None):
        self.app, self.allowed = app, {_netloc(o) for o in (allowed or ())}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is not None and not self.same(origin.decode("latin-1"), headers):
            shown = origin.decode("latin-1")[:100]
            return await _refuse(403, f"requests from another site (Origin: {shown}) are "
                                      "refused; open the playground itself")(send)
        await self.app(scope, receive, send)

    def same(self, origin: str, headers: dict) -> bool:
        seen = _netloc(origin)
        if not seen or origin.strip() == "null":
            return False
        if seen in self.allowed:
            return True
        scheme = origin.strip().lower().split("://", 1)[0]
        host = _netloc(headers.get(b"host", b"").decode("latin-1"), scheme)
        return seen == host or (":" not in host.lstrip("[").split("]")[-1]
                                and _hostname(seen) == host)


class ClientAddress:
    """`scope["state"]["address"]`: the network address the per-address limits count (an
    IPv6 client by its /64, which one home or phone usually holds)."""

    def __init__(self, app: ASGIApp, proxies: list | None = None):
        self.app, self.proxies = app, proxies or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["address"] = self.address(scope)
        await self.app(scope, receive, send)

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    def address(self, scope: Scope) -> str:
        peer = (scope.get("client") or ("unknown", 0))[0]
        if self.proxies and self.trusted(peer):
            hops = [h.strip() for k, v in scope["headers"] if k == b"x-forwarded-for"
                    for h in v.decode("latin-1").split(",") if h.strip()]
            for hop in reversed(hops):  # the nearest hop first: only proxies can add to it
                peer = hop
                if not self.trusted(hop):
                    break
        return group(peer)


def group(address: str) -> str:
    """The unit an address is counted as: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)

