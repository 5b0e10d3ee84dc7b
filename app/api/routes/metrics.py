"""`GET /metrics`: Prometheus text format (app/observability/metrics.py): this process's counters and the
broker's queue depths, read at each scrape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from app.observability.metrics import QueueDepthCollector

router = APIRouter(tags=["metrics"])


def queue_registry(broker_url: str, gpu_queues: int) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueDepthCollector(broker_url, gpu_queues))
    return registry


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Blocking (one Redis round trip), so FastAPI runs it in its thread pool."""
    body = generate_latest(REGISTRY) + generate_latest(request.app.state.queue_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
