"""Replaying dead letters: send the original task again, once, with its correlation id.

The replay gets a new task id, recorded on the dead letter with the time, so a second
replay of the same entry is refused; and every side effect of the tasks is idempotent,
so even a forced second run writes nothing twice. A session that failed without
writing stock is reopened first, so the replayed task can complete it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from celery import Celery, chain

from app import names
from app.db import dead_letters, repository
from app.db.models import DeadLetter, SessionStatus, utcnow
from app.db.session import db_session
from app.deadletter.record import remove_copies
from app.errors import ReplayRefused
from app.observability import correlation
from app.observability.logging import get_logger

log = get_logger(__name__)


def replay(letter_id: int, celery: Celery) -> str:
    """Re-send one dead letter's task; return the new task id."""
    with db_session() as db:
        letter = dead_letters.get(db, letter_id=letter_id, lock=True)
        if letter is None:
            raise ReplayRefused(f"no dead letter {letter_id}")
        if letter.replayed_at is not None:
            raise ReplayRefused(f"dead letter {letter_id} was already replayed as task {letter.replay_task_id}")
        if letter.photo_id is not None and letter.task_name in (names.PARENT_TASK, names.AGGREGATE_TASK):
            status = SessionStatus.PENDING if letter.task_name == names.PARENT_TASK else SessionStatus.PROCESSING
            if not repository.reopen_session(db, photo_id=letter.photo_id, status=status):
                raise ReplayRefused(f"photo {letter.photo_id} already has its stock rows; nothing to replay")
        task_id = str(uuid.uuid4())
        _send(celery, letter, task_id)
        letter.replayed_at, letter.replay_task_id = utcnow(), task_id
        return task_id


def _send(celery: Celery, letter: DeadLetter, task_id: str) -> None:
    headers = {correlation.MESSAGE_HEADER: letter.correlation_id} if letter.correlation_id else {}
    options = {"task_id": task_id, "headers": headers}
    if letter.queue:
        options["queue"] = letter.queue
    if letter.task_name == names.CHILD_TASK and letter.photo_id is not None:
        # A replayed region is added to its session by a small callback of its own.
        child = celery.signature(names.CHILD_TASK, args=letter.args, kwargs=letter.kwargs, options=options)
        model = (letter.kwargs or {}).get("recount_model")
        recount = {"recount_model": model} if model else {}
        callback = celery.signature(names.AGGREGATE_REGION_TASK, args=[letter.photo_id], kwargs=recount,
                                    options={"headers": headers})
        chain(child, callback).apply_async()
        return
    celery.send_task(letter.task_name, args=letter.args, kwargs=letter.kwargs, **options)


def pending_ids(task_name: str | None = None) -> list[int]:
    with db_session() as db:
        return dead_letters.waiting_ids(db, task_name=task_name)


def purge(letter_id: int | None = None, older_than_days: float | None = None, celery: Celery | None = None) -> int:
    """Delete one dead letter, or those last failed more than N days ago, with their copies on the
    broker's dead_letter list."""
    if letter_id is None and older_than_days is None:
        raise ReplayRefused("purge needs an id or --older-than")
    failed_before = None if older_than_days is None else utcnow() - timedelta(days=older_than_days)
    with db_session() as db:
        ids = dead_letters.delete_letters(db, letter_id=letter_id, failed_before=failed_before)
    if ids:
        from app.celery_app import app as default_app

        removed = remove_copies(celery or default_app, ids)
        log.info("dead letters purged", purged=len(ids), broker_copies_removed=removed)
    return len(ids)
