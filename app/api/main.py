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

# The API only publishes. Celery's Redis result backend retries its connection 20 times (19 s measured)
# inside send_task, holding the upload's thread; two quick tries answer 503 in about 1.3 s instead.
PUBLISH_RESULT_BACKEND_RETRIES = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}


def fail_fast_publishing() -> None:
    """Give this process's result backend PUBLISH_RESULT_BACKEND_RETRIES (before its first use)."""
    from app.celery_app import app as celery

    options = dict(celery.conf.result_backend_transport_options or {})
    celery.conf.result_backend_transport_options = {**options, "retry_policy": PUBLISH_RESULT_BACKEND_RETRIES}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    fail_fast_publishing()
    # /docs and /redoc from the Swagger UI and ReDoc files that fastapi-offline ships: no CDN, works offline.
    api = FastAPIOffline(
        title="Demeter Pipeline",
        version="0.1.0",
        summary="Greenhouse bench photos in, plant counts and stock rows out.",
        description="Every `/api/v1` route needs an API key (`demeter keys create`): press **Authorize** and "
                    "paste it. See the README's \"HTTP API: keys, scopes, tenants\".",
        swagger_ui_parameters={"persistAuthorization": True},  # the key survives a reload of /docs
    )
    api.state.settings = settings
    api.state.scrape_metrics = metrics.scrape_registry(settings.broker_url_resolved, settings.gpu_queues)
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
    if not settings.api_metrics_port:  # else served on that port only (app/api/server.py)
        api.include_router(metrics.router)
    return api


app = create_app()
