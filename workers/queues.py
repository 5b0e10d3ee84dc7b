"""Which queues a worker's command line consumes, and so which task modules it imports."""

from __future__ import annotations

from celery import Celery

from app.celery_app import task_modules


def consumed_queues(argv: list[str]) -> list[str]:
    """The queues of the last `--queues=a,b`, `--queues a,b` or `-Q a,b` in a worker's argv (Celery's own
    rule: a later option wins)."""
    queues: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("--queues="):
            queues = arg.split("=", 1)[1].split(",")
        elif arg in ("--queues", "-Q") and i + 1 < len(argv):
            queues = argv[i + 1].split(",")
    return [q for q in queues if q]


def import_tasks_for(app: Celery, argv: list[str]) -> None:
    """Make the worker import only the task modules of the queues it consumes (Celery imports
    `include` when the worker starts, before any pool process forks)."""
    app.conf.include = task_modules(consumed_queues(argv))
