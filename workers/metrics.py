"""A worker's /metrics (app/observability/metrics.py): served on METRICS_PORT once the worker is ready.

    install("cpu", multiprocess=True)   # first thing in a worker's main(), before the task modules load

A prefork worker's children each write their samples to files in
`DATA_DIR/metrics/<name>-<main pid>/` (prometheus-client's multiprocess mode; the folder is
emptied at start and removed at exit), and the main process serves their sum, so counters
survive the recycling of children. The folder's name holds the pid, the metrics' labels never do.
"""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path
from typing import Any

from celery.signals import worker_ready

from app.config import get_settings

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def install(name: str, multiprocess: bool = False) -> None:
    """Serve this worker's metrics on METRICS_PORT when it is ready (0: not served)."""
    if multiprocess:
        _use_folder(get_settings().data_dir / "metrics" / f"{name}-{os.getpid()}")
    worker_ready.connect(_serve, weak=False)


def _use_folder(folder: Path) -> None:
    """Must run before prometheus_client is first imported in this process (it reads the variable then)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROCESS_ENV] = str(folder)
    main_pid = os.getpid()

    def _remove() -> None:
        if os.getpid() == main_pid:  # not when a prefork child exits
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(_remove)


def _serve(**_: Any) -> None:
    from app.observability.logging import get_logger
    from app.observability.metrics import serve_worker_metrics

    port = get_settings().metrics_port
    if port:
        serve_worker_metrics(port)
        get_logger("workers.metrics").info("metrics served", port=port, path="/metrics")
