"""Correlation IDs: one id follows a photo from the upload request through every task.

The id lives in a ContextVar while a request or a task runs. Celery signals carry
it across the broker in a message header, so children, chord callbacks, retries,
replays and io tasks inherit it without being passed by hand.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Any

import structlog

HEADER = "X-Correlation-ID"
MESSAGE_HEADER = "x_correlation_id"  # not "correlation_id": Celery uses that property for the task id
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def sanitize(value: str | None) -> str:
    """The caller's id when it is safe to log and store, else a fresh one."""
    if value and _VALID.match(value):
        return value
    return new_correlation_id()


def bind(value: str | None, **context: Any) -> None:
    correlation_id.set(value)
    structlog.contextvars.bind_contextvars(correlation_id=value, **context)


def clear() -> None:
    correlation_id.set(None)
    structlog.contextvars.clear_contextvars()
