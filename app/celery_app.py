"""The Celery app: configuration, queues and routing, in one place.

Task modules are not imported here: each worker entrypoint imports the modules of the
queues it consumes (`task_modules`), and publishers send tasks by name (app/names.py).

Queues:
- `gpu_queue_<n>`: one per GPU, consumed by one solo-pool worker each. The photo's
  parent task and all its region children run there (the children reuse the photo
  that the parent decoded, from the worker's cache).
- `cpu`: aggregation into the database and housekeeping (prefork pool).
- `io`: annotated images, thumbnails, notifications (gevent pool).
- `dead_letter`: copies of tasks that failed for good, for inspection and replay.
"""

from __future__ import annotations

import socket
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_init

from app import names, topology
from app.config import Settings, get_settings
from app.names import CPU_QUEUE, DEAD_LETTER_QUEUE, IO_QUEUE, gpu_queue, is_gpu_queue

# Routing: every task's queue, by its name (app/names.py). A GPU task is routed to gpu_queue_0 here;
# the API picks the photo's GPU queue when it publishes (app/intake.py, GpuQueuePicker: round-robin
# over the GPU queues that have a live worker), and a photo's region tasks follow their parent's queue.
#
# A GPU queue serves region tasks before new photos: the priority each broker needs for that is added
# by app/topology.py (Redis serves the lowest number first, RabbitMQ the highest, quorum queues none).
TASK_ROUTES: dict[str, dict[str, str]] = {
    names.PARENT_TASK: {"queue": gpu_queue(0)},
    names.CHILD_TASK: {"queue": gpu_queue(0)},
    names.AGGREGATE_TASK: {"queue": CPU_QUEUE},
    names.AGGREGATE_REGION_TASK: {"queue": CPU_QUEUE},
    names.SWEEP_TASK: {"queue": CPU_QUEUE},
    names.RECONCILE_TASK: {"queue": CPU_QUEUE},
    names.DEAD_LETTER_REPORT_TASK: {"queue": CPU_QUEUE},
    names.CLEANUP_TASK: {"queue": CPU_QUEUE},
    names.BROKER_DEAD_LETTER_TASK: {"queue": CPU_QUEUE},
    names.RENDER_TASK: {"queue": IO_QUEUE},
    "celery.chord_unlock": {"queue": CPU_QUEUE},
}

# The task modules each pool imports: a worker loads only the code of the queues it consumes, so the
# cpu and io workers never import torch or OpenCV (workers/*.py pass these to `task_modules`).
GPU_TASK_MODULES = ["app.tasks.gpu", "app.tasks.probes"]
QUEUE_TASK_MODULES = {
    CPU_QUEUE: ["app.tasks.aggregation", "app.tasks.maintenance", "app.tasks.probes"],
    IO_QUEUE: ["app.tasks.io", "app.tasks.probes"],
}


def task_modules(queues: list[str]) -> list[str]:
    """The task modules a worker consuming `queues` must import, in a stable order without repeats."""
    modules = [m for q in queues for m in (GPU_TASK_MODULES if is_gpu_queue(q) else QUEUE_TASK_MODULES.get(q, []))]
    return list(dict.fromkeys(modules))


def gpu_queues(settings: Settings) -> list[str]:
    """The GPU queues of GPU_QUEUES workers: gpu_queue_0 .. gpu_queue_<n-1>."""
    return [gpu_queue(n) for n in range(max(1, settings.gpu_queues))]


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "sweep-stale-sessions": {"task": names.SWEEP_TASK, "schedule": settings.sweep_interval_seconds},
        "reconcile-unfinished": {"task": names.RECONCILE_TASK, "schedule": settings.reconcile_interval_seconds},
        "dead-letter-report": {"task": names.DEAD_LETTER_REPORT_TASK, "schedule": 3600.0},
        "cleanup-temporary-files": {"task": names.CLEANUP_TASK, "schedule": crontab(0, 3)},
        **topology.beat_schedule(settings),
    }


def _broker_options(settings: Settings) -> dict[str, Any]:
    if topology.broker_kind(settings.broker_url_resolved) == "amqp":
        return topology.amqp_transport_options(settings)
    options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
        # Redis: look for messages of dead workers every few seconds, not every 100 s (kombu's
        # default of 10 s x throttle 10), so a task past its visibility timeout comes back soon.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
    }
    if settings.embedded_broker:
        folder = settings.broker_folder
        for sub in ("messages", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        options.update(
            data_folder_in=str(folder / "messages"),
            data_folder_out=str(folder / "messages"),
            control_folder=str(folder / "control"),
            polling_interval=settings.broker_polling_interval,
        )
    return options


def celery_config(settings: Settings) -> dict[str, Any]:
    queues = [*gpu_queues(settings), CPU_QUEUE, IO_QUEUE, DEAD_LETTER_QUEUE]
    if settings.result_backend_resolved.startswith("file://"):
        settings.data_dir.joinpath("results").mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": settings.broker_url_resolved,
        "result_backend": settings.result_backend_resolved,
        "broker_transport_options": _broker_options(settings),
        # The embedded broker writes each message whole before a worker can take it (app/embedded_broker.py).
        "broker_transport": "app.embedded_broker:Transport" if settings.embedded_broker else None,
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_queues": topology.declared_queues(queues, settings),
        "task_default_queue": CPU_QUEUE,
        "task_routes": topology.task_routes(TASK_ROUTES, settings),
        **topology.amqp_celery_options(settings),
        # A task is acknowledged only when it has finished, and a task whose worker
        # died is redelivered: nothing is lost, so every side effect is idempotent.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # SIGTERM is a warm shutdown: the running task finishes. A second signal (cold shutdown)
        # still gives running tasks this long before they are cancelled and requeued.
        "worker_soft_shutdown_timeout": settings.worker_soft_shutdown_timeout,
        "task_track_started": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "result_extended": True,
        # Nothing reads a finished photo's task results (the API reads the database); region results are
        # not stored at all (app/tasks/gpu.py), and a chord's list of them lives until its callback ran.
        "result_expires": settings.result_expires_seconds,
        "worker_hijack_root_logger": False,
        "beat_schedule": beat_schedule(settings),
        "timezone": "UTC",
    }


def name_publisher(celery: Celery, name: str) -> None:
    """Send this process's `task-sent` events as `name` instead of Celery's `gen<PID>@host`.

    Flower labels its task metrics with the event's host name; with one value per process id, every
    API or CLI process, every recycled prefork child and every restarted GPU worker would add label
    values for ever. Workers call this with their node name (signals.py), everything else publishes as
    `publisher@<host>`. Celery keeps the dispatcher it publishes these events with in
    `app.amqp._event_dispatcher`; tests/test_metrics.py fails if that ever changes.
    """
    celery.amqp._event_dispatcher = celery.events.Dispatcher(enabled=False, hostname=name)


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery = Celery("demeter")  # no task modules: each worker entrypoint imports its own
    celery.config_from_object(celery_config(settings))
    name_publisher(celery, f"publisher@{socket.gethostname()}")
    return celery


app = create_app()


@worker_init.connect
def _declare_topology(**_: Any) -> None:
    topology.declare(app)  # RabbitMQ: the dead-letter route exists before anything is rejected

from app.observability import signals as _signals  # noqa: E402,F401  (connects the worker and publish hooks)
