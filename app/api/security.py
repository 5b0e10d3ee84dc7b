"""Authentication and scopes: `Authorization: Bearer <API key>` on every photo and stock route.

401 (with `WWW-Authenticate: Bearer`) without a key or with a key that is unknown or revoked;
403 when the key lacks the route's scope. Declared as the OpenAPI security scheme `ApiKey`,
so the Authorize button in /docs sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.api.errors import ApiError
from app.api.ratelimit import UploadRateLimiter
from app.apikeys import Principal, Scope, authenticate
from app.db.session import db_session

bearer = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="dmt_<prefix>_<secret>",
    description="An API key made by `demeter keys create`, sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _lookup(token: str) -> Principal | None:
    with db_session() as db:
        return authenticate(db, token=token)


async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(401, "not_authenticated", "an API key is required: Authorization: Bearer <key>",
                       headers=_CHALLENGE)
    principal = await run_in_threadpool(_lookup, credentials.credentials)
    if principal is None:
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked", headers=_CHALLENGE)
    return principal


def require(scope: Scope) -> Callable[..., Principal]:
    """A dependency: the caller's key, which must hold `scope` (or `admin`)."""

    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.allows(scope):
            raise ApiError(403, "insufficient_scope", f"this API key lacks the scope {scope!r}")
        return principal

    return check


PhotosWriter = Annotated[Principal, Depends(require("photos:write"))]
PhotosReader = Annotated[Principal, Depends(require("photos:read"))]
StockReader = Annotated[Principal, Depends(require("stock:read"))]


def upload_quota(request: Request, principal: PhotosWriter) -> Principal:
    """The uploading key, within its UPLOAD_RATE_LIMIT (else 429 with Retry-After)."""
    limiter: UploadRateLimiter | None = request.app.state.upload_limiter
    if limiter is not None and (wait := limiter.wait_seconds(principal.prefix)):
        raise ApiError(429, "rate_limited", f"this API key may upload {limiter.item} photos; try again in {wait} s",
                       headers={"Retry-After": str(wait)})
    return principal


Uploader = Annotated[Principal, Depends(upload_quota)]
