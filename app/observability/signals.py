"""Small single-purpose Celery signal handlers: logging set-up and correlation context.

How the correlation id travels (checked by tests/test_observability.py):
- publish: `before_task_publish` copies the bound id into the message header
  `x_correlation_id`. Every publish made while a task runs goes through it: chords
  (published from the parent's body, as `self.replace(...)` would be), retries
  (`self.retry` re-publishes from the body), the chord callback (published by the
  Redis backend's `on_chord_part_return` from the last child, before its
  `task_postrun`), and tasks queued by a callback (`render_annotated.delay`).
- run: `task_prerun` binds the header (else the task's `correlation_id` kwarg,
  else a fresh id, so a beat task and its children still share one) with the
  task's ids; `task_postrun` clears it, so nothing leaks into the next task in
  solo and prefork pools (gevent greenlets each have their own context).

The photo's public id: a task about a photo also binds `photo_uuid` (the UUID the API and the
integrators know), from the task's `photo_uuid` kwarg when it has one (ml_parent_task, so Flower
shows it too), else looked up once per photo and worker process (a photo's UUID never changes).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from celery import Task
from celery.signals import (
    before_task_publish,
    celeryd_after_setup,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
)

from app.observability import correlation
from app.observability.logging import configure_from_settings, set_process_fields


@setup_logging.connect
def _configure_worker_logging(**_: Any) -> None:
    """Connected at all, this stops Celery from installing its own log handlers (any pool)."""
    configure_from_settings()


@celeryd_after_setup.connect
def _name_the_worker_in_every_line(sender: str | None = None, instance: Any = None, **_: Any) -> None:
    """Lines logged outside tasks ("Task ... received", connection errors) say which worker logged them, and
    the tasks it publishes are sent as it (not as `gen<PID>`): before the pool forks, so children inherit it."""
    if sender:
        set_process_fields(worker=str(sender))
        if instance is not None:
            from app.celery_app import name_publisher

            name_publisher(instance.app, str(sender))


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


@lru_cache(maxsize=256)
def _signature(task: Task) -> inspect.Signature | None:
    try:
        return inspect.signature(task.run)
    except (TypeError, ValueError):
        return None


def photo_id_of(task: Task, args: Any, kwargs: Any) -> int | None:
    """The task's `photo_id` argument, by name, whatever its position; None for other tasks."""
    signature = _signature(task)
    if signature is None or "photo_id" not in signature.parameters:
        return None
    try:
        value = signature.bind_partial(*(args or ()), **(kwargs or {})).arguments.get("photo_id")
    except TypeError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


PHOTO_UUID_CACHE_SIZE = 4096  # photos; 4096 UUIDs are well under 1 MB per worker process
_photo_uuids: OrderedDict[int, str] = OrderedDict()


def photo_uuid_of(photo_id: int | None, kwargs: Any = None) -> str | None:
    """The photo's UUID as text: the task's `photo_uuid` kwarg, else a cached look-up by integer id;
    None for tasks about no photo, or when the database does not answer (the task's own work will say why)."""
    given = (kwargs or {}).get("photo_uuid")
    if isinstance(given, str) and given:
        return given
    if photo_id is None:
        return None
    if photo_id in _photo_uuids:
        _photo_uuids.move_to_end(photo_id)
        return _photo_uuids[photo_id]
    from app.db import repository
    from app.db.session import db_session

    try:
        with db_session() as db:
            found = repository.photo_uuid(db, photo_id=photo_id)
    except Exception:  # a log field must never cost the task its run
        return None
    if found is not None:
        _photo_uuids[photo_id] = found
        while len(_photo_uuids) > PHOTO_UUID_CACHE_SIZE:
            _photo_uuids.popitem(last=False)
    return found


def incoming_correlation_id(task: Task, kwargs: Any) -> str:
    """The message header, else the explicit `correlation_id` kwarg, else a new id."""
    value = task.request.get(correlation.MESSAGE_HEADER) or (kwargs or {}).get("correlation_id")
    return correlation.sanitize(value if isinstance(value, str) else None)


@task_prerun.connect
def _bind_task_context(task: Task | None = None, task_id: str | None = None, args: Any = None,
                       kwargs: Any = None, **_: Any) -> None:
    if task is None:
        return
    request = task.request
    photo_id = photo_id_of(task, args, kwargs)
    correlation.bind(
        incoming_correlation_id(task, kwargs),
        task_id=task_id,
        task_name=task.name,
        parent_id=request.parent_id,
        root_id=request.root_id,
        retries=request.retries or 0,
        worker=request.hostname,
        photo_id=photo_id,
        photo_uuid=photo_uuid_of(photo_id, kwargs),
    )


@task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    correlation.clear()
