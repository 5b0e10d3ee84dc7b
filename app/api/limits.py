"""A cap on request bodies, counted on the bytes actually received, and a deadline for them.

`Content-Length` is only used to refuse early; the body itself is counted chunk by
chunk as the server hands it over, so a missing or lying header changes nothing.
Without this, the multipart parser would spool an upload of any size to disk before
the route could look at it. A body that has not fully arrived `body_timeout` seconds after
the request started is refused with 408, so a client trickling bytes cannot hold a
request open for ever (uvicorn itself has no such timeout).
"""

from __future__ import annotations

import time

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import ApiError, error_response

MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the small metadata fields


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the upload is larger than the limit of {limit} bytes")


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than `max_bytes` with a JSON 413."""

    def __init__(self, app: ASGIApp, max_bytes: int, file_limit: int, body_timeout: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.file_limit = file_limit  # the limit named in the message, the one a client knows
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = too_large(self.file_limit)
            await error_response(413, error.code, str(error.detail))(scope, receive, send)
            return
        received = 0
        deadline = time.monotonic() + self.body_timeout
        body_done = False

        async def counting_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body: only http.disconnect is left to wait for, without a deadline
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise ApiError(408, "request_timeout",
                               f"the request body did not arrive within {self.body_timeout:g} s") from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the body parser; FastAPI re-raises HTTP errors to its handlers.
                    raise too_large(self.file_limit)
            return message

        await self.app(scope, counting_receive, send)
