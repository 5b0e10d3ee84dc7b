"""Recording dead letters: tasks that failed for good.

Celery on Redis has no dead-lettering of its own, so a failed task is written to
the `dead_letters` table (the operator's record) and a JSON copy of it is published
to the `dead_letter` queue (for any consumer that wants a live feed).

Recording never depends on the component that is down: while the database is away, the dead
letter is written to a local spool file (DATA_DIR/spool/dead_letters) and moved into the table
by a thread of the same process every 10 s until it succeeds (or, after a restart, by the worker
that finds the files at start-up), and by the next successful recording.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import traceback as tb
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.signals import worker_ready

from app import names
from app.config import get_settings
from app.db import dead_letters
from app.db.session import db_session
from app.errors import Outage
from app.observability import correlation, metrics
from app.observability.logging import get_logger
from app.observability.signals import photo_id_of, photo_uuid_of
from app.topology import running_queue

log = get_logger(__name__)


@dataclass
class Failure:
    task_name: str
    task_id: str
    exception_type: str
    exception_message: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    traceback: str | None = None
    retries: int = 0
    correlation_id: str | None = None
    photo_id: int | None = None
    photo_uuid: str | None = None  # the photo's public id, for the live copy (the table joins photos for it)

    def message(self, letter_id: int | None) -> dict[str, Any]:
        return {
            "dead_letter_id": letter_id,
            "task": self.task_name,
            "task_id": self.task_id,
            "args": self.args,
            "kwargs": self.kwargs,
            "exception_type": self.exception_type,
            "exception_message": self.exception_message,
            "correlation_id": self.correlation_id,
            "photo_uuid": self.photo_uuid,
        }


def store(failure: Failure) -> int:
    """Insert the dead letter, or refresh it when the same task id failed before."""
    fields = {
        "args": failure.args, "kwargs": failure.kwargs, "queue": failure.queue,
        "exception_type": failure.exception_type, "exception_message": failure.exception_message[:4000],
        "traceback": (failure.traceback or "")[-20000:] or None, "retries": failure.retries,
        "correlation_id": failure.correlation_id, "photo_id": failure.photo_id,
    }
    with db_session() as db:
        return dead_letters.upsert(db, task_id=failure.task_id, task_name=failure.task_name, fields=fields)


def spool_dir() -> Path:
    """Where dead letters wait while the database is away: DATA_DIR/spool/dead_letters, on this machine."""
    return get_settings().data_dir / "spool" / "dead_letters"


def spool(failure: Failure) -> Path:
    """Keep a dead letter in a local file until the database takes it (written whole, then renamed)."""
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(failure)))
    os.replace(temporary, path)
    keep_flushing()
    return path


def flush_spool() -> int:
    """Move spooled dead letters into the table, oldest first; stops at the first that cannot be written
    (the database still away). Returns how many moved."""
    folder = spool_dir()
    if not folder.is_dir():
        return 0
    moved = 0
    for path in sorted(folder.glob("*.json")):
        try:
            failure = Failure(**json.loads(path.read_text()))
            letter_id = store(failure)
        except Outage:
            break
        except (OSError, ValueError, TypeError) as error:
            log.error("unreadable spooled dead letter left in place", path=str(path), error=str(error))
            continue
        path.unlink(missing_ok=True)
        moved += 1
        log.info("spooled dead letter recorded", dead_letter_id=letter_id, task_name=failure.task_name,
                 photo_id=failure.photo_id)
    return moved


def store_or_spool(failure: Failure) -> int | None:
    """The new dead letter's id; None when the database is away and it was spooled instead."""
    try:
        letter_id = store(failure)
    except Outage as error:
        path = spool(failure)
        log.warning("dead letter spooled until the database is back", path=str(path), error=str(error))
        return None
    flush_spool()
    return letter_id


_flusher: list[threading.Thread] = []


def keep_flushing(every: float = 10.0) -> None:
    """Flush the spool every `every` seconds in a daemon thread of this process, until it is empty."""

    def loop() -> None:
        while True:
            time.sleep(every)
            try:
                flush_spool()
            except Exception as error:  # keep trying: the spool is the only copy
                log.warning("could not flush the dead-letter spool", error=str(error))
            if not any(spool_dir().glob("*.json")):
                return

    if _flusher and _flusher[0].is_alive():
        return
    _flusher[:] = [threading.Thread(target=loop, name="dead-letter-spool", daemon=True)]
    _flusher[0].start()


@worker_ready.connect(weak=False)
def _flush_what_a_previous_process_spooled(**_: Any) -> None:
    if spool_dir().is_dir() and any(spool_dir().glob("*.json")):
        keep_flushing()


def publish(celery: Celery, failure: Failure, letter_id: int | None) -> None:
    """Put a JSON copy on the dead_letter queue, which keeps the newest DEAD_LETTER_QUEUE_MAX_LENGTH;
    the table row stays the record if this fails."""
    try:
        with celery.producer_or_acquire() as producer:
            queues = [q for q in celery.conf.task_queues if q.name == names.DEAD_LETTER_QUEUE]
            producer.publish(failure.message(letter_id), routing_key=names.DEAD_LETTER_QUEUE, serializer="json",
                             retry=True, declare=queues)
        with _redis_client(celery) as client:
            if client is not None:
                # kombu pushes on the left and consumers pop on the right: keep the newest, left end.
                client.ltrim(names.DEAD_LETTER_QUEUE, 0, get_settings().dead_letter_queue_max_length - 1)
    except Exception as error:
        log.warning("could not publish dead letter copy", dead_letter_id=letter_id, error=str(error))


@contextmanager
def _redis_client(celery: Celery) -> Iterator[Any]:
    """The broker's Redis client, or None on another broker."""
    if not str(celery.conf.broker_url).startswith(("redis://", "rediss://")):
        yield None
        return
    with celery.connection_for_write() as connection:
        yield connection.default_channel.client


def copy_letter_id(raw: bytes | str) -> int | None:
    """The `dead_letter_id` of one message of the dead_letter list (kombu's JSON envelope), or None."""
    try:
        payload = json.loads(raw)
        body = payload["body"]
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        value = json.loads(body).get("dead_letter_id")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def remove_copies(celery: Celery, letter_ids: set[int]) -> int:
    """Delete the dead_letter list's copies of these dead letters (purged from the table); how many."""
    removed = 0
    with _redis_client(celery) as client:
        if client is None or not letter_ids:
            return 0
        for raw in client.lrange(names.DEAD_LETTER_QUEUE, 0, -1):
            if copy_letter_id(raw) in letter_ids:
                removed += int(client.lrem(names.DEAD_LETTER_QUEUE, 1, raw))
    return removed


def _own_retries(task: Task) -> int:
    """The retries a dead letter reports: those spent on the task's own errors (what TASK_MAX_RETRIES
    limits; PipelineTask.own_retries), not the waits through an outage of the database or storage."""
    own_retries = getattr(task, "own_retries", None)
    return int(own_retries() if callable(own_retries) else task.request.retries or 0)


def record(task: Task, exc: BaseException, args: list[Any], kwargs: dict[str, Any]) -> int | None:
    """Dead-letter the task that is running now; its id, or None while it waits in the spool."""
    request = task.request
    failure = Failure(
        task_name=task.name,
        task_id=str(request.id),
        exception_type=type(exc).__name__,
        exception_message=str(exc),
        args=list(args),
        kwargs=dict(kwargs),
        queue=running_queue(task),
        traceback="".join(tb.format_exception(type(exc), exc, exc.__traceback__)),
        retries=_own_retries(task),
        correlation_id=request.get(correlation.MESSAGE_HEADER) or correlation.correlation_id.get(),
        photo_id=photo_id_of(task, args, kwargs),
    )
    failure.photo_uuid = photo_uuid_of(failure.photo_id, kwargs)
    letter_id = store_or_spool(failure)
    metrics.dead_lettered(failure.task_name)
    publish(task.app, failure, letter_id)
    log.error("task dead-lettered", dead_letter_id=letter_id, exception_type=failure.exception_type,
              error=failure.exception_message[:500], retries=failure.retries)
    return letter_id


def record_stale(celery: Celery, *, photo_id: int, reason: str, correlation_id: str | None,
                 kind: str = "StaleSession") -> int | None:
    """Dead-letter a photo whose session was given up on (`kind`: "StaleSession" from the sweeper,
    "WorkLost" from the reconciler), so it can be replayed."""
    failure = Failure(
        task_name=names.PARENT_TASK,
        task_id=f"{kind.lower()}-{photo_id}-{uuid.uuid4().hex[:12]}",  # unique even for two sweeps at once
        exception_type=kind,
        exception_message=reason,
        args=[photo_id],
        correlation_id=correlation_id,
        photo_id=photo_id,
        photo_uuid=photo_uuid_of(photo_id),
    )
    letter_id = store_or_spool(failure)
    metrics.dead_lettered(failure.task_name)
    publish(celery, failure, letter_id)
    log.error("stale session dead-lettered", dead_letter_id=letter_id, photo_id=photo_id,
              photo_uuid=failure.photo_uuid, reason=reason, kind=kind)
    return letter_id
