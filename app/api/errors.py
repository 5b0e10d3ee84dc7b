"""One JSON error shape for every failure: `{"error": {"code": ..., "message": ...}}`.

Routes and dependencies raise `ApiError`; the handlers below also turn FastAPI's own
errors (unknown route, bad parameters, an unexpected exception) into the same shape,
so a client never has to parse two formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import DatabaseUnavailable
from app.observability import correlation
from app.observability.logging import get_logger

log = get_logger(__name__)

# Codes for Starlette's own HTTP errors (unknown route, wrong method...).
_DEFAULT_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class ApiError(StarletteHTTPException):
    """An HTTP error with a stable machine-readable `code`."""

    def __init__(self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code


def error_response(status_code: int, code: str, message: str, *, details: Any = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = jsonable_encoder(details)
    return JSONResponse({"error": body}, status_code=status_code, headers=headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or _DEFAULT_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
    return error_response(422, "invalid_request", "the request does not match the API", details=details)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    # Any route whose query finds the database away: a retryable 503, not a 500.
    log.warning("database unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
    cid = getattr(request.state, "correlation_id", None)
    headers = {"Retry-After": "30", **({correlation.HEADER: cid} if cid else {})}
    return error_response(503, "database_unavailable", "the database is unreachable; try again later", headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # This handler runs outside every middleware, so the correlation header is added here.
    cid = getattr(request.state, "correlation_id", None)
    log.error("unhandled error", correlation_id=cid, exc_info=exc)
    headers = {correlation.HEADER: cid} if cid else None
    return error_response(500, "internal_error", "unexpected server error", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for database_error in (OperationalError, InterfaceError, DatabaseUnavailable):
        app.add_exception_handler(database_error, _database_down)
    app.add_exception_handler(Exception, _unexpected_error)
