"""Small single-purpose Celery signal handlers: logging set-up and correlation context."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun, worker_process_init

from app.config import get_settings
from app.observability import correlation
from app.observability.logging import configure_logging


@setup_logging.connect
def _configure_worker_logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    from app.db.session import dispose_engine

    dispose_engine()


@before_task_publish.connect
def _attach_correlation_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Every message published while a request or task runs carries its correlation id."""
    if headers is None:
        return
    current = correlation.correlation_id.get()
    if current and not headers.get(correlation.MESSAGE_HEADER):
        headers[correlation.MESSAGE_HEADER] = current


def _photo_id(args: tuple[Any, ...] | list[Any] | None, kwargs: dict[str, Any] | None) -> Any:
    if kwargs and "photo_id" in kwargs:
        return kwargs["photo_id"]
    if args:
        # ml_parent_task(photo_id), ml_child_task(region, photo_id), aggregate_results(results, photo_id)
        candidates = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
        return candidates[-1] if candidates else None
    return None


@task_prerun.connect
def _bind_task_context(task: Task | None = None, task_id: str | None = None, args: Any = None,
                       kwargs: Any = None, **_: Any) -> None:
    if task is None:
        return
    request = task.request
    value = request.get(correlation.MESSAGE_HEADER) or (kwargs or {}).get("correlation_id")
    correlation.bind(
        value,
        task_id=task_id,
        task_name=task.name,
        parent_id=request.parent_id,
        worker=request.hostname,
        photo_id=_photo_id(args, kwargs),
    )


@task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    correlation.clear()
