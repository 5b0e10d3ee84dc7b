"""The `dead_letters` rows: written by app/deadletter/record.py, read and replayed by app/deadletter/.

Keyword-only functions on a session, like app/db/repository.py; nothing here knows Celery.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.models import DeadLetter, Photo, utcnow


def upsert(db: Session, *, task_id: str, task_name: str, fields: dict[str, Any]) -> int:
    """Insert the dead letter of `task_id`, or refresh it when that task failed before; its id.

    `fields` are DeadLetter columns (args, kwargs, queue, exception_type, ...); last_failed_at is now.
    """
    letter = db.scalars(select(DeadLetter).where(DeadLetter.task_id == task_id)).one_or_none()
    if letter is None:
        letter = DeadLetter(task_id=task_id, task_name=task_name, first_failed_at=utcnow())
        db.add(letter)
    for name, value in fields.items():
        setattr(letter, name, value)
    letter.last_failed_at = utcnow()
    db.flush()
    return letter.id


def with_photo_uuids(db: Session, *, include_replayed: bool,
                     photo_id: int | None = None) -> list[tuple[DeadLetter, uuid.UUID | None]]:
    """Dead letters in id order (waiting ones only unless `include_replayed`), each with its photo's UUID."""
    query = select(DeadLetter, Photo.uuid).outerjoin(Photo, Photo.id == DeadLetter.photo_id).order_by(DeadLetter.id)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None))
    if photo_id is not None:
        query = query.where(DeadLetter.photo_id == photo_id)
    return [(letter, photo_uuid) for letter, photo_uuid in db.execute(query).tuples()]


def get(db: Session, *, letter_id: int, lock: bool = False) -> DeadLetter | None:
    return db.get(DeadLetter, letter_id, with_for_update=lock)


def waiting_ids(db: Session, *, task_name: str | None = None) -> list[int]:
    """Ids of the dead letters not yet replayed (of one task, when named), in id order."""
    query = select(DeadLetter.id).where(DeadLetter.replayed_at.is_(None)).order_by(DeadLetter.id)
    if task_name:
        query = query.where(DeadLetter.task_name == task_name)
    return list(db.scalars(query))


def delete_letters(db: Session, *, letter_id: int | None = None, failed_before: datetime | None = None) -> set[int]:
    """Delete one dead letter, or those last failed before a moment; the ids deleted."""
    condition = DeadLetter.id == letter_id if letter_id is not None else DeadLetter.last_failed_at < failed_before
    ids = set(db.scalars(select(DeadLetter.id).where(condition)))
    db.execute(delete(DeadLetter).where(DeadLetter.id.in_(ids)))
    return ids
