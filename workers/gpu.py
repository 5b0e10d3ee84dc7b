"""GPU worker: solo pool, one process per GPU, models loaded once at start.

    CUDA_VISIBLE_DEVICES=0 GPU_INDEX=0 python -m workers.gpu

CUDA does not survive fork, so this worker never forks: `--pool=solo
--concurrency=1`, consuming only `gpu_queue_<GPU_INDEX>`. Without a CUDA device it
runs on the CPU and says so loudly.
"""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import worker_init

from app.celery_app import app
from app.config import get_settings
from app.ml.registry import get_registry
from app.names import gpu_queue
from app.observability.logging import configure_logging, get_logger
from app.topology import solo_worker_options
from workers.queues import import_tasks_for, refuse_short_consumer_timeout
from workers.recycling import RecyclePolicy, install

log = get_logger("workers.gpu")


@worker_init.connect
def _load_models(**_: Any) -> None:
    """Load and warm the models before consuming; without them the worker must not start."""
    registry = get_registry()
    if registry.device == "cpu":
        log.warning("NO CUDA DEVICE: the GPU worker runs its models on the CPU", device=registry.device)
    try:
        registry.preload()
    except Exception as exc:
        log.critical("cannot load models; the GPU worker stops", error=str(exc))
        raise SystemExit(3) from exc
    log.info("models loaded and warmed up", device=registry.device)


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
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    install(RecyclePolicy(settings.gpu_max_tasks_per_child, settings.gpu_max_memory_per_child_kb,
                          settings.gpu_max_cuda_memory_mb))
    refuse_short_consumer_timeout(settings)
    app.conf.update(solo_worker_options(settings))  # RabbitMQ: no heartbeats a solo pool cannot send
    args = argv(settings.gpu_index, sys.argv[1:])
    import_tasks_for(app, args)
    app.worker_main(args)


if __name__ == "__main__":
    main()
