"""Recycling for the solo pool, which ignores --max-tasks-per-child and --max-memory-per-child.

After each task the GPU worker checks its limits. When one is reached it sends
itself SIGTERM: Celery's handler only sets the warm-shutdown flag, so the current
task finishes and is acknowledged first, then the worker exits with code 0 and its
supervisor (docker compose `restart: unless-stopped`, or workers.supervise) starts a
fresh process. Raising WorkerShutdown here instead would skip the acknowledgement.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import psutil
from celery.signals import task_postrun

from app.observability.logging import get_logger

log = get_logger("workers.recycling")


@dataclass(frozen=True)
class RecyclePolicy:
    max_tasks: int  # 0 = no limit
    max_rss_kb: int  # 0 = no limit
    max_cuda_mb: int  # 0 = no limit


def cuda_memory_mb() -> float:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0.0
    return float(torch.cuda.memory_reserved()) / 2**20


def rss_kb() -> int:
    return int(psutil.Process().memory_info().rss // 1024)


class Recycler:
    def __init__(self, policy: RecyclePolicy) -> None:
        self.policy = policy
        self.tasks_done = 0
        self.stopping = False

    def reason_to_recycle(self) -> str | None:
        """Why this process should be replaced now, or None."""
        self.tasks_done += 1
        if self.policy.max_tasks and self.tasks_done >= self.policy.max_tasks:
            return f"ran {self.tasks_done} tasks (limit {self.policy.max_tasks})"
        rss = rss_kb()
        if self.policy.max_rss_kb and rss > self.policy.max_rss_kb:
            return f"resident memory {rss} KiB above {self.policy.max_rss_kb} KiB"
        cuda = cuda_memory_mb()
        if self.policy.max_cuda_mb and cuda > self.policy.max_cuda_mb:
            return f"GPU memory {cuda:.0f} MiB above {self.policy.max_cuda_mb} MiB"
        return None

    def after_task(self, **_: Any) -> None:
        if self.stopping:
            return
        reason = self.reason_to_recycle()
        if reason is not None:
            self.stopping = True
            log.warning("recycling worker process", reason=reason, pid=os.getpid(), tasks_done=self.tasks_done)
            os.kill(os.getpid(), signal.SIGTERM)


def install(policy: RecyclePolicy) -> Recycler:
    recycler = Recycler(policy)
    task_postrun.connect(recycler.after_task, weak=False)
    return recycler
