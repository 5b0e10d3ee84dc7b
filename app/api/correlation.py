"""Correlation id middleware: one id per request, from `X-Correlation-ID` or fresh.

A pure ASGI middleware (not `BaseHTTPMiddleware`), so the id is bound in the very
context the route runs in, and it is echoed on every response, errors included.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import correlation


class CorrelationIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = correlation.sanitize(Headers(scope=scope).get(correlation.HEADER))
        scope.setdefault("state", {})["correlation_id"] = cid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[correlation.HEADER] = cid
            await send(message)

        correlation.bind(cid, path=scope.get("path"))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation.clear()
