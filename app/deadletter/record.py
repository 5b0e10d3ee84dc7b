"""Recording dead letters: tasks that failed for good.

Celery on Redis has no dead-lettering of its own, so a failed task is written to
the `dead_letters` table (the operator's record) and a JSON copy of it is published
to the `dead_letter` queue (for any consumer that wants a live feed).
"""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task
from sqlalchemy import select

from app import names
from app.db.models import DeadLetter, utcnow
from app.db.session import db_session
from app.observability import correlation
from app.observability.logging import get_logger
from app.observability.signals import photo_id_of
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

    def message(self, letter_id: int) -> dict[str, Any]:
        return {
            "dead_letter_id": letter_id,
            "task": self.task_name,
            "task_id": self.task_id,
            "args": self.args,
            "kwargs": self.kwargs,
            "exception_type": self.exception_type,
            "exception_message": self.exception_message,
            "correlation_id": self.correlation_id,
        }


def store(failure: Failure) -> int:
    """Insert the dead letter, or refresh it when the same task id failed before."""
    with db_session() as db:
        letter = db.scalars(select(DeadLetter).where(DeadLetter.task_id == failure.task_id)).one_or_none()
        if letter is None:
            letter = DeadLetter(task_id=failure.task_id, task_name=failure.task_name, first_failed_at=utcnow())
            db.add(letter)
        letter.args, letter.kwargs, letter.queue = failure.args, failure.kwargs, failure.queue
        letter.exception_type = failure.exception_type
        letter.exception_message = failure.exception_message[:4000]
        letter.traceback = (failure.traceback or "")[-20000:] or None
        letter.retries = failure.retries
        letter.correlation_id = failure.correlation_id
        letter.photo_id = failure.photo_id
        letter.last_failed_at = utcnow()
        db.flush()
        return letter.id


def publish(celery: Celery, failure: Failure, letter_id: int) -> None:
    """Put a JSON copy on the dead_letter queue; the table row stays the record if this fails."""
    try:
        with celery.producer_or_acquire() as producer:
            queues = [q for q in celery.conf.task_queues if q.name == names.DEAD_LETTER_QUEUE]
            producer.publish(failure.message(letter_id), routing_key=names.DEAD_LETTER_QUEUE, serializer="json",
                             retry=True, declare=queues)
    except Exception as error:
        log.warning("could not publish dead letter copy", dead_letter_id=letter_id, error=str(error))


def record(task: Task, exc: BaseException, args: list[Any], kwargs: dict[str, Any]) -> int:
    """Dead-letter the task that is running now."""
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
        retries=request.retries or 0,
        correlation_id=request.get(correlation.MESSAGE_HEADER) or correlation.correlation_id.get(),
        photo_id=photo_id_of(task, args, kwargs),
    )
    letter_id = store(failure)
    publish(task.app, failure, letter_id)
    log.error("task dead-lettered", dead_letter_id=letter_id, exception_type=failure.exception_type,
              error=failure.exception_message[:500], retries=failure.retries)
    return letter_id


def record_stale(celery: Celery, *, photo_id: int, reason: str, correlation_id: str | None) -> int:
    """Dead-letter a photo whose session the sweeper found stuck, so it can be replayed."""
    failure = Failure(
        task_name=names.PARENT_TASK,
        task_id=f"stale-{photo_id}-{utcnow():%Y%m%dT%H%M%S}",
        exception_type="StaleSession",
        exception_message=reason,
        args=[photo_id],
        correlation_id=correlation_id,
        photo_id=photo_id,
    )
    letter_id = store(failure)
    publish(celery, failure, letter_id)
    log.error("stale session dead-lettered", dead_letter_id=letter_id, photo_id=photo_id, reason=reason)
    return letter_id
