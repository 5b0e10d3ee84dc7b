"""Which queues a worker's command line consumes, and so which task modules it imports; the broker
settings every worker checks before it starts."""

from __future__ import annotations

from celery import Celery

from app.celery_app import task_modules
from app.config import Settings
from app.observability.logging import get_logger
from app.topology import consumer_timeout_problem

log = get_logger("workers")


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


def refuse_short_consumer_timeout(settings: Settings) -> None:
    """Stop before consuming (exit status 2) when RabbitMQ's consumer_timeout would close the channel under
    a long task or a held retry, which would run that task again (app/topology.py)."""
    problem = consumer_timeout_problem(settings)
    if problem:
        log.critical("broker consumer_timeout too short; the worker stops", problem=problem)
        raise SystemExit(2)
