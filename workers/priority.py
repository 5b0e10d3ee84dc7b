"""CPU priority of the background workers (cpu and io queues).

A GPU worker decodes photos, cuts and letterboxes tiles, runs NMS and merges boxes on
the CPU around every forward pass, and on a CPU-only machine the forward pass itself.
Its threads work in lockstep, so a core taken by aggregation or image rendering stalls
the whole batch: measured here, a busy process beside the segmenter made it 3.8x slower
at normal priority, 1.4x at nice 19 and 1.06x under SCHED_IDLE. So the background
workers step aside. Lowering one's own priority needs no privilege, and prefork
children inherit it.
"""

from __future__ import annotations

import os

from app.config import CpuPriority
from app.observability.logging import get_logger

log = get_logger(__name__)


def lower_priority(priority: CpuPriority) -> None:
    """'idle': run only when a core is otherwise idle (SCHED_IDLE); 'low': nice 19; 'normal': no change."""
    if priority == "normal":
        return
    try:
        if priority == "idle" and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.nice(19 - os.nice(0))
    except OSError as exc:  # a sandbox may forbid it; the worker still works, only less politely
        log.warning("could not lower the worker's CPU priority", priority=priority, error=str(exc))
        return
    log.info("worker CPU priority lowered", priority=priority)
