"""The FastAPI application: `app.api.main:app` (served by `demeter api`).

`create_app(settings)` builds one; tests build their own with other limits.
"""

from __future__ import annotations

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.api import openapi
from app.api.correlation import CorrelationIdMiddleware
from app.api.errors import install_error_handlers
from app.api.limits import MULTIPART_OVERHEAD, BodySizeLimitMiddleware
from app.api.ratelimit import UploadRateLimiter
from app.api.routes import health, metrics, photos, stock
from app.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # /docs and /redoc from the Swagger UI and ReDoc files that fastapi-offline ships: no CDN, works offline.
    api = FastAPIOffline(
        title="Demeter Pipeline",
        version="0.1.0",
        summary="Greenhouse bench photos in, plant counts and stock rows out.",
    )
    api.state.settings = settings
    api.state.queue_metrics = metrics.queue_registry(settings.broker_url_resolved, settings.gpu_queues)
    api.state.upload_limiter = UploadRateLimiter.from_settings(settings)
    # Each upload is decoded once to validate it; this bounds how many photos are in memory at once.
    api.state.upload_slots = anyio.CapacityLimiter(settings.api_max_concurrent_uploads)
    install_error_handlers(api)
    openapi.install(api)
    # Added last = outermost: every response, a 413 included, carries the correlation id.
    api.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        file_limit=settings.max_upload_bytes,
        body_timeout=settings.api_body_timeout_seconds,
    )
    api.add_middleware(CorrelationIdMiddleware)
    api.include_router(health.router)
    api.include_router(photos.router)
    api.include_router(stock.router)
    api.include_router(metrics.router)
    return api


app = create_app()
