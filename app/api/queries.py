"""Read-only look-ups for the API. Keyword-only, like app.db.repository; nothing here knows HTTP."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.db.models import Photo, ProcessingSession


def find_photo(db: Session, *, photo_uuid: UUID) -> Photo | None:
    """The photo with its session and regions loaded, usable after the session closes."""
    query = (
        select(Photo)
        .where(Photo.uuid == photo_uuid)
        .options(selectinload(Photo.session).selectinload(ProcessingSession.regions))
    )
    return db.scalars(query).one_or_none()
