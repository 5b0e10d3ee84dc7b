"""`GET /metrics`: Prometheus text format (app/observability/metrics.py): this process's counters and the
broker's queue depths, read at each scrape.

Never open on the API's port: with API_METRICS_PORT=0 (the default) it is served there and needs a key
with the `admin` scope (Prometheus: `authorization: {credentials: <key>}`); with API_METRICS_PORT set it
is served only on that port, without a key, for a scraper on a private network (app/api/server.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from app.api.security import require
from app.observability.metrics import QueueDepthCollector

router = APIRouter(tags=["metrics"])


class _ProcessMetrics(Collector):
    """This process's default registry (its counters, process and platform metrics), as one collector."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def scrape_registry(broker_url: str, gpu_queues: int) -> CollectorRegistry:
    """Everything the API exposes: this process's metrics and the broker's queue depths."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())
    registry.register(QueueDepthCollector(broker_url, gpu_queues))
    return registry


@router.get("/metrics", response_class=Response, include_in_schema=False, dependencies=[Depends(require("admin"))])
def metrics(request: Request) -> Response:
    """Blocking (one Redis round trip), so FastAPI runs it in its thread pool."""
    return Response(generate_latest(request.app.state.scrape_metrics), media_type=CONTENT_TYPE_LATEST)
