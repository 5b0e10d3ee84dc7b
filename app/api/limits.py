"""A cap on request bodies, counted on the bytes actually received.

`Content-Length` is only used to refuse early; the body itself is counted chunk by
chunk as the server hands it over, so a missing or lying header changes nothing.
Without this, the multipart parser would spool an upload of any size to disk before
the route could look at it.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import ApiError, error_response

MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the small metadata fields


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the upload is larger than the limit of {limit} bytes")


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than `max_bytes` with a JSON 413."""

    def __init__(self, app: ASGIApp, max_bytes: int, file_limit: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.file_limit = file_limit  # the limit named in the message, the one a client knows

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

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the body parser; FastAPI re-raises HTTP errors to its handlers.
                    raise too_large(self.file_limit)
            return message

        await self.app(scope, counting_receive, send)
