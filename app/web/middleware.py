"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks long SSE streams).

- BodyLimit: refuses bodies over `max_bytes` with 413, by Content-Length up front and by
  counting chunks for streamed bodies, before any handler parses them.
- ClientCookie: gives every browser an anonymous random client id cookie on first sight.
- SecurityHeaders: a Content-Security-Policy that only allows the app's own scripts.
"""

from __future__ import annotations

import json
from http.cookies import SimpleCookie

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.deps import CLIENT_COOKIE, new_client_id

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)  # Plotly sets inline styles on its SVG; scripts come only from /static and /vendor


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
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cookie = SimpleCookie(dict(scope["headers"]).get(b"cookie", b"").decode("latin-1"))
        new = None if CLIENT_COOKIE in cookie else new_client_id()
        scope.setdefault("state", {})["new_client"] = new

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
                headers.append((b"content-security-policy", CSP.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"same-origin"))
            await send(message)

        await self.app(scope, receive, send_with_headers)
