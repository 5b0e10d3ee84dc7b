"""Probes: `/healthz` says the process serves, `/readyz` that its dependencies answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.readiness import run_checks
from app.api.schemas import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """Liveness: no dependency is consulted, so a database outage never restarts the API."""
    return Liveness()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz() -> JSONResponse:
    """Readiness: database `SELECT 1`, a broker connection and a storage ping; 503 names what failed."""
    checks = await run_checks()
    ready = all(result == "ok" for result in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
