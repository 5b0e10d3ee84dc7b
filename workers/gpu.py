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
from app.observability.logging import celery_banner_options, configure_from_settings, get_logger
from workers.metrics import install as install_metrics
from workers.queues import import_tasks_for
from workers.recycling import RecyclePolicy, install

log = get_logger("workers.gpu")


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
