"""CPU worker: prefork pool for aggregation and housekeeping.

    python -m workers.cpu [--queues cpu]

Children are recycled after CPU_MAX_TASKS_PER_CHILD tasks or CPU_MAX_MEMORY_PER_CHILD_KB
of resident memory. This process forks, so it must never initialise CUDA.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery.signals import worker_process_init

from app.celery_app import app
from app.config import get_settings
from app.names import CPU_QUEUE
from app.observability.logging import celery_banner_options, configure_from_settings
from workers.metrics import install as install_metrics
from workers.priority import lower_priority
from workers.queues import import_tasks_for, refuse_short_consumer_timeout


@worker_process_init.connect
def _no_cuda_before_fork(**_: Any) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised in a prefork worker; it does not survive fork")


def argv(extra: list[str]) -> list[str]:
    settings = get_settings()
    concurrency = settings.cpu_concurrency or os.cpu_count() or 1
    return [
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        f"--queues={CPU_QUEUE}",
        f"--max-tasks-per-child={settings.cpu_max_tasks_per_child}",
        f"--max-memory-per-child={settings.cpu_max_memory_per_child_kb}",
        "-E",
        "--hostname=cpu@%h",
        "--loglevel=INFO",
        *extra,
    ]


def main() -> None:
    configure_from_settings()
    install_metrics("cpu", multiprocess=True)
    refuse_short_consumer_timeout(get_settings())
    lower_priority(get_settings().background_cpu_priority)
    args = argv(sys.argv[1:])
    import_tasks_for(app, args)
    app.worker_main([*celery_banner_options(), *args])


if __name__ == "__main__":
    main()
