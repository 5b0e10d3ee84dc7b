"""Opaque cursors for keyset pagination on (created_at, id), newest first.

A cursor is the last row's (created_at, id), base64url-encoded JSON. The next page is every
row strictly before it in that order, so a page never repeats or skips a row that existed
when the listing started, however many rows are inserted meanwhile (they sort first; a
client sees them by listing again). Offsets would shift under such inserts.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement

MAX_PAGE = 200
NO_NUL = r"^[^\x00]*$"  # a filter value PostgreSQL can take (its text types refuse NUL)


class InvalidCursor(ValueError):
    """The cursor was not made by this API."""


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(created)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        if not -(2**31) <= int(row_id) < 2**31:
            raise ValueError("row id out of range")
        return moment, int(row_id)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidCursor(f"not a cursor of this API: {cursor[:64]!r}") from exc


def before(created_column: Any, id_column: Any, cursor: str) -> ColumnElement[bool]:
    """The rows after `cursor` in newest-first order: (created_at, id) < the cursor's."""
    created_at, row_id = decode_cursor(cursor)
    return or_(created_column < created_at, and_(created_column == created_at, id_column < row_id))
