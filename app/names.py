"""Task and queue names: the one place they are spelled.

Task names are part of the wire format: they travel in every queued message and are stored
in every dead letter, so they stay exactly as they were when the tasks lived in
`app.tasks.ml`, whatever module defines a task now. Rename one only with a migration of
the queued messages and the `dead_letters` rows.
"""

from __future__ import annotations

# Queues.
GPU_QUEUE_PREFIX = "gpu_queue_"
CPU_QUEUE = "cpu"
IO_QUEUE = "io"
DEAD_LETTER_QUEUE = "dead_letter"

# GPU worker (app/tasks/gpu.py).
PARENT_TASK = "app.tasks.ml.ml_parent_task"
CHILD_TASK = "app.tasks.ml.ml_child_task"
# CPU worker (app/tasks/aggregation.py, app/tasks/maintenance.py).
AGGREGATE_TASK = "app.tasks.ml.aggregate_results"
AGGREGATE_REGION_TASK = "app.tasks.ml.aggregate_region"
SWEEP_TASK = "app.tasks.maintenance.sweep_stale_sessions"
RECONCILE_TASK = "app.tasks.maintenance.reconcile_unfinished"
DEAD_LETTER_REPORT_TASK = "app.tasks.maintenance.dead_letter_report"
CLEANUP_TASK = "app.tasks.maintenance.cleanup_temporary_files"
BROKER_DEAD_LETTER_TASK = "app.tasks.maintenance.record_broker_dead_letters"
# io worker (app/tasks/io.py).
RENDER_TASK = "app.tasks.io.render_annotated"
# Every worker (app/tasks/probes.py).
PROCESS_INFO_TASK = "app.tasks.maintenance.process_info"
NOOP_TASK = "app.tasks.maintenance.noop"


def gpu_queue(index: int) -> str:
    """The queue of the GPU worker with GPU_INDEX=index: `gpu_queue_<index>`."""
    return f"{GPU_QUEUE_PREFIX}{index}"


def is_gpu_queue(name: str) -> bool:
    return name.startswith(GPU_QUEUE_PREFIX)
