"""Probe tasks that every worker serves on its own queues: which process and device answer, and a
no-op for timing Celery itself (the worker tests and the pipeline benchmark send them)."""

from __future__ import annotations

import os
import sys
from typing import Any

import psutil

from app import names
from app.celery_app import app
from app.tasks.base import PipelineTask
from app.topology import running_queue


@app.task(bind=True, base=PipelineTask, name=names.PROCESS_INFO_TASK)
def process_info(self: PipelineTask) -> dict[str, Any]:
    """Which process and device serve this queue: for operators, and for the worker tests."""
    torch = sys.modules.get("torch")
    cuda = bool(torch is not None and torch.cuda.is_available())
    return {
        "pid": os.getpid(),
        "hostname": self.request.hostname,
        "queue": running_queue(self),
        "rss_kb": psutil.Process().memory_info().rss // 1024,
        "models_loaded": [name for name in ("torch", "cv2", "ultralytics") if name in sys.modules],
        "cuda_available": cuda,
        "cuda_initialized": bool(cuda and torch is not None and torch.cuda.is_initialized()),
    }


@app.task(base=PipelineTask, name=names.NOOP_TASK)
def noop(*_: Any) -> None:
    """Does nothing: the benchmarks time Celery itself with it."""
