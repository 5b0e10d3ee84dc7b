"""GPU worker: solo pool, one process per GPU, models loaded once at start.

    CUDA_VISIBLE_DEVICES=0 GPU_INDEX=0 python -m workers.gpu

CUDA does not survive fork, so this worker never forks: `--pool=solo
--concurrency=1`, consuming only `gpu_queue_<GPU_INDEX>`. Without a CUDA device it
runs on the CPU and says so loudly. Before it consumes, it takes its queue's lease and
requeues what a dead predecessor left unacknowledged (workers/handover.py).
"""

from __future__ import annotations

import sys
from typing import Any

import redis
from celery.signals import worker_init, worker_shutdown

from app.celery_app import app
from app.config import get_settings
from app.ml.registry import get_registry
from app.names import gpu_queue
from app.observability.logging import celery_banner_options, configure_from_settings, get_logger
from workers.handover import QueueLease, requeue_predecessor_deliveries, stop_warmly
from workers.metrics import install as install_metrics
from workers.queues import import_tasks_for
from workers.recycling import RecyclePolicy, install

log = get_logger("workers.gpu")
_lease: list[QueueLease] = []  # this process's GPU queue lease, once taken


@worker_init.connect
def _load_models(**_: Any) -> None:
    """Load and warm the models before consuming; without them the worker must not start."""
    try:
        registry = get_registry()
    except LookupError as exc:  # DETECTION_MODEL or `demeter models use` names a model that is not there
        log.critical("cannot resolve the detection model; the GPU worker stops", error=str(exc))
        raise SystemExit(3) from exc
    if registry.device == "cpu":
        log.warning("NO CUDA DEVICE: the GPU worker runs its models on the CPU", device=registry.device)
    try:
        registry.preload()
    except Exception as exc:
        log.critical("cannot load models; the GPU worker stops", error=str(exc))
        raise SystemExit(3) from exc
    log.info("models loaded and warmed up", device=registry.device,
             detection_weights=registry.settings.detection_weights,
             detection_confidence=registry.settings.detection_confidence)


@worker_init.connect
def _take_over_the_queue(**_: Any) -> None:
    """Become the one consumer of this GPU's queue, then requeue what a dead predecessor held.

    Connected after `_load_models`, so waiting for a dead predecessor's lease overlaps the model
    loading. Redis brokers only: the embedded filesystem broker has no unacknowledged set.
    """
    settings = get_settings()
    if not settings.broker_url_resolved.startswith(("redis://", "rediss://")):
        return
    queue = gpu_queue(settings.gpu_index)
    lease = QueueLease(redis.Redis.from_url(settings.broker_url_resolved), queue, settings.gpu_lease_seconds)
    lease.acquire()
    _lease.append(lease)
    lease.keep_alive(on_lost=stop_warmly)
    requeue_predecessor_deliveries(app, queue)


@worker_shutdown.connect
def _release_the_queue(**_: Any) -> None:
    """After a warm shutdown (nothing held any more), a successor may start at once."""
    for lease in _lease:
        lease.release()


def argv(index: int, extra: list[str]) -> list[str]:
    return [
        "worker",
        "--pool=solo",
        "--concurrency=1",
        f"--queues={gpu_queue(index)}",
        "-E",
        f"--hostname=gpu{index}@%h",
        "--loglevel=INFO",
        *extra,
    ]


def main() -> None:
    configure_from_settings()
    install_metrics("gpu")
    settings = get_settings()
    install(RecyclePolicy(settings.gpu_max_tasks_per_child, settings.gpu_max_memory_per_child_kb,
                          settings.gpu_max_cuda_memory_mb))
    args = argv(settings.gpu_index, sys.argv[1:])
    import_tasks_for(app, args)
    app.worker_main([*celery_banner_options(), *args])


if __name__ == "__main__":
    main()
