"""Application metrics (prometheus-client): what the pipeline did, for dashboards and alerts.

    demeter_photos_finished_total{status}          photos that reached a final status (completed|warning|failed)
    demeter_plants_counted_total                   plants counted in finished photos
    demeter_photo_latency_seconds                  upload (session created) to final status, histogram
    demeter_stage_seconds{stage}                   decode | segmentation | detection (one region) | aggregation
    demeter_dead_letters_total{task}               tasks that failed for good, by short task name
    demeter_queue_depth{queue,priority}            messages waiting, per queue and priority level (Redis broker)
    demeter_photos_submitted_total                 photos accepted (API uploads and `demeter process`/`demo`)

Labels are bounded: statuses and stages are fixed lists, task names come from app/names.py
(anything else is "other"), queues from the settings (GPU_QUEUES) and priorities from the
broker's four levels. No process id, host name or photo id is ever a label.

Where they are served: the API at `/metrics` (its own counters and the queue depths); each
worker on METRICS_PORT (0: not served) from its main process (workers/metrics.py). A
prefork worker's children write to files in a per-worker folder (prometheus-client's
multiprocess mode, PROMETHEUS_MULTIPROC_DIR) that the main process adds up, so counters
survive the recycling of children.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app import names

disable_created_metrics()  # no `*_created` series: they only double what a dashboard has to skip

Stage = Literal["decode", "segmentation", "detection", "aggregation"]
FINAL_STATUSES = ("completed", "warning", "failed")
# Kombu's Redis transport keeps each priority level of a queue in its own list: "<queue>" for 0, then
# "<queue>\x06\x16<level>" (kombu.transport.redis, PRIORITY_STEPS and the separator); see docs/operations.md.
PRIORITY_LEVELS = (0, 3, 6, 9)
PRIORITY_SEPARATOR = "\x06\x16"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable; set by workers/metrics.py
TASK_LABELS = {
    value: value.rsplit(".", 1)[-1] for key, value in vars(names).items() if key.endswith("_TASK")
}
LATENCY_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)  # seconds
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)  # seconds

PHOTOS_FINISHED = Counter("demeter_photos_finished", "Photos that reached a final status", ["status"])
PLANTS_COUNTED = Counter("demeter_plants_counted", "Plants counted in photos that reached a final status")
PHOTO_LATENCY = Histogram("demeter_photo_latency_seconds", "From upload (session created) to final status",
                          buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram("demeter_stage_seconds", "Time of one pipeline stage (detection: one region)",
                          ["stage"], buckets=STAGE_BUCKETS)
DEAD_LETTERS = Counter("demeter_dead_letters", "Tasks that failed for good and were dead-lettered", ["task"])
PHOTOS_SUBMITTED = Counter("demeter_photos_submitted", "Photos accepted, stored and queued")


def task_label(task_name: str) -> str:
    """A task's short name when it is one of ours, else 'other' (the label set stays bounded)."""
    return TASK_LABELS.get(task_name, "other")


def photo_finished(status: str, total: int | None, latency_seconds: float | None) -> None:
    """Count a photo that just reached `status`; `latency_seconds` from its upload (None: unknown)."""
    PHOTOS_FINISHED.labels(status if status in FINAL_STATUSES else "other").inc()
    if total:
        PLANTS_COUNTED.inc(total)
    if latency_seconds is not None and latency_seconds >= 0:
        PHOTO_LATENCY.observe(latency_seconds)


def dead_lettered(task_name: str) -> None:
    DEAD_LETTERS.labels(task_label(task_name)).inc()


@contextmanager
def stage(name: Stage) -> Iterator[None]:
    """Time the block as one `name` stage (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(name).observe(time.perf_counter() - started)


def queue_names(gpu_queues: int) -> list[str]:
    return [*(names.gpu_queue(i) for i in range(gpu_queues)), names.CPU_QUEUE, names.IO_QUEUE,
            names.DEAD_LETTER_QUEUE]


def priority_key(queue: str, level: int) -> str:
    return queue if level == 0 else f"{queue}{PRIORITY_SEPARATOR}{level}"


class QueueDepthCollector(Collector):
    """`demeter_queue_depth{queue,priority}`, read from the Redis broker at each scrape (LLEN per list).

    Reports nothing for another broker (the embedded filesystem one) or when Redis does not answer.
    """

    def __init__(self, broker_url: str, gpu_queues: int, timeout: float = 2.0) -> None:
        self.broker_url, self.gpu_queues, self.timeout = broker_url, gpu_queues, timeout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self.broker_url.startswith(("redis://", "rediss://")):
            return
        import redis

        family = GaugeMetricFamily("demeter_queue_depth", "Messages waiting in the broker",
                                   labels=["queue", "priority"])
        try:
            client = redis.Redis.from_url(self.broker_url, socket_timeout=self.timeout,
                                          socket_connect_timeout=self.timeout)
            with client.pipeline(transaction=False) as pipe:
                keys = [(q, level) for q in queue_names(self.gpu_queues) for level in PRIORITY_LEVELS]
                for queue, level in keys:
                    pipe.llen(priority_key(queue, level))
                depths = pipe.execute()
            client.close()
        except redis.RedisError:
            return
        for (queue, level), depth in zip(keys, depths, strict=True):
            family.add_metric([queue, str(level)], float(depth))
        yield family


def worker_registry() -> CollectorRegistry:
    """The samples of this worker's processes, added up (multiprocess mode), or this process's own."""
    from prometheus_client import REGISTRY, multiprocess

    if not os.environ.get(MULTIPROCESS_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def serve_worker_metrics(port: int, address: str = "0.0.0.0") -> None:
    """Serve this worker's metrics on `port` from a background thread (0: not served)."""
    if port:
        start_http_server(port, addr=address, registry=worker_registry())
